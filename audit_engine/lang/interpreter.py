"""The reference interpreter: a slow, plain evaluator of the checked rulebase (the oracle).

It follows the semantics written in ``nodes.py`` literally, one rule and one binding at a
time, so the rules network can be tested against it finding for finding.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from audit_engine import schema, units
from audit_engine.findings import Finding
from audit_engine.lang import nodes as n
from audit_engine.lang import render as r
from audit_engine.lang.tables import Quantity, TableData

Env = dict[str, Mapping[str, Any]]


class _Absent:
    def __repr__(self) -> str:
        return "ABSENT"


ABSENT: Any = _Absent()


@dataclass(frozen=True, slots=True)
class Num:
    """A number; ``unit`` None means "in the other side's unit" (unitless literal, counts)."""

    value: float
    unit: str | None


@dataclass(frozen=True, slots=True)
class Multi:
    """A multi-unit field of one entity dict: the other side's unit picks the variant."""

    data: Mapping[str, Any]
    field: schema.Field


@dataclass(frozen=True, slots=True)
class Txt:
    value: str
    field: schema.Field | None = None  # an ordered enum field compares by position


_OPS = {
    "=": lambda a, b: a == b, "!=": lambda a, b: a != b, "<": lambda a, b: a < b,
    "<=": lambda a, b: a <= b, ">": lambda a, b: a > b, ">=": lambda a, b: a >= b,
}
_FLIP = {"=": "=", "!=": "!=", "<": ">", "<=": ">=", ">": "<", ">=": "<="}


class Evaluator:
    """Evaluates conditions and expressions of one rulebase against one prescription."""

    def __init__(self, tables: Mapping[str, TableData], facts: schema.PrescriptionFacts) -> None:
        self.tables = tables
        self.facts = facts

    # ---------------------------------------------------------------- entities
    def entity(self, var: str, entity: str, env: Env) -> Mapping[str, Any] | None:
        if var in env:
            return env[var]
        if entity in r.SINGLE_ENTITIES:
            d: Mapping[str, Any] = getattr(self.facts, entity)
            return d
        return None

    def collection(self, name: str) -> list[dict[str, Any]]:
        return self.facts.items if name == "item" else self.facts.diagnoses

    # ---------------------------------------------------------------- values
    def side(self, e: n.Expr, env: Env) -> Any:
        """An operand of a comparison: Num / Multi / Txt / tuple (text set) / bool, or ABSENT."""
        if isinstance(e, n.FieldRef):
            f = schema.field_of(e.entity, e.name)
            data = self.entity(e.var, e.entity, env)
            if f is None or data is None:
                return ABSENT
            if f.variants:
                return Multi(data, f)
            if f.name not in data:
                return ABSENT
            return _wrap(data[f.name], f)
        if isinstance(e, n.Number | n.Text | n.Symbol | n.Bool):
            return literal_side(e)
        if isinstance(e, n.Column):
            row = self.lookup(e.lookup, env)
            if row is None or e.column not in row or row[e.column] is None:
                return ABSENT
            return _wrap(row[e.column], None)
        if isinstance(e, n.Count):
            return Num(float(len(self.matching(e.var, e.collection, e.cond, env))), None)
        return ABSENT

    def key_value(self, e: n.Expr, env: Env) -> Any:
        """A lookup key's value: str, a tuple of str (text set), or None when absent."""
        return key_of(self.side(e, env))

    def lookup(self, lk: n.Lookup, env: Env) -> Mapping[str, Any] | None:
        table = self.tables.get(lk.table)
        if table is None:
            return None
        return table.lookup([self.key_value(k, env) for k in lk.keys])

    def matching(self, var: str, collection: str, cond: n.Cond | None, env: Env) -> list[int]:
        """Positions of the elements of ``collection`` that satisfy ``cond`` with ``var`` bound."""
        out = []
        for i, el in enumerate(self.collection(collection)):
            if cond is None or self.cond(cond, {**env, var: el}):
                out.append(i)
        return out

    # ---------------------------------------------------------------- conditions
    def cond(self, c: n.Cond, env: Env) -> bool:
        if isinstance(c, n.And):
            return all(self.cond(o, env) for o in c.operands)
        if isinstance(c, n.Or):
            return any(self.cond(o, env) for o in c.operands)
        if isinstance(c, n.Not):
            return not self.cond(c.operand, env)
        if isinstance(c, n.Compare):
            return compare(c.op, self.side(c.left, env), self.side(c.right, env))
        if isinstance(c, n.Between):
            v = self.side(c.value, env)
            return compare(">=", v, self.side(c.low, env)) and compare("<=", v, self.side(c.high, env))
        if isinstance(c, n.In):
            v = self.side(c.value, env)
            return any(compare("=", v, self.side(o, env)) for o in c.options)
        if isinstance(c, n.Contains):
            cont, item = self.side(c.container, env), self.side(c.item, env)
            if not isinstance(item, Txt):
                return False
            if isinstance(cont, tuple):
                return item.value in cont
            return isinstance(cont, Txt) and item.value in cont.value
        if isinstance(c, n.StartsWith):
            v = self.side(c.value, env)
            values = list(v) if isinstance(v, tuple) else [v.value] if isinstance(v, Txt) else []
            prefixes = [p.value for p in (self.side(x, env) for x in c.prefixes) if isinstance(p, Txt)]
            return any(x.startswith(p) for x in values for p in prefixes)
        if isinstance(c, n.Known):
            f = schema.field_of(c.ref.entity, c.ref.name)
            data = self.entity(c.ref.var, c.ref.entity, env)
            return f is not None and data is not None and any(k in data for k in f.keys)
        if isinstance(c, n.Truthy):
            data = self.entity(c.ref.var, c.ref.entity, env)
            return data is not None and data.get(c.ref.name) is True
        if isinstance(c, n.Exists):
            return self.lookup(c.lookup, env) is not None
        if isinstance(c, n.Quantified):
            elements = self.collection(c.collection)
            results = (self.cond(c.cond, {**env, c.var: el}) for el in elements)
            return any(results) if c.kind == "any" else all(results)
        raise TypeError(f"unknown condition {c!r}")


