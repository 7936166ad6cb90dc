"""The review pipeline: intake → facts → engine, with no I/O of its own.

One call, :func:`review_payload`, takes the JSON a HIS sent and returns every finding,
including the ones the engine adds itself for facts it could not establish (``SYS-*``):
an unknown drug or an unreadable dose is never a silent pass. The verdict is not decided
here; that is the institution's policy (``audit_engine.policy``), applied by the caller.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from audit_engine.errors import AuditEngineError, BudgetExceededError
from audit_engine.findings import Finding
from audit_engine.schema import FactIssue, PrescriptionFacts

if TYPE_CHECKING:
    from audit_engine.engine import Engine

PayloadKind = Literal["bundle", "cds", "medication_request"]

SHIPPED_RULEBASE = Path(__file__).resolve().parent.parent / "rulebase"

# Level given to the engine's own findings: the pharmacist band of the county scale,
# so that with default thresholds an unchecked prescription always reaches a pharmacist.
SYSTEM_FINDING_LEVEL = 5

_SYSTEM_TITLES: dict[str, str] = {
    "UNKNOWN_DRUG": "药品无法识别，系统未能审核",
    "DOSE_UNPARSEABLE": "剂量无法解析，系统未能审核剂量",
    "FREQUENCY_UNPARSEABLE": "频次无法解析，系统未能审核日剂量",
    "UNIT_CONFLICT": "剂量单位与药品规格矛盾，系统未能审核剂量",
    "DOSE_MISSING": "缺少剂量或频次，系统未能审核剂量",
    "ROUTE_UNKNOWN": "给药途径无法识别",
    "ALLERGY_UNMAPPED": "过敏史无法识别，系统未能按此过敏史审核",
}


class ReviewFailedError(AuditEngineError):
    """An internal stage failed on acceptable input; ``stage`` says which one."""

    def __init__(self, stage: str, cause: BaseException) -> None:
        self.stage = stage
        self.cause = cause
        super().__init__(f"review failed in stage {stage}: {type(cause).__name__}: {cause}")


@dataclass(frozen=True, slots=True)
class ReviewResult:
    """Everything one review established, before any policy or storage."""

    prescription_id: str | None
    facts: PrescriptionFacts
    findings: tuple[Finding, ...]
    rulebase_version: str
    items: tuple[str, ...]
    timings_ms: dict[str, float] = field(default_factory=dict)

    @property
    def unchecked(self) -> bool:
        """True when some fact could not be established: the review needs a pharmacist."""
        return bool(self.facts.issues)

    @property
    def max_level(self) -> int:
        return max((f.level for f in self.findings), default=0)


def default_rulebase_path() -> Path:
    """The setting ``AUDIT_RULEBASE`` if set, else the rulebase shipped with the project."""
    from audit_engine.settings import get_settings

    configured = get_settings().rulebase_path
    return Path(configured) if configured else SHIPPED_RULEBASE


def load_engine(rulebase_path: str | Path | None = None) -> Engine:
    """Load, check and compile a rulebase into a ready engine (raises RulebaseError)."""
    from audit_engine.engine import Engine

    return Engine.from_path(Path(rulebase_path) if rulebase_path else default_rulebase_path())


def system_finding(issue: FactIssue, facts: PrescriptionFacts) -> Finding:
    """The engine's own finding for a fact it could not establish."""
    implicated: tuple[str, ...] = ()
    message = issue.message
    if issue.item is not None:
        item = next((i for i in facts.items if i.get("id") == issue.item), {})
        implicated = (item.get("reference") or f"MedicationRequest/{issue.item}",)
        # Name the drug, so the message stands alone on a card or in the queue; an unknown
        # drug's message already names it as written.
        drug = item.get("name") or item.get("written_name")
        if drug and issue.code != "UNKNOWN_DRUG":
            message = f"{drug}：{message}"
    return Finding(
        rule_id=f"SYS-{issue.code.replace('_', '-')}",
        title=_SYSTEM_TITLES.get(issue.code, "系统未能审核"),
        category="规范性",
        subtype="无法审核",
        level=SYSTEM_FINDING_LEVEL,
        message=message,
        evidence="《医疗机构处方审核规范》（国卫办医发〔2018〕14号）：处方经药师审核通过后方可调配；信息系统未能审核的内容由药师人工审核",
        implicated=implicated,
        suggestion="请药师人工审核" + (f"（{issue.where}）" if issue.where else ""),
    )


