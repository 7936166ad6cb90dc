"""The compiled form of a rulebase: what the compiler emits and the engine runs.

Everything here is immutable and built deterministically from a checked Rulebase by
``audit_engine.lang.compiler.compile_rulebase``. ``CompiledRulebase.describe()`` is the
JSON-able view that the golden tests compare against ``fixtures/expected/``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any, Literal

from audit_engine.lang.nodes import Cond, Rule, Rulebase

FactKind = Literal["item", "rx", "pair"]
BranchKind = Literal["item", "pair", "rx"]

ITEM_TYPE = "it"
RX_TYPE = "rx"
PAIR_TYPE = "pr"
# Item identity fields a rule can be routed by (``compiler._route_keys``) and an item
# offers keys for (``runtime.item_route_keys``): "field:value".
ROUTE_FIELDS = ("drug_id", "name", "atc", "ingredients", "classes")


@dataclass(frozen=True, slots=True)
class SourceKey:
    """One property of a fact and where the host reads it.

    ``entity`` is "item" (the item dict) or a context entity ("patient", "prescription",
    "prescriber", "institution"); ``key`` the flat key there; ``empty_flag`` marks the
    ``<key>__empty`` property that is true when a textset is present but empty (the core's
    ``$iall`` is false on an empty list, and "does not contain" must be true there).
    """

    prop: str
    entity: str
    key: str
    empty_flag: bool = False


@dataclass(frozen=True, slots=True)
class DerivedField:
    """A fact property the host computes before asserting: a condition the network cannot
    test natively (table lookups, ordered enums, counts and quantifiers, comparisons of two
    fields, prefixes). Always present, always a bool, computed with the reference
    semantics by ``audit_engine.network.derive``.

    ``on`` is the fact that carries it: "item" (``binds`` = the one variable bound to the
    item), "pair" (``binds`` = (first, second)) or "rx" (no binding).

    ``key`` is the condition's meaning up to spans and variable names
    (``compiler.structural_key``): fields with equal keys hold the same value for the same
    bound items, so the runtime evaluates each key once per item / ordered pair /
    prescription, however many rules and shards repeat it.
    """

    name: str
    on: FactKind
    cond: Cond
    binds: tuple[str, ...]
    rule_id: str
    key: str


@dataclass(frozen=True, slots=True)
class Branch:
    """One durable_rules rule: one disjunct of one rulebase rule's condition."""

    name: str
    rule: int  # index into CompiledRulebase.rules
    kind: BranchKind


@dataclass(frozen=True, slots=True)
class Shard:
    """One durable_rules ruleset. ``keys`` are its routing keys (empty: a general shard that
    every prescription visits). ``definition`` is the ruleset's JSON text, fresh for every
    registration (the core never sees a shared object)."""

    name: str
    keys: tuple[str, ...]
    definition: str
    branches: tuple[Branch, ...]
    item_props: tuple[SourceKey, ...]
    rx_props: tuple[SourceKey, ...]
    derived: tuple[DerivedField, ...]
    needs_rx: bool
    needs_pairs: bool
    items_by_key: bool = False  # only item rules, all keyed: send only items holding a key
    # Every branch reading a pair fact requires one of these pair-derived fields to be
    # true: a pair fact with all of them false cannot match and is not asserted.
    pair_gate: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class CompiledRulebase:
    """A rulebase compiled into sharded durable_rules rulesets, with routing.

    ``version`` is a content hash (of the rulebase's source hash and the compiler version);
    ruleset names embed it, so two versions can be registered side by side.
    ``routes`` maps a routing key (``"ingredients:阿莫西林"``) to the shards that hold rules
    needing it; ``general`` are the shards every prescription visits.
    """

    version: str
    rulebase: Rulebase
    rules: tuple[Rule, ...]
    shards: tuple[Shard, ...]
    routes: MappingProxyType[str, tuple[int, ...]]
    general: tuple[int, ...]

    def describe(self) -> dict[str, Any]:
        """A JSON-able, deterministic view of everything emitted (for golden files)."""
        return {
            "version": self.version,
            "rules": [r.id for r in self.rules],
            "general": list(self.general),
            "routes": {k: list(v) for k, v in sorted(self.routes.items())},
            "shards": [
                {
                    "name": s.name,
                    "keys": list(s.keys),
                    "branches": [[b.name, self.rules[b.rule].id, b.kind] for b in s.branches],
                    "item_props": [_describe_source(k) for k in s.item_props],
                    "rx_props": [_describe_source(k) for k in s.rx_props],
                    "derived": [
                        [d.name, d.on, list(d.binds), d.rule_id, type(d.cond).__name__, str(d.cond.span)]
                        for d in s.derived
                    ],
                    "needs_rx": s.needs_rx,
                    "needs_pairs": s.needs_pairs,
                    "items_by_key": s.items_by_key,
                    "pair_gate": list(s.pair_gate),
                    "definition": json.loads(s.definition),
                }
                for s in self.shards
            ],
        }


def _describe_source(k: SourceKey) -> str:
    flag = " +empty" if k.empty_flag else ""
    return f"{k.prop} <- {k.entity}.{k.key}{flag}"