NOT_LITERAL: Any = object()


def literal_side(e: n.Expr) -> Any:
    """The side of a literal (it does not depend on the facts), or NOT_LITERAL."""
    if isinstance(e, n.Number):
        return Num(e.value, e.unit)
    if isinstance(e, n.Text | n.Symbol):
        return Txt(e.value)
    if isinstance(e, n.Bool):
        return e.value
    return NOT_LITERAL


def key_of(v: Any) -> Any:
    """A side's value as a lookup key: str, a tuple of str (text set), or None when absent."""
    if isinstance(v, Txt):
        return v.value
    if isinstance(v, tuple):
        return v
    if isinstance(v, Num):
        return r.format_number(v.value)
    return None


def _wrap(v: Any, f: schema.Field | None) -> Any:
    if isinstance(v, bool):
        return v
    if isinstance(v, Quantity):
        return Num(v.value, units.BASE_UNITS[v.dimension])
    if isinstance(v, int | float):
        return Num(float(v), f.unit if f is not None else None)
    if isinstance(v, list | tuple):
        return tuple(v)
    return Txt(str(v), f if (f is not None and f.ordered) else None)


def compare(op: str, a: Any, b: Any) -> bool:
    """``a op b`` with the rules of ``nodes.Compare``; False when either side is ABSENT."""
    if a is ABSENT or b is ABSENT:
        return False
    if isinstance(b, Multi) and not isinstance(a, Multi):
        return compare(_FLIP[op], b, a)
    if isinstance(a, Multi):
        if not isinstance(b, Num) or b.unit is None:
            return False
        dim = units.lookup(b.unit).dimension
        key = a.field.variants.get(dim)
        if key is None or key not in a.data:
            return False
        return _OPS[op](float(a.data[key]), units.convert(b.value, b.unit, units.BASE_UNITS[dim]))
    if isinstance(a, Num) and isinstance(b, Num):
        x, y = a.value, b.value
        if a.unit is not None and b.unit is not None and a.unit != b.unit:
            try:
                y = units.convert(y, b.unit, a.unit)
            except units.UnitError:
                return False
        return _OPS[op](x, y)
    if isinstance(a, bool) and isinstance(b, bool):
        return op in ("=", "!=") and _OPS[op](a, b)
    if isinstance(a, tuple) or isinstance(b, tuple):
        return _set_compare(op, a, b)
    if isinstance(a, Txt) and isinstance(b, Txt):
        if op in ("=", "!="):
            return _OPS[op](a.value, b.value)
        fld = a.field or b.field
        if fld is None or a.value not in fld.values or b.value not in fld.values:
            return False
        return _OPS[op](fld.values.index(a.value), fld.values.index(b.value))
    return False


