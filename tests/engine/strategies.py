"""Hypothesis strategies: checked rulebases covering every construct, and prescriptions.

Values come from small pools so that conditions often hold, facts often lack a field,
and items often share ingredients (pairs, table rows and routing keys all get exercised).
"""

from __future__ import annotations

import functools
from typing import Any

from hypothesis import strategies as st

from audit_engine.lang import nodes as n

from . import builders as b

INGREDIENTS = ("辛伐他汀", "氨氯地平", "克拉霉素", "华法林", "阿司匹林", "布洛芬")
CLASSES = ("他汀类", "非甾体抗炎药", "大环内酯类", "C10AA")
NAMES = ("辛伐他汀片", "氨氯地平片", "克拉霉素片", "布洛芬缓释胶囊")
ROUTES = ("口服", "静滴", "肌注")
GRADES = ("非限制使用级", "限制使用级", "特殊使用级")
LEVELS = ("县级医院", "乡镇卫生院", "村卫生室")
POPS = ("成人", "儿童", "老年")
DATES = ("2026-01-01", "2026-06-01", "2026-12-31")

TABLES = {
    "相互作用": b.interactions_table([
        ("辛伐他汀", "克拉霉素", 8, "CYP3A4"), ("华法林", "阿司匹林", 7, "出血"),
        ("华法林", None, 3, "监测 INR"), ("克拉霉素", "华法林", 6, "INR 升高"),
    ]),
    "最大日剂量": b.max_dose_table([("布洛芬", "成人", 2400), ("布洛芬", "儿童", 800), ("辛伐他汀", None, 80)]),
}


@functools.cache
def item_atoms(v: str) -> st.SearchStrategy[n.Cond]:
    """Atoms about one item variable ``v`` (and the context)."""
    r = b.ref
    ops = st.sampled_from(["=", "!=", "<", "<=", ">", ">="])
    return st.one_of(
        st.builds(lambda op, x, u: b.cmp(op, r(v, "daily_dose"), b.num(x, u)), ops,
                  st.sampled_from([20, 40, 500, 2400]), st.sampled_from(["mg", "g"])),
        st.builds(lambda op, x: b.cmp(op, r(v, "days"), b.num(x)), ops, st.sampled_from([3, 7, 14])),
        st.builds(lambda op, x: b.cmp(op, b.num(x, "周"), r(v, "days")), ops, st.sampled_from([1, 2])),
        st.builds(lambda op, x: b.cmp(op, r(v, "ingredients"), b.text(x)), st.sampled_from(["=", "!="]),
                  st.sampled_from(INGREDIENTS)),
        st.builds(lambda op, x: b.cmp(op, r(v, "name"), b.text(x)), st.sampled_from(["=", "!="]),
                  st.sampled_from(NAMES)),
        st.builds(lambda x: b.cmp("=", r(v, "drug_id"), b.text(x)), st.sampled_from(["d1", "d2", "d3"])),
        st.builds(lambda x: n.Contains(r(v, "classes"), b.text(x), b.S), st.sampled_from(CLASSES)),
        st.builds(lambda xs: n.In(r(v, "route"), tuple(n.Symbol(x, b.S) for x in xs), b.S),
                  st.lists(st.sampled_from(ROUTES), min_size=1, max_size=2, unique=True)),
        st.builds(lambda xs: n.In(r(v, "ingredients"), tuple(b.text(x) for x in xs), b.S),
                  st.lists(st.sampled_from(INGREDIENTS), min_size=1, max_size=2, unique=True)),
        st.builds(lambda lo, hi: n.Between(r(v, "days"), b.num(lo), b.num(hi), b.S),
                  st.sampled_from([1, 5]), st.sampled_from([7, 10])),
        st.just(n.Truthy(r(v, "injection"), b.S)),
        st.just(n.Truthy(r(v, "overdose_reason"), b.S)),
        st.builds(lambda x: b.cmp("=", r(v, "injection"), n.Bool(x, b.S)), st.booleans()),
        st.just(n.Known(r(v, "daily_dose"), b.S)),
        # ordered enum (derived) and two fields compared (derived)
        st.builds(lambda op, g: b.cmp(op, r(v, "antimicrobial_grade"), n.Symbol(g, b.S)), ops,
                  st.sampled_from(GRADES)),
        st.builds(lambda op: b.cmp(op, r(v, "antimicrobial_grade"), r("prescriber", "antimicrobial_grade")), ops),
        # table lookups (derived)
        st.just(b.cmp(">", r(v, "daily_dose"), n.Column(_dose_lookup(v), "上限", b.S))),
        st.just(n.Exists(_dose_lookup(v), b.S)),
        st.builds(lambda p: n.StartsWith(r(v, "atc"), (b.text(p),), b.S), st.sampled_from(["C10", "J01"])),
    )


