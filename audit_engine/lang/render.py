"""How a finding's text and table-driven level are produced: shared by interpreter and network.

Both evaluators call these functions with the bindings of a finding, so messages, suggestions
and ``按表`` levels come out byte-identical whichever evaluator produced the finding.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Mapping
from typing import Any

from audit_engine import schema, units
from audit_engine.lang import nodes as n
from audit_engine.lang.tables import Quantity, TableData

UNKNOWN = "未知"
DEFAULT_TABLE_LEVEL = 5
SINGLE_ENTITIES = ("patient", "prescription", "prescriber", "institution")


def format_number(v: float) -> str:
    """``4000.0`` -> ``4000``; ``2.45`` -> ``2.45``; at most 4 decimals."""
    if float(v).is_integer():
        return str(int(v))
    return f"{v:.4f}".rstrip("0").rstrip(".")


def format_field(f: schema.Field, data: Mapping[str, Any]) -> str:
    """A fact field of one entity dict, as shown in a message (see nodes.Placeholder)."""
    if f.variants:
        for dim, key in f.variants.items():
            if key in data:
                unit = shown_unit(dim, data) if f.entity == "item" else units.BASE_UNITS[dim]
                return f"{format_number(data[key] / units.lookup(unit).factor)} {unit}"
        return UNKNOWN
    if f.name not in data:
        return UNKNOWN
    return format_value(data[f.name])


def shown_unit(dimension: str, item: Mapping[str, Any]) -> str:
    """The unit an item's dose of ``dimension`` is shown in: the unit it was prescribed in
    (``dose_unit``) when that measures the same dimension, so 饮片 written in g read
    ``每日 6 g``, not ``6000 mg``; else g for a 饮片, else the dimension's base unit."""
    written = item.get("dose_unit")
    if isinstance(written, str) and written in units.UNITS and units.UNITS[written].dimension == dimension:
        return written
    if dimension == "mass" and item.get("herbal"):
        return "g"
    return units.BASE_UNITS[dimension]


def evidence(rule: n.Rule, rows: Mapping[str, Mapping[str, Any] | None]) -> str:
    """A finding's 依据: the source (来源 cell) of every table row that drove it, then the rule's own."""
    cited = []
    for name, row in rows.items():
        source = row.get("_source") if row is not None else None
        if source:
            cited.append(f"{source}（表“{name}”第 {row['_line']} 行）")  # type: ignore[index]
    own = rule.evidence or ""
    if not cited:
        return own
    return "；".join(cited) + (f"；规则依据：{own}" if own else "")


def format_value(v: Any) -> str:
    """A plain value (fact or table cell) as shown in a message."""
    if v is None:
        return UNKNOWN
    if isinstance(v, bool):
        return "是" if v else "否"
    if isinstance(v, Quantity):
        return v.text
    if isinstance(v, int | float):
        return format_number(v)
    if isinstance(v, list | tuple):
        return "、".join(str(x) for x in v)
    return str(v)


@functools.cache
def _child_fields(cls: type) -> tuple[str, ...]:
    return tuple(f.name for f in dataclasses.fields(cls) if f.name != "span")


def first_lookups(c: Any) -> list[n.Lookup]:
    """Every lookup inside ``c`` in source order (nested key lookups before their owner)."""
    out: list[n.Lookup] = []

    def walk(x: Any) -> None:
        if isinstance(x, n.Lookup):
            for k in x.keys:
                walk(k)
            out.append(x)
        elif isinstance(x, tuple):
            for y in x:
                walk(y)
        elif dataclasses.is_dataclass(x) and not isinstance(x, type | n.Span):
            for name in _child_fields(type(x)):
                walk(getattr(x, name))

    walk(c)
    return sorted(out, key=lambda lk: (lk.span.line, lk.span.col))


def top_level_only(e: Any, bindings: Mapping[str, str]) -> bool:
    """Whether expression ``e`` reads only the trigger's variables and the single entities."""
    if isinstance(e, n.FieldRef):
        return e.var in bindings or schema.ENTITY_BY_ZH.get(e.var, e.var) in SINGLE_ENTITIES
    if isinstance(e, n.Lookup):
        return all(top_level_only(k, bindings) for k in e.keys)
    if isinstance(e, n.Column):
        return top_level_only(e.lookup, bindings)
    return not isinstance(e, n.Count)


def trigger_bindings(trigger: n.Trigger) -> dict[str, str]:
    """The variables a trigger binds (var -> collection)."""
    if isinstance(trigger, n.ForEach):
        return {trigger.var: "item"}
    if isinstance(trigger, n.ForEachPair):
        return {trigger.first: "item", trigger.second: "item"}
    return {}


def rule_lookups(rule: n.Rule) -> dict[str, n.Lookup]:
    """table -> the lookup that ``{表.列}`` placeholders and ``等级 按表`` read: the first lookup
    of that table in the condition whose keys read only trigger variables and single entities."""
    if rule.trigger is None:
        return {}
    bindings = trigger_bindings(rule.trigger)
    found: dict[str, n.Lookup] = {}
    for lk in first_lookups(rule.trigger.cond):
        if lk.table not in found and top_level_only(lk, bindings):
            found[lk.table] = lk
    return found


Resolver = Any  # callable(Lookup) -> row dict | None, evaluated with the finding's bindings


def render(tpl: n.Template | None, entity_data: Mapping[str, Mapping[str, Any]],
           rows: Mapping[str, Mapping[str, Any] | None]) -> str | None:
    """Fill a checked template. ``entity_data`` maps a placeholder target (entity word or
    variable as written) to its fact dict; ``rows`` maps a table name to its looked-up row."""
    if tpl is None:
        return None
    out: list[str] = []
    for part in tpl.parts:
        if isinstance(part, str):
            out.append(part)
        elif part.kind == "column":
            row = rows.get(part.target)
            out.append(format_value(row.get(part.name)) if row is not None else UNKNOWN)
        else:
            f = schema.field_of(part.entity, part.field)
            data = entity_data.get(part.target)
            out.append(format_field(f, data) if (f is not None and data is not None) else UNKNOWN)
    return "".join(out)


def entity_data_for(facts: Any, env: Mapping[str, Mapping[str, Any]]) -> dict[str, Mapping[str, Any]]:
    """Placeholder targets -> dicts: the four single entities by both names, plus bindings."""
    data: dict[str, Mapping[str, Any]] = {}
    for en in SINGLE_ENTITIES:
        d = getattr(facts, en)
        data[en] = d
        data[schema.ENTITIES[en]] = d
    data.update(env)
    return data


def table_level(level: n.TableLevel, rows: Mapping[str, Mapping[str, Any] | None]) -> int:
    """The level a ``等级 按表`` clause gives for the finding's looked-up rows."""
    row = rows.get(level.table)
    value = row.get(level.column) if row is not None else None
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    return level.default if level.default is not None else DEFAULT_TABLE_LEVEL


def lookup_rows(lookups: Mapping[str, n.Lookup], tables: Mapping[str, TableData],
                key_value: Any) -> dict[str, Mapping[str, Any] | None]:
    """Evaluate the rule-level lookups; ``key_value(expr)`` gives a key expression's value."""
    rows: dict[str, Mapping[str, Any] | None] = {}
    for name, lk in lookups.items():
        table = tables.get(name)
        rows[name] = table.lookup([key_value(k) for k in lk.keys]) if table is not None else None
    return rows
