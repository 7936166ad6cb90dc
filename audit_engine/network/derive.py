"""Host-side computations around the network, with the reference semantics.

Two things the network does not do itself:

* **derived fields** (before asserting): an atom the core cannot test natively is
  evaluated here, per item, per ordered pair or per prescription, by the reference
  interpreter's own condition evaluator — so a table lookup, an ordered-enum comparison
  or a quantifier means exactly what it means in ``audit_engine.lang.interpreter``;
* **findings** (after firing): a match (rule, bound items) becomes a ``Finding`` — level
  for the institution, message and suggestion, implicated items — with the interpreter's
  finding builder, so the network and the oracle cannot disagree on wording.

Neither decides *whether* a rule fires: that is the network's job.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from audit_engine.findings import Finding
from audit_engine.lang import nodes as n
from audit_engine.network.ir import CompiledRulebase, DerivedField
from audit_engine.schema import PrescriptionFacts


@dataclass(slots=True)
class Matches:
    """What fired: (rule, item index) / (rule, first index, second index) / rule."""

    items: set[tuple[int, int]] = field(default_factory=set)
    pairs: set[tuple[int, int, int]] = field(default_factory=set)
    rx: set[int] = field(default_factory=set)


def holds(rulebase: n.Rulebase, d: DerivedField, facts: PrescriptionFacts, bindings: dict[str, Any]) -> bool:
    """The value of derived field ``d`` with ``bindings`` (variable -> item dict)."""
    from audit_engine.lang import interpreter

    return bool(interpreter.eval_cond(rulebase, d.cond, facts, bindings))


def findings(compiled: CompiledRulebase, facts: PrescriptionFacts, m: Matches) -> list[Finding]:
    """The findings of the matches, de-duplicated and sorted like the interpreter's."""
    from audit_engine.lang import interpreter

    rb = compiled.rulebase
    rules = compiled.rules
    items = facts.items
    out: list[Finding] = []
    for ri, idx in sorted(m.items):
        rule = rules[ri]
        trig = rule.trigger
        assert isinstance(trig, n.ForEach)
        out.append(interpreter.make_finding(rb, rule, facts, {trig.var: items[idx]}, (idx,)))
    by_pair: dict[tuple[int, int, int], tuple[int, int]] = {}
    for ri, i, j in sorted(m.pairs):
        key = (ri, min(i, j), max(i, j))
        # The interpreter tries (i, j) with i < j first: that order, when it matched, wins.
        if key not in by_pair or i < j:
            by_pair[key] = (i, j)
    for (ri, lo, hi), (i, j) in sorted(by_pair.items()):
        rule = rules[ri]
        trig = rule.trigger
        assert isinstance(trig, n.ForEachPair)
        out.append(interpreter.make_finding(rb, rule, facts, {trig.first: items[i], trig.second: items[j]},
                                            (lo, hi)))
    for ri in sorted(m.rx):
        rule = rules[ri]
        out.append(interpreter.make_finding(rb, rule, facts, {}, None))
    return interpreter.finish(out)