def _dose_lookup(v: str) -> n.Lookup:
    return n.Lookup("最大日剂量", (b.ref(v, "ingredients"), b.ref("patient", "population")), b.S)


@functools.cache
def context_atoms() -> st.SearchStrategy[n.Cond]:
    r = b.ref
    ops = st.sampled_from(["=", "!=", "<", "<=", ">", ">="])
    return st.one_of(
        st.builds(lambda op, x, u: b.cmp(op, r("patient", "age"), b.num(x, u)), ops,
                  st.sampled_from([12, 65, 28]), st.sampled_from(["岁", "天"])),
        st.builds(lambda op, x: b.cmp(op, r("patient", "weight"), b.num(x, "kg")), ops, st.sampled_from([20, 60])),
        st.just(n.Truthy(r("patient", "pregnant"), b.S)),
        st.just(n.Truthy(r("patient", "chronic"), b.S)),
        st.just(n.Known(r("patient", "weight"), b.S)),
        st.builds(lambda x: b.cmp("=", r("prescription", "type"), n.Symbol(x, b.S)), st.sampled_from(["门诊", "急诊"])),
        st.builds(lambda x: b.cmp("=", r("institution", "level"), n.Symbol(x, b.S)), st.sampled_from(LEVELS)),
        st.builds(lambda x: b.cmp("=", r("patient", "allergies"), b.text(x)), st.sampled_from(INGREDIENTS)),
        st.builds(lambda x: b.cmp("!=", r("patient", "allergies"), b.text(x)), st.sampled_from(INGREDIENTS)),
        st.builds(lambda p: n.StartsWith(r("patient", "diagnosis_codes"), (b.text(p),), b.S),
                  st.sampled_from(["N18", "O"])),
    )


@functools.cache
def quantifier_atoms(depth_var: str) -> st.SearchStrategy[n.Cond]:
    """Quantifiers and counts over items (derived), binding a fresh variable."""
    inner = st.one_of(item_atoms(depth_var), context_atoms())
    return st.one_of(
        st.builds(lambda k, c: n.Quantified(k, depth_var, "item", c, b.S), st.sampled_from(["any", "all"]), inner),
        st.builds(lambda op, k, c: b.cmp(op, n.Count(depth_var, "item", c, b.S), b.num(k)),
                  st.sampled_from([">", ">=", "="]), st.sampled_from([0, 1, 2]), st.one_of(st.none(), inner)),
    )


@functools.cache
def pair_atoms() -> st.SearchStrategy[n.Cond]:
    r = b.ref
    return st.one_of(
        st.just(n.Exists(n.Lookup("相互作用", (r("甲", "ingredients"), r("乙", "ingredients")), b.S), b.S)),
        st.just(b.cmp("=", r("甲", "ingredients"), r("乙", "ingredients"))),
        st.builds(lambda op: b.cmp(op, r("甲", "days"), r("乙", "days")), st.sampled_from(["<", ">", "="])),
        st.builds(lambda op: b.cmp(op, r("甲", "route"), r("乙", "route")), st.sampled_from(["=", "!="])),
    )


def combine(atoms: st.SearchStrategy[n.Cond]) -> st.SearchStrategy[n.Cond]:
    return st.recursive(
        atoms,
        lambda kids: st.one_of(
            st.builds(lambda xs: b.and_(*xs), st.lists(kids, min_size=2, max_size=3)),
            st.builds(lambda xs: b.or_(*xs), st.lists(kids, min_size=2, max_size=3)),
            st.builds(b.not_, kids),
        ),
        max_leaves=5,
    )


@functools.cache
def scopes() -> st.SearchStrategy[n.Scope]:
    return st.one_of(
        st.just(n.Scope()),
        st.builds(lambda lv: n.Scope(institution_levels=frozenset(lv)),
                  st.lists(st.sampled_from(LEVELS), min_size=1, max_size=2)),
        st.builds(lambda t: n.Scope(prescription_types=frozenset([t])), st.sampled_from(["门诊", "急诊"])),
        st.builds(lambda e, x: n.Scope(effective=e, expires=x), st.sampled_from([None, *DATES]),
                  st.sampled_from([None, *DATES])),
    )


@functools.cache
def variants() -> st.SearchStrategy[tuple[n.Override, ...]]:
    one = st.builds(
        lambda lv, kind, lvl, t: n.Override(
            "X", n.OverrideTarget("institution_level", (lv,), b.S), kind == "disable",
            n.FixedLevel(lvl, b.S) if kind == "level" else None,
            (n.ScopeItem("prescription_type", (t,), b.S),) if kind == "scope" else (), b.S),
        st.sampled_from(LEVELS), st.sampled_from(["disable", "level", "scope"]), st.integers(0, 9),
        st.sampled_from(["门诊", "急诊"]))
    return st.lists(one, max_size=2).map(tuple)


