"""A synthetic county rulebase of any size, for the 5,000-rule test and the benchmark.

N drug-specific rules (90% item rules, 10% pair rules, each pinned to one ingredient, so each
is routed) plus the same 12 general rules at every size (table-driven dose and interaction
checks, counts, scope and override rules), reading a 50,000-row dose table (10,000
ingredients x 5 populations) and an interaction table.
"""

from __future__ import annotations

from typing import Any

from audit_engine.lang import nodes as n
from audit_engine.schema import PrescriptionFacts

from . import builders as b

r = b.ref
POPS = ("成人", "儿童", "老年", "婴儿", "青少年")
TABLE_INGREDIENTS = 10_000
PRESCRIBED = (0, 7, 13, 21, 34)  # ingredient numbers on the prescription (spread over shards)


def ing(k: int) -> str:
    return f"成分{k:05d}"


def drug_rule(i: int, per_ingredient: int) -> n.Rule:
    k = i // per_ingredient
    has = b.cmp("=", r("药品", "ingredients"), b.text(ing(k)))
    shape = i % 10
    if shape == 9:
        cond: n.Cond = b.and_(b.cmp("=", r("甲", "ingredients"), b.text(ing(k))),
                              b.cmp("=", r("乙", "ingredients"), b.text(ing(k + 1))),
                              b.cmp(">", r("甲", "daily_dose"), b.num(10 + i % 7, "mg")))
        return b.rule(f"DDI-{i:05d}", b.for_pair(cond), level=6, message=b.template(("甲", "name"), " 与 ", ("乙", "name")))
    extra = [
        b.cmp(">", r("药品", "daily_dose"), b.num(100 + i, "mg")),
        b.cmp("<", r("patient", "age"), b.num(12, "岁")),
        n.Truthy(r("patient", "pregnant"), b.S),
        b.cmp(">", r("药品", "days"), b.num(7 + i % 5)),
        n.In(r("药品", "route"), (n.Symbol("静滴", b.S), n.Symbol("肌注", b.S)), b.S),
        b.cmp(">", r("patient", "age"), b.num(65, "岁")),
        b.not_(n.Known(r("patient", "weight"), b.S)),
        b.cmp(">", r("药品", "antimicrobial_grade"), r("prescriber", "antimicrobial_grade")),
        b.and_(n.Truthy(r("patient", "lactating"), b.S), b.cmp(">=", r("药品", "dose"), b.num(50, "mg"))),
    ][shape]
    return b.rule(f"DRUG-{i:05d}", b.for_each(b.and_(has, extra)), level=1 + i % 8,
                  message=b.template(("药品", "name"), " 规则 ", f"{i}"))


def general_rules() -> list[n.Rule]:
    dose_lookup = n.Lookup("最大日剂量", (r("药品", "ingredients"), r("patient", "population")), b.S)
    ddi = n.Lookup("相互作用", (r("甲", "ingredients"), r("乙", "ingredients")), b.S)
    village = n.Override("DAYS", n.OverrideTarget("institution_level", ("村卫生室",), b.S), False,
                         n.FixedLevel(6, b.S), (), b.S)
    return [
        b.rule("DOSE-MAX", b.for_each(b.and_(b.cmp(">", r("药品", "daily_dose"), n.Column(dose_lookup, "上限", b.S)),
                                             b.not_(n.Truthy(r("药品", "overdose_reason"), b.S))))),
        b.rule("DDI-TABLE", b.for_pair(n.Exists(ddi, b.S)), table_level=("相互作用", "等级")),
        b.rule("DAYS", b.for_each(b.and_(b.cmp(">", r("药品", "days"), b.num(7)),
                                         b.not_(b.or_(n.Truthy(r("patient", "chronic"), b.S),
                                                      n.Truthy(r("prescription", "long_term"), b.S))))),
               scope=n.Scope(prescription_types=frozenset(["门诊"])), variants=(village,)),
        b.rule("INJ-COUNT", b.when(b.cmp(">", n.Count("药品", "item", n.Truthy(r("药品", "injection"), b.S), b.S), b.num(2)))),
        b.rule("CHILD-WEIGHT", b.when(b.and_(b.cmp("<", r("patient", "age"), b.num(12, "岁")),
                                             b.not_(n.Known(r("patient", "weight"), b.S))))),
        b.rule("ITEMS-5", b.when(b.cmp(">", r("prescription", "item_count"), b.num(5)))),
        b.rule("DUP-ING", b.for_pair(b.cmp("=", r("甲", "ingredients"), r("乙", "ingredients")))),
        b.rule("GRADE", b.for_each(b.cmp(">", r("药品", "antimicrobial_grade"), r("prescriber", "antimicrobial_grade")))),
        b.rule("INJ-ORAL", b.for_each(b.and_(n.Truthy(r("药品", "injection"), b.S), b.cmp("=", r("药品", "route"), n.Symbol("口服", b.S))))),
        b.rule("PREG-X", b.for_each(b.and_(n.Truthy(r("patient", "pregnant"), b.S), n.Contains(r("药品", "classes"), b.text("X级"), b.S)))),
        b.rule("ELDER-HIGH", b.for_each(b.and_(b.cmp(">=", r("patient", "age"), b.num(65, "岁")), n.Truthy(r("药品", "high_alert"), b.S)))),
        b.rule("ALLERGY", b.for_each(b.cmp("=", r("药品", "ingredients"), r("patient", "allergies")))),
    ]


def tables() -> dict[str, Any]:
    rows = [(ing(k), p, 1000.0 + k) for k in range(TABLE_INGREDIENTS) for p in POPS]
    ddi = [(ing(k), ing(k + 1), 5 + k % 4, "相互作用") for k in range(0, 400, 3)]
    return {"最大日剂量": b.max_dose_table(rows), "相互作用": b.interactions_table(ddi)}


def rulebase(count: int, shared_tables: dict[str, Any]) -> n.Rulebase:
    per = 5
    return b.rulebase([*(drug_rule(i, per) for i in range(count)), *general_rules()], shared_tables)


def prescription(ingredients: tuple[int, ...] = PRESCRIBED) -> PrescriptionFacts:
    items = [b.item(i, name=f"药品{k}", ingredients=[ing(k)], daily_dose_mg=1500.0 + 100 * i, dose_mg=500.0,
                    days=5 + 2 * i, route="静滴" if i % 2 else "口服", injection=i % 2 == 1,
                    antimicrobial_grade="限制使用级", classes=["抗菌药物"])
             for i, k in enumerate(ingredients)]
    return b.facts(items, patient={"age_years": 70, "age_days": 70 * 365, "population": "老年", "weight": 60.0,
                                   "chronic": False, "allergies": ["青霉素"]},
                   prescription={"type": "门诊", "date": "2026-11-23", "item_count": 5},
                   prescriber={"antimicrobial_grade": "非限制使用级"}, institution={"level": "村卫生室"})
