"""Host-side computations around the network, with the reference semantics.

Two things the network does not do itself:

* **derived fields** (before asserting): an atom the core cannot test natively is
  evaluated here, per item, per ordered pair or per prescription, with the reference
  interpreter's semantics — so a table lookup, an ordered-enum comparison or a quantifier
  means exactly what it means in ``audit_engine.lang.interpreter``. Each distinct
  condition is compiled once into a closure (``predicates``, see
  ``audit_engine.network.closures``) that computes what ``Evaluator.cond`` computes, and
  is evaluated once per ``DerivedField.key`` and binding (``runtime.Network._match``
  memoises);
* **findings** (after firing): a match (rule, bound items) becomes a ``Finding`` — level
  for the institution, message and suggestion, implicated items — with the interpreter's
  finding builder, so the network and the oracle cannot disagree on wording.

Neither decides *whether* a rule fires: that is the network's job.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from audit_engine.findings import Finding
from audit_engine.lang import interpreter, render
from audit_engine.lang import nodes as n
from audit_engine.network import closures
from audit_engine.network.ir import CompiledRulebase
from audit_engine.schema import PrescriptionFacts


@dataclass(slots=True)
class Matches:
    """What fired: (rule, item index) / (rule, first index, second index) / rule."""

    items: set[tuple[int, int]] = field(default_factory=set)
    pairs: set[tuple[int, int, int]] = field(default_factory=set)
    rx: set[int] = field(default_factory=set)


def evaluator(compiled: CompiledRulebase, facts: PrescriptionFacts) -> interpreter.Evaluator:
    """The reference evaluator for one prescription (shared by all derived fields of it)."""
    return interpreter.Evaluator(compiled.rulebase.tables, facts)


def predicates(compiled: CompiledRulebase) -> dict[str, tuple[tuple[str, ...], closures.Pred]]:
    """Per distinct ``DerivedField.key`` of ``compiled``: (the variables it binds, its
    condition compiled into a closure). For every field ``d`` with that key, binding those
    variables to ``d``'s items in order gives ``ev.cond(d.cond, ...)``: equal keys mean equal
    conditions up to the names of the bound variables, which the compiled closure reads
    under the names of the field it was compiled from."""
    out: dict[str, tuple[tuple[str, ...], closures.Pred]] = {}
    tables = compiled.rulebase.tables
    for shard in compiled.shards:
        for d in shard.derived:
            if d.key not in out:
                out[d.key] = (d.binds, closures.compile_cond(d.cond, tables))
    return out


def screens(compiled: CompiledRulebase) -> dict[str, tuple[int, closures.Screen]]:
    """Per distinct key of a pair-derived field that has one, its screen
    (``closures.compile_screen``): an item that fails it makes the field false for every
    pair binding it in that role, so the runtime tests it once per item, not once per pair."""
    out: dict[str, tuple[int, closures.Screen]] = {}
    tables = compiled.rulebase.tables
    for shard in compiled.shards:
        for d in shard.derived:
            if d.on == "pair" and d.key not in out:
                found = closures.compile_screen(d.cond, tables, d.binds)
                if found is not None:
                    out[d.key] = found
    return out


class FindingMaker:
    """Builds findings as the interpreter does (``interpreter._finding``), caching per rule what does not
    depend on the prescription (the rule-level lookups of its template and level)."""

    def __init__(self, compiled: CompiledRulebase) -> None:
        self.compiled = compiled
        self._lookups: dict[int, dict[str, n.Lookup]] = {}

    def lookups(self, ri: int) -> dict[str, n.Lookup]:
        found = self._lookups.get(ri)
        if found is None:
            found = self._lookups[ri] = render.rule_lookups(self.compiled.rules[ri])
        return found

    def findings(self, ev: interpreter.Evaluator, m: Matches) -> list[Finding]:
        """The findings of the matches, de-duplicated and sorted like the interpreter's."""
        facts = ev.facts
        rules = self.compiled.rules
        items = facts.items
        base = render.entity_data_for(facts, {})
        out: list[Finding] = []

        def make(ri: int, env: dict[str, Any], implicated: tuple[int, ...]) -> None:
            rule = rules[ri]
            _, level, _ = rule.resolve_for(facts.institution)
            assert level is not None and rule.category is not None
            lookups = self.lookups(ri)
            rows = render.lookup_rows(lookups, ev.tables, lambda k: ev.key_value(k, env)) if lookups else {}
            data = {**base, **env} if env else base
            out.append(Finding(
                rule_id=rule.id, title=rule.title, category=rule.category.main, subtype=rule.category.sub,
                level=level.value if isinstance(level, n.FixedLevel) else render.table_level(level, rows),
                message=render.render(rule.message, data, rows) or "", evidence=render.evidence(rule, rows),
                implicated=tuple(items[k]["reference"] for k in implicated),
                suggestion=render.render(rule.suggestion, data, rows),
                source=f"{rule.span.file}:{rule.span.line}",
            ))

        for ri, idx in sorted(m.items):
            trig = rules[ri].trigger
            assert isinstance(trig, n.ForEach)
            make(ri, {trig.var: items[idx]}, (idx,))
        by_pair: dict[tuple[int, int, int], tuple[int, int]] = {}
        for ri, i, j in sorted(m.pairs):
            key = (ri, min(i, j), max(i, j))
            # The interpreter tries (i, j) with i < j first: that order, when it matched, wins.
            if key not in by_pair or i < j:
                by_pair[key] = (i, j)
        for (ri, lo, hi), (i, j) in sorted(by_pair.items()):
            trig = rules[ri].trigger
            assert isinstance(trig, n.ForEachPair)
            make(ri, {trig.first: items[i], trig.second: items[j]}, (lo, hi))
        for ri in sorted(m.rx):
            trig = rules[ri].trigger
            assert trig is not None
            chosen: set[int] = set()
            for q in interpreter.outer_item_quantifiers(trig.cond):
                chosen.update(ev.matching(q.var, "item", q.cond, {}))
            make(ri, {}, tuple(sorted(chosen)) if chosen else tuple(range(len(items))))
        return interpreter.finish(out)