def review_payload(
    payload: dict[str, Any],
    *,
    kind: PayloadKind,
    engine: Engine,
    client_institution: dict[str, Any] | None = None,
    today: date | None = None,
    budget_ms: float | None = None,
) -> ReviewResult:
    """Review one submission. Raises IntakeError for bad input, ReviewFailedError for an internal
    fault, BudgetExceededError when ``budget_ms`` ran out (checked after intake, after the facts
    and inside the engine between sessions and rows of pairs: a stage in progress finishes)."""
    from audit_engine import intake as intake_mod
    from audit_engine.facts import normalise
    from audit_engine.knowledge.dictionary import load_dictionary

    t0 = time.perf_counter()
    deadline = time.monotonic() + budget_ms / 1000 if budget_ms is not None else None

    def check(stage: str) -> None:
        if deadline is not None and time.monotonic() > deadline:
            assert budget_ms is not None
            raise BudgetExceededError(stage, budget_ms, (time.perf_counter() - t0) * 1000)
    parse = {
        "bundle": intake_mod.parse_bundle,
        "cds": intake_mod.parse_cds_request,
        "medication_request": intake_mod.parse_medication_request,
    }[kind]
    received = parse(payload)  # IntakeError passes through untouched
    t1 = time.perf_counter()
    check("intake")
    try:
        facts = normalise(received, dictionary=load_dictionary(), today=today, client_institution=client_institution)
    except Exception as exc:  # normalise promises FactIssues, not exceptions; a bug still must not pass silently
        raise ReviewFailedError("facts", exc) from exc
    t2 = time.perf_counter()
    check("facts")
    try:
        # The version comes with the findings: a swap between two calls cannot mislabel a review.
        if deadline is None:
            compiled_version, rule_findings = engine.evaluate_versioned(facts)
        else:
            compiled_version, rule_findings = engine.evaluate_versioned(facts, deadline=deadline)
    except BudgetExceededError as exc:
        assert budget_ms is not None
        raise BudgetExceededError("engine", budget_ms, (time.perf_counter() - t0) * 1000) from exc
    except Exception as exc:
        raise ReviewFailedError("engine", exc) from exc
    t3 = time.perf_counter()
    findings = sorted([*rule_findings, *(system_finding(i, facts) for i in facts.issues)], key=Finding.sort_key)
    return ReviewResult(
        prescription_id=facts.prescription_id,
        facts=facts,
        findings=tuple(findings),
        rulebase_version=compiled_version,
        items=tuple(str(i.get("reference")) for i in facts.items),
        timings_ms={
            "intake": (t1 - t0) * 1000,
            "facts": (t2 - t1) * 1000,
            "engine": (t3 - t2) * 1000,
        },
    )


def detect_kind(payload: dict[str, Any]) -> PayloadKind:
    """Which intake a JSON document needs: a CDS Hooks request, a Bundle or one MedicationRequest."""
    if "hook" in payload or "context" in payload:
        return "cds"
    if payload.get("resourceType") == "MedicationRequest":
        return "medication_request"
    return "bundle"


def finding_json(f: Finding) -> dict[str, Any]:
    """A finding as the native API and the CLI print it."""
    return {
        "rule_id": f.rule_id,
        "title": f.title,
        "level": f.level,
        "category": f.category,
        "subtype": f.subtype,
        "message": f.message,
        "suggestion": f.suggestion,
        "evidence": f.evidence,
        "implicated": list(f.implicated),
    }
