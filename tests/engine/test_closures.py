"""Compiled derived-field closures compute exactly what ``interpreter.Evaluator.cond`` does.

``audit_engine.network.closures`` compiles a condition once into a closure; the runtime
calls it instead of walking the tree (``derive.predicates``). The reference stays
``Evaluator.cond``: here every derived field of the shipped rulebase is evaluated both ways
on every item and ordered pair of every clean and flagged FHIR fixture, and generated
conditions over every construct are compared on generated prescriptions.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from audit_engine import facts as facts_mod
from audit_engine import intake
from audit_engine.engine import Engine
from audit_engine.knowledge.dictionary import load_dictionary
from audit_engine.lang import interpreter
from audit_engine.lang import nodes as n
from audit_engine.network import closures, derive
from audit_engine.network.ir import DerivedField
from audit_engine.review import detect_kind, load_engine
from audit_engine.schema import PrescriptionFacts

from . import builders as b
from . import strategies as gen

ROOT = Path(__file__).resolve().parents[2]
FIXTURE_DIRS = (ROOT / "fixtures" / "fhir" / "clean", ROOT / "fixtures" / "fhir" / "flagged")
PARSE = {"bundle": intake.parse_bundle, "cds": intake.parse_cds_request,
         "medication_request": intake.parse_medication_request}


def fixture_facts() -> list[tuple[str, PrescriptionFacts]]:
    """The facts of every clean and flagged fixture, built the way ``review_payload`` does."""
    dictionary = load_dictionary()
    out = []
    for directory in FIXTURE_DIRS:
        for path in sorted(directory.glob("*.json")):
            if path.name.endswith(".expect.json"):
                continue
            payload = json.loads(path.read_text(encoding="utf-8"))
            received = PARSE[detect_kind(payload)](payload)
            out.append((path.name, facts_mod.normalise(received, dictionary=dictionary)))
    return out


def bindings(d: DerivedField, binds: tuple[str, ...], items: list[dict[str, Any]]
             ) -> Iterator[tuple[tuple[int, ...], dict[str, Any]]]:
    """Every binding the runtime evaluates ``d`` with, under the variable names ``binds``."""
    if d.on == "item":
        for i, it in enumerate(items):
            yield (i,), {binds[0]: it}
    elif d.on == "pair":
        for i, x in enumerate(items):
            for j, y in enumerate(items):
                if i != j:
                    yield (i, j), {binds[0]: x, binds[1]: y}
    else:
        yield (), {}


@pytest.fixture(scope="module")
def shipped() -> Iterator[Engine]:
    engine = load_engine()
    yield engine
    engine.close()


def test_every_shipped_derived_field_equals_the_interpreter_on_every_fixture(shipped: Engine) -> None:
    compiled = shipped.compiled
    tables = compiled.rulebase.tables
    fields = [d for s in compiled.shards for d in s.derived]
    own = {id(d): closures.compile_cond(d.cond, tables) for d in fields}  # each field's own closure
    shared = derive.predicates(compiled)  # what the runtime calls: one closure per key
    assert set(shared) == {d.key for d in fields}
    cases = fixture_facts()
    assert len(cases) >= 150

    compared = expected = 0
    covered: set[str] = set()
    true_keys: set[str] = set()
    for name, facts in cases:
        ev = derive.evaluator(compiled, facts)
        k = len(facts.items)
        for d in fields:
            expected += {"item": k, "pair": k * (k - 1), "rx": 1}[d.on]
            shared_binds, shared_pred = shared[d.key]
            for (_, env), (_, shared_env) in zip(bindings(d, d.binds, facts.items),
                                                  bindings(d, shared_binds, facts.items), strict=True):
                want = ev.cond(d.cond, env)
                assert own[id(d)](ev, env) == want, (name, d.name, d.rule_id, env.keys())
                assert shared_pred(ev, shared_env) == want, (name, d.name, d.rule_id, d.key)
                compared += 1
                covered.add(d.name)
                if want:
                    true_keys.add(d.key)
    assert compared == expected
    assert compared >= 25_000  # 121 fields on ~150 prescriptions of 1-5 items: not vacuous
    assert covered == {d.name for d in fields}
    # The fixtures make many derived atoms true, not only false.
    assert len(true_keys) >= 50


# --------------------------------------------------------------- generated conditions
def _subconditions(c: n.Cond) -> Iterator[n.Cond]:
    """``c`` and its boolean sub-conditions at the same binding level."""
    yield c
    if isinstance(c, n.And | n.Or):
        for o in c.operands:
            yield from _subconditions(o)
    elif isinstance(c, n.Not):
        yield from _subconditions(c.operand)


def _trigger_envs(trig: n.Trigger, items: list[dict[str, Any]]) -> Iterator[dict[str, Any]]:
    if isinstance(trig, n.ForEach):
        for it in items:
            yield {trig.var: it}
    elif isinstance(trig, n.ForEachPair):
        for i, x in enumerate(items):
            for j, y in enumerate(items):
                if i != j:
                    yield {trig.first: x, trig.second: y}
    else:
        yield {}


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(gen.rulebases(), st.lists(gen.prescriptions(), min_size=1, max_size=3))
def test_closures_of_generated_conditions_equal_the_interpreter(
        rulebase: n.Rulebase, prescriptions: list[PrescriptionFacts]) -> None:
    compiled = [(rule.trigger, [(c, closures.compile_cond(c, rulebase.tables))
                                for c in _subconditions(rule.trigger.cond)])
                for rule in rulebase.rules if rule.trigger is not None]
    for facts in prescriptions:
        ev = interpreter.Evaluator(rulebase.tables, facts)
        for trig, conds in compiled:
            for env in _trigger_envs(trig, facts.items):
                for c, pred in conds:
                    assert pred(ev, env) == ev.cond(c, env), c


# --------------------------------------------------------------- corners, one by one
r = b.ref
S = b.S
LOOKUP = n.Lookup("最大日剂量", (r("X", "ingredients"), r("patient", "population")), S)
CORNERS: list[n.Cond] = [
    b.cmp(">", r("X", "daily_dose"), b.num(1, "g")),  # Multi, converted
    b.cmp("<", b.num(1, "g"), r("X", "daily_dose")),  # Multi on the right: flipped
    b.cmp(">", r("X", "daily_dose"), b.num(1)),  # unitless literal against a Multi: false
    b.cmp(">", r("X", "daily_dose"), n.Column(LOOKUP, "上限", S)),
    b.cmp("<", r("X", "antimicrobial_grade"), r("prescriber", "antimicrobial_grade")),  # ordered enum
    b.cmp("<", r("X", "route"), n.Symbol("静滴", S)),  # unordered enum: false
    b.cmp("=", r("X", "ingredients"), r("patient", "allergies")),  # text sets
    b.cmp("!=", r("X", "ingredients"), b.text("布洛芬")),
    b.cmp("=", r("X", "injection"), n.Bool(True, S)),
    b.cmp("<", r("X", "injection"), n.Bool(True, S)),  # bools only = / !=
    b.cmp("=", r("X", "days"), b.num(1, "周")),  # unit conversion
    b.cmp("=", r("X", "days"), b.num(1, "mg")),  # incompatible units: false
    b.cmp("=", b.text("x"), b.num(1)),  # mismatched kinds: false
    n.Between(r("X", "days"), b.num(3), b.num(1, "周"), S),
    n.In(r("X", "route"), (n.Symbol("口服", S), n.Symbol("静滴", S)), S),
    n.In(r("X", "ingredients"), (b.text("布洛芬"), b.text("华法林")), S),
    n.Contains(r("X", "classes"), b.text("他汀类"), S),
    n.Contains(r("X", "name"), b.text("片"), S),  # substring of a text
    n.Contains(r("X", "classes"), r("Y", "name"), S),
    n.Contains(r("X", "classes"), b.num(1), S),
    n.StartsWith(r("X", "atc"), (b.text("C10"), b.text("J")), S),
    n.StartsWith(r("X", "classes"), (b.text("C1"),), S),
    n.StartsWith(r("patient", "diagnosis_codes"), (r("X", "atc"),), S),
    n.Known(r("X", "daily_dose"), S),
    n.Known(r("patient", "weight"), S),
    n.Known(r("Y", "days"), S),
    n.Truthy(r("X", "injection"), S),
    n.Truthy(r("patient", "pregnant"), S),
    n.Exists(LOOKUP, S),
    n.Exists(n.Lookup("相互作用", (r("X", "ingredients"), r("Y", "ingredients")), S), S),
    n.Exists(n.Lookup("相互作用", (r("X", "ingredients"),), S), S),  # wrong arity: no row
    n.Exists(n.Lookup("无此表", (r("X", "ingredients"),), S), S),  # no such table
    n.Exists(n.Lookup("最大日剂量", (r("X", "days"), b.text("成人")), S), S),  # a number as key
    n.Exists(n.Lookup("最大日剂量", (r("X", "daily_dose"), b.text("成人")), S), S),  # a Multi as key
    n.Exists(n.Lookup("最大日剂量", (n.Bool(True, S), b.text("成人")), S), S),  # a bool as key
    n.Exists(n.Lookup("最大日剂量", (b.num(80), b.text("成人")), S), S),
    n.Exists(n.Lookup("最大日剂量", (n.Count("Z", "item", None, S), b.text("成人")), S), S),
    n.Quantified("any", "Z", "item", b.cmp("=", r("Z", "ingredients"), r("X", "ingredients")), S),
    n.Quantified("all", "Z", "item", n.Known(r("Z", "days"), S), S),
    n.Quantified("any", "D", "diagnosis", b.cmp("=", n.FieldRef("D", "code", S, "diagnosis", "code"),
                                                 b.text("I10")), S),
    n.Quantified("all", "D", "diagnosis", n.Truthy(n.FieldRef("D", "chronic", S, "diagnosis", "chronic"), S), S),
    b.cmp(">=", n.Count("Z", "item", n.Contains(r("Z", "classes"), b.text("他汀类"), S), S), b.num(2)),
    b.cmp("=", n.Count("D", "diagnosis", None, S), b.num(0)),
    b.and_(n.Truthy(r("X", "injection"), S), b.not_(n.Known(r("Y", "days"), S))),
    b.or_(n.Truthy(r("X", "injection"), S), n.Truthy(r("Y", "injection"), S)),
]


def _corner_facts() -> list[PrescriptionFacts]:
    full = b.item(0, ingredients=["辛伐他汀"], classes=["C10AA", "他汀类"], name="辛伐他汀片", atc="C10AA01",
                  route="口服", daily_dose_mg=1500.0, days=7, injection=True, antimicrobial_grade="限制使用级")
    other = b.item(1, ingredients=["布洛芬", "华法林"], classes=[], name="布洛芬缓释胶囊", atc="M01AE01",
                   route="静滴", daily_dose_iu=100.0, days=3.0, injection=False)
    bare = b.item(2)
    patient = {"population": "成人", "allergies": ["布洛芬"], "diagnosis_codes": ["C10.1", "I10"],
               "weight": 60, "pregnant": False}
    diagnoses: list[dict[str, Any]] = [{"code": "I10", "name": "高血压", "chronic": True}, {"code": "J06", "name": "上感"}]
    return [
        dataclasses.replace(b.facts([full, other, bare], patient=patient,
                                    prescriber={"antimicrobial_grade": "特殊使用级"}), diagnoses=diagnoses),
        b.facts([bare, full]),
    ]


@pytest.mark.parametrize("cond", CORNERS, ids=[f"{i}-{type(c).__name__}" for i, c in enumerate(CORNERS)])
def test_corner_conditions_equal_the_interpreter(cond: n.Cond) -> None:
    pred = closures.compile_cond(cond, gen.TABLES)
    checked = 0
    for facts in _corner_facts():
        ev = interpreter.Evaluator(gen.TABLES, facts)
        for x in facts.items:
            for y in facts.items:
                envs: tuple[interpreter.Env, ...] = ({"X": x, "Y": y}, {"X": x}, {})
                for env in envs:
                    assert pred(ev, env) == ev.cond(cond, env), env
                    checked += 1
    assert checked == 3 * (9 + 4)
