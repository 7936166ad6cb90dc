"""What a review produces: findings, each from one rule (or from the system itself)."""

from __future__ import annotations

from dataclasses import dataclass

CATEGORIES = ("合法性", "规范性", "适宜性")


@dataclass(frozen=True, slots=True)
class Finding:
    """One rule's verdict on one item, one pair of items, or the whole prescription.

    ``level`` is the severity on the county's 0-9 scale (see rulebase/README.md).
    ``implicated`` holds FHIR references ("MedicationRequest/<id>") of the items involved,
    in item order. ``rule_id`` values starting with ``SYS-`` come from the engine itself
    (a fact it could not establish), never from the rulebase, and cannot be disabled.
    """

    rule_id: str
    title: str
    category: str
    subtype: str
    level: int
    message: str
    evidence: str
    implicated: tuple[str, ...] = ()
    suggestion: str | None = None
    source: str | None = None  # "file:line" of the rule

    def sort_key(self) -> tuple[int, str, tuple[str, ...]]:
        return (-self.level, self.rule_id, self.implicated)

