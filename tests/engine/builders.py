"""Checked AST nodes built directly (no parser), for engine tests and benchmarks."""

from __future__ import annotations

import hashlib
from typing import Any

from audit_engine import schema
from audit_engine.lang import nodes as n
from audit_engine.lang.tables import Quantity, TableData
from audit_engine.schema import PrescriptionFacts

S = n.Span("<generated>", 1, 1, 1, 2)


def ref(var: str, name: str) -> n.FieldRef:
    """A checked field reference: ``var`` is an entity name or an item variable."""
    entity = var if var in schema.ENTITIES else "item"
    fld = schema.field_of(entity, name)
    assert fld is not None, (entity, name)
    return n.FieldRef(var, name, S, entity, fld.name)


def num(value: float, unit: str | None = None) -> n.Number:
    return n.Number(float(value), unit, S)


def text(value: str) -> n.Text:
    return n.Text(value, S)


def cmp(op: str, left: n.Expr, right: n.Expr) -> n.Compare:
    return n.Compare(op, left, right, S)  # type: ignore[arg-type]


def and_(*ops: n.Cond) -> n.And:
    return n.And(tuple(ops), S)


def or_(*ops: n.Cond) -> n.Or:
    return n.Or(tuple(ops), S)


def not_(op: n.Cond) -> n.Not:
    return n.Not(op, S)


def template(*parts: str | tuple[str, str]) -> n.Template:
    """Literal text and ``(target, field)`` placeholders."""
    out: list[str | n.Placeholder] = []
    for p in parts:
        if isinstance(p, str):
            out.append(p)
        else:
            target, name = p
            entity = target if target in schema.ENTITIES else "item"
            fld = schema.field_of(entity, name)
            assert fld is not None
            out.append(n.Placeholder(target, name, S, "field", entity, fld.name))
    return n.Template(tuple(out), S)


def rule(rule_id: str, trigger: n.Trigger, *, level: int = 5, message: n.Template | None = None,
         scope: n.Scope | None = None, variants: tuple[n.Override, ...] = (),
         table_level: tuple[str, str] | None = None) -> n.Rule:
    lvl: n.Level = n.TableLevel(table_level[0], table_level[1], None, S) if table_level else n.FixedLevel(level, S)
    return n.Rule(
        id=rule_id,
        title=f"规则 {rule_id}",
        category=n.Category("适宜性", "测试", S),
        level=lvl,
        evidence="测试依据",
        scope=(),
        trigger=trigger,
        message=message or template(f"{rule_id} 命中"),
        suggestion=None,
        span=n.Span("<generated>", 1, 1, 1, 2),
        variants=variants,
        effective_scope=scope or n.Scope(),
    )


def for_each(cond: n.Cond, var: str = "药品") -> n.ForEach:
    return n.ForEach(var, cond, S)


def for_pair(cond: n.Cond, first: str = "甲", second: str = "乙") -> n.ForEachPair:
    return n.ForEachPair(first, second, cond, S)


def when(cond: n.Cond) -> n.When:
    return n.When(cond, S)


def interactions_table(rows: list[tuple[str | None, str | None, int, str]]) -> TableData:
    decl = n.TableDecl(
        "相互作用", "tables/interactions.csv",
        (n.KeyColumn("成分甲", "exact", S), n.KeyColumn("成分乙", "exact", S)),
        (n.ValueColumn("等级", "int", None, None, S), n.ValueColumn("机制", "text", None, None, S)),
        n.Prefer("等级", "highest", S), S)
    data = [{"_line": i + 2, "成分甲": a, "成分乙": b, "等级": lvl, "机制": mech}
            for i, (a, b, lvl, mech) in enumerate(rows)]
    return TableData.build(decl, "tables/interactions.csv", data)


def max_dose_table(rows: list[tuple[str | None, str | None, float]]) -> TableData:
    """成分, 人群 -> 上限 (mg)."""
    decl = n.TableDecl(
        "最大日剂量", "tables/max_daily_dose.csv",
        (n.KeyColumn("成分", "exact", S), n.KeyColumn("人群", "exact", S)),
        (n.ValueColumn("上限", "number", "mg", None, S),), None, S)
    data = [{"_line": i + 2, "成分": a, "人群": b, "上限": Quantity(float(v), "mass", f"{v:g} mg")}
            for i, (a, b, v) in enumerate(rows)]
    return TableData.build(decl, "tables/max_daily_dose.csv", data)


def rulebase(rules: list[n.Rule] | tuple[n.Rule, ...], tables: dict[str, Any] | None = None) -> n.Rulebase:
    rules = tuple(rules)
    digest = hashlib.sha256(repr((rules, sorted((tables or {}).keys()))).encode()).hexdigest()
    return n.Rulebase("生成的规则库", "test", rules, dict(tables or {}), (), (), digest)


def item(idx: int, **fields: Any) -> dict[str, Any]:
    base: dict[str, Any] = {"id": f"mr{idx}", "reference": f"MedicationRequest/mr{idx}"}
    base.update(fields)
    return base


def facts(items: list[dict[str, Any]], **entities: dict[str, Any]) -> PrescriptionFacts:
    return PrescriptionFacts(
        patient=dict(entities.get("patient", {})),
        prescription=dict(entities.get("prescription", {})),
        prescriber=dict(entities.get("prescriber", {})),
        institution=dict(entities.get("institution", {})),
        items=items,
    )