def _set_compare(op: str, a: Any, b: Any) -> bool:
    if op not in ("=", "!="):
        return False
    sa = set(a) if isinstance(a, tuple) else {a.value} if isinstance(a, Txt) else None
    sb = set(b) if isinstance(b, tuple) else {b.value} if isinstance(b, Txt) else None
    if sa is None or sb is None:
        return False
    shared = bool(sa & sb)
    return shared if op == "=" else not shared


def outer_item_quantifiers(c: Any) -> list[n.Quantified | n.Count]:
    """Item quantifiers of a condition that are not nested in any other quantifier."""
    out: list[n.Quantified | n.Count] = []

    def walk(x: Any) -> None:
        if isinstance(x, n.Quantified | n.Count):
            if x.collection == "item":
                out.append(x)
            return
        if isinstance(x, tuple):
            for y in x:
                walk(y)
        elif isinstance(x, n.And | n.Or):
            walk(x.operands)
        elif isinstance(x, n.Not):
            walk(x.operand)
        elif isinstance(x, n.Compare):
            walk((x.left, x.right))
        elif isinstance(x, n.Between):
            walk((x.value, x.low, x.high))
        elif isinstance(x, n.In):
            walk((x.value, *x.options))
        elif isinstance(x, n.Contains):
            walk((x.container, x.item))
        elif isinstance(x, n.StartsWith):
            walk((x.value, *x.prefixes))
        elif isinstance(x, n.Column):
            walk(x.lookup)
        elif isinstance(x, n.Lookup | n.Exists):
            walk(x.keys if isinstance(x, n.Lookup) else x.lookup)

    walk(c)
    return out


def _finding(rule: n.Rule, level: n.Level, ev: Evaluator, env: Env, implicated: tuple[str, ...],
             lookups: Mapping[str, n.Lookup]) -> Finding:
    rows = r.lookup_rows(lookups, ev.tables, lambda k: ev.key_value(k, env))
    data = r.entity_data_for(ev.facts, env)
    value = level.value if isinstance(level, n.FixedLevel) else r.table_level(level, rows)
    assert rule.category is not None
    return Finding(
        rule_id=rule.id, title=rule.title, category=rule.category.main, subtype=rule.category.sub,
        level=value, message=r.render(rule.message, data, rows) or "", evidence=r.evidence(rule, rows),
        implicated=implicated, suggestion=r.render(rule.suggestion, data, rows),
        source=f"{rule.span.file}:{rule.span.line}",
    )


def evaluate_rule(rule: n.Rule, ev: Evaluator) -> list[Finding]:
    """The findings of one rule for the evaluator's facts (scope and overrides applied)."""
    enabled, level, scope = rule.resolve_for(ev.facts.institution)
    if not enabled or level is None or rule.trigger is None or not scope.admits(ev.facts):
        return []
    lookups = r.rule_lookups(rule)
    items = ev.facts.items
    trig = rule.trigger
    out: list[Finding] = []
    if isinstance(trig, n.ForEach):
        for item in items:
            env: Env = {trig.var: item}
            if ev.cond(trig.cond, env):
                out.append(_finding(rule, level, ev, env, (item["reference"],), lookups))
    elif isinstance(trig, n.ForEachPair):
        for i in range(len(items)):
            for j in range(i + 1, len(items)):
                for a, b in ((i, j), (j, i)):
                    env = {trig.first: items[a], trig.second: items[b]}
                    if ev.cond(trig.cond, env):
                        refs = (items[i]["reference"], items[j]["reference"])
                        out.append(_finding(rule, level, ev, env, refs, lookups))
                        break
    else:
        if ev.cond(trig.cond, {}):
            chosen: set[int] = set()
            for q in outer_item_quantifiers(trig.cond):
                chosen.update(ev.matching(q.var, "item", q.cond, {}))
            picked = sorted(chosen) if chosen else range(len(items))
            out.append(_finding(rule, level, ev, {}, tuple(items[k]["reference"] for k in picked), lookups))
    return out


def finish(findings: list[Finding]) -> list[Finding]:
    """De-duplicate and sort findings the one deterministic way."""
    return sorted(set(findings), key=lambda f: (f.sort_key(), f.message))


def evaluate(rulebase: n.Rulebase, facts: schema.PrescriptionFacts) -> list[Finding]:
    """Every finding of ``rulebase`` for ``facts``, de-duplicated and sorted."""
    ev = Evaluator(rulebase.tables, facts)
    found: list[Finding] = []
    for rule in rulebase.rules:
        found.extend(evaluate_rule(rule, ev))
    return finish(found)