@functools.cache
def conditions(kind: str) -> st.SearchStrategy[n.Cond]:
    """Conditions of one trigger kind (built once: strategy validation is not free)."""
    if kind == "item":
        return combine(st.one_of(item_atoms("药品"), context_atoms(), quantifier_atoms("其他")))
    if kind == "pair":
        return combine(st.one_of(item_atoms("甲"), item_atoms("乙"), context_atoms(), pair_atoms()))
    return combine(st.one_of(context_atoms(), quantifier_atoms("药品")))


@st.composite
def rules(draw: st.DrawFn, rule_id: str) -> n.Rule:
    kind = draw(st.sampled_from(["item", "item", "pair", "rx"]))
    cond = draw(conditions(kind))
    if kind == "item":
        trig: n.Trigger = b.for_each(cond)
        msg = b.template("药品 ", ("药品", "name"), " 天数 ", ("药品", "days"))
    elif kind == "pair":
        trig = b.for_pair(cond)
        msg = b.template(("甲", "name"), " 与 ", ("乙", "name"))
    else:
        trig = b.when(cond)
        msg = b.template("处方 ", ("patient", "age"))
    table_level = ("相互作用", "等级") if kind == "pair" and draw(st.booleans()) else None
    return b.rule(rule_id, trig, level=draw(st.integers(0, 9)), message=msg, scope=draw(scopes()),
                  variants=draw(variants()), table_level=table_level)


@st.composite
def rulebases(draw: st.DrawFn, max_rules: int = 6) -> n.Rulebase:
    count = draw(st.integers(1, max_rules))
    rs = [draw(rules(f"R{i:02d}")) for i in range(count)]
    return b.rulebase(rs, TABLES)


def _maybe(draw: st.DrawFn, d: dict[str, Any], key: str, strat: st.SearchStrategy[Any]) -> None:
    if draw(st.booleans()):
        d[key] = draw(strat)


@st.composite
def items(draw: st.DrawFn, idx: int) -> dict[str, Any]:
    it = b.item(idx)
    _maybe(draw, it, "drug_id", st.sampled_from(["d1", "d2", "d3"]))
    _maybe(draw, it, "name", st.sampled_from(NAMES))
    _maybe(draw, it, "ingredients", st.lists(st.sampled_from(INGREDIENTS), max_size=2, unique=True).map(sorted))
    _maybe(draw, it, "classes", st.lists(st.sampled_from(CLASSES), max_size=2, unique=True).map(sorted))
    _maybe(draw, it, "atc", st.sampled_from(["C10AA01", "J01FA09", "B01AA03"]))
    _maybe(draw, it, "route", st.sampled_from(ROUTES))
    _maybe(draw, it, "daily_dose_mg", st.sampled_from([10.0, 20.0, 40, 500.0, 2400.0, 3200.0]))
    _maybe(draw, it, "days", st.sampled_from([1, 3, 7, 7.0, 10, 14]))
    _maybe(draw, it, "injection", st.booleans())
    _maybe(draw, it, "overdose_reason", st.booleans())
    _maybe(draw, it, "antimicrobial_grade", st.sampled_from(GRADES))
    return it


@st.composite
def prescriptions(draw: st.DrawFn) -> Any:
    count = draw(st.integers(0, 4))
    its = [draw(items(i)) for i in range(count)]
    patient: dict[str, Any] = {}
    _maybe(draw, patient, "age_years", st.sampled_from([5, 12, 40, 70]))
    if "age_years" in patient:
        patient["age_days"] = patient["age_years"] * 365
    _maybe(draw, patient, "weight", st.sampled_from([18.5, 60]))
    _maybe(draw, patient, "pregnant", st.booleans())
    _maybe(draw, patient, "chronic", st.booleans())
    _maybe(draw, patient, "population", st.sampled_from(POPS))
    _maybe(draw, patient, "allergies", st.lists(st.sampled_from(INGREDIENTS), max_size=2, unique=True).map(sorted))
    _maybe(draw, patient, "diagnosis_codes", st.lists(st.sampled_from(["N18.4", "O80", "I10"]), max_size=2,
                                                      unique=True).map(sorted))
    rx: dict[str, Any] = {}
    _maybe(draw, rx, "type", st.sampled_from(["门诊", "急诊"]))
    _maybe(draw, rx, "date", st.sampled_from(DATES))
    prescriber: dict[str, Any] = {}
    _maybe(draw, prescriber, "antimicrobial_grade", st.sampled_from(GRADES))
    inst: dict[str, Any] = {}
    _maybe(draw, inst, "level", st.sampled_from(LEVELS))
    return b.facts(its, patient=patient, prescription=rx, prescriber=prescriber, institution=inst)
