"""The pairwise rules' work is bounded: n orders do not cost n² lookups, copies cost one.

A ``对每对`` rule is evaluated per ordered pair of items, so its work grows with the square
of the number of orders. Three things keep that in check (``runtime.Network._pair_facts``),
each checked here against the reference semantics:

* the *gate*: a shard's pair facts are sent only when some gate field is true, and a
  rule whose pair test is a conjunction (``重复用药[...] 存在 且 不 ...``) still gates;
* *screens* (``closures.compile_screen``): a lookup whose indexed key column reads one item
  is false for every partner of an item with no row there, tested once per item;
* *content classes*: copies of one order share every derived value.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from audit_engine.engine import Engine
from audit_engine.facts import normalise
from audit_engine.intake import parse_bundle
from audit_engine.knowledge.dictionary import load_dictionary
from audit_engine.lang import interpreter
from audit_engine.lang import nodes as n
from audit_engine.lang.compiler import compile_rulebase
from audit_engine.network import closures, derive, host
from audit_engine.network.ir import PAIR_TYPE
from audit_engine.review import load_engine
from audit_engine.schema import PrescriptionFacts

from . import strategies as gen
from .test_closures import fixture_facts

ROOT = Path(__file__).resolve().parents[2]
LARGE_TCM = ROOT / "fixtures" / "fhir" / "limits" / "tcm_large_decoction_60_herbs.json"
SIMVASTATIN_CLARITHROMYCIN = ROOT / "fixtures" / "fhir" / "flagged" / "interaction_simvastatin_clarithromycin.json"


@pytest.fixture(scope="module")
def shipped() -> Iterator[Engine]:
    engine = load_engine()
    yield engine
    engine.close()


def _facts(bundle: dict[str, Any]) -> PrescriptionFacts:
    return normalise(parse_bundle(bundle), dictionary=load_dictionary())


def _copies(path: Path, n: int) -> dict[str, Any]:
    """The fixture with its first order repeated ``n`` times (new ids), the rest kept."""
    bundle = json.loads(path.read_text(encoding="utf-8"))
    entries = bundle["entry"]
    first = next(e for e in entries if e["resource"]["resourceType"] == "MedicationRequest")
    for k in range(1, n):
        twin = copy.deepcopy(first)
        twin["resource"]["id"] = f"{first['resource']['id']}-copy{k}"
        twin["fullUrl"] = f"{first.get('fullUrl', '')}-copy{k}"
        entries.append(twin)
    return bundle


def _pair_facts_sent(engine: Engine, facts: PrescriptionFacts, monkeypatch: pytest.MonkeyPatch) -> int:
    sent: list[int] = []
    real = host.run_session

    def spy(handle: Any, sid: str, batch: list[dict[str, Any]]) -> Any:
        sent.append(sum(1 for f in batch if f.get("t") == PAIR_TYPE))
        return real(handle, sid, batch)

    monkeypatch.setattr(host, "run_session", spy)
    try:
        engine.evaluate(facts)
    finally:
        monkeypatch.undo()
    return sum(sent)


def test_every_shipped_shard_with_pair_facts_has_a_gate(shipped: Engine) -> None:
    shards = [s for s in shipped.compiled.shards if s.needs_pairs]
    assert shards
    assert all(s.pair_gate for s in shards), [s.name for s in shards if not s.pair_gate]


def test_sixty_herbs_without_incompatible_pairs_send_no_pair_facts(
        shipped: Engine, monkeypatch: pytest.MonkeyPatch) -> None:
    facts = _facts(json.loads(LARGE_TCM.read_text(encoding="utf-8")))
    assert len(facts.items) == 60
    # 3,540 ordered pairs; before the gate covered the interaction shard, every one was sent.
    assert _pair_facts_sent(shipped, facts, monkeypatch) == 0
    assert shipped.evaluate(facts) == interpreter.evaluate(shipped.compiled.rulebase, facts)


def test_a_screened_out_item_makes_its_pair_field_false_with_every_partner(shipped: Engine) -> None:
    compiled = shipped.compiled
    fields = {d.key: d for s in compiled.shards for d in s.derived if d.on == "pair"}
    screens = derive.screens(compiled)
    assert len(screens) >= 10  # the interaction, duplicate, IV and 十八反 lookups
    cases = [*fixture_facts(), ("tcm_large_decoction_60_herbs", _facts(json.loads(LARGE_TCM.read_text("utf-8"))))]
    screened_out = 0
    for name, facts in cases:
        ev = derive.evaluator(compiled, facts)
        items = facts.items
        for key, (role, screen) in screens.items():
            d = fields[key]
            for i, x in enumerate(items):
                if screen(ev, x):
                    continue
                screened_out += 1
                for j, y in enumerate(items):
                    if i == j:
                        continue
                    pair = (x, y) if role == 0 else (y, x)
                    env = {d.binds[0]: pair[0], d.binds[1]: pair[1]}
                    assert not ev.cond(d.cond, env), (name, d.rule_id, d.name, i, j)
    assert screened_out >= 1000  # the screens do decide most items, not a vacuous pass


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(gen.rulebases(), st.lists(gen.prescriptions(), min_size=1, max_size=3))
def test_screens_of_generated_pair_conditions_never_reject_a_true_pair(
        rulebase: n.Rulebase, prescriptions: list[PrescriptionFacts]) -> None:
    pairs = [r.trigger for r in rulebase.rules if isinstance(r.trigger, n.ForEachPair)]
    screens = [(t, closures.compile_screen(t.cond, rulebase.tables, (t.first, t.second))) for t in pairs]
    for facts in prescriptions:
        ev = interpreter.Evaluator(rulebase.tables, facts)
        for trig, found in screens:
            if found is None:
                continue
            role, screen = found
            for i, x in enumerate(facts.items):
                for j, y in enumerate(facts.items):
                    if i != j and ev.cond(trig.cond, {trig.first: x, trig.second: y}):
                        assert screen(ev, (x, y)[role])


def test_copies_of_one_order_evaluate_each_pair_field_once(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[n.Cond] = []
    real = closures.compile_cond

    def spy(c: n.Cond, tables: Any) -> closures.Pred:
        pred = real(c, tables)

        def counted(ev: interpreter.Evaluator, env: interpreter.Env) -> bool:
            calls.append(c)
            return pred(ev, env)
        return counted

    monkeypatch.setattr(closures, "compile_cond", spy)
    engine = load_engine()  # its derived conditions are compiled here, with the spy
    monkeypatch.undo()
    try:
        counts = {}
        for copies in (2, 40):
            calls.clear()
            facts = _facts(_copies(SIMVASTATIN_CLARITHROMYCIN, copies))
            found = engine.evaluate(facts)
            assert found == interpreter.evaluate(engine.compiled.rulebase, facts)
            counts[copies] = len(calls)
        # 40 copies of simvastatin beside clarithromycin: 41 items, 1,640 ordered pairs,
        # but only two content classes, so exactly the derived evaluations of 2 copies.
        assert counts[40] == counts[2]
        # Nothing is lost: every pair of copies is reported as a duplicate, and every copy
        # with clarithromycin as an interaction, exactly as the interpreter reports them.
        assert sum(1 for f in found if f.rule_id == "DUP-INGREDIENT") == 40 * 39 // 2
        assert sum(1 for f in found if "MedicationRequest/mr-clarithromycin" in f.implicated) >= 40
    finally:
        engine.close()


def test_orders_differing_only_by_id_share_a_content_class() -> None:
    from audit_engine.network.runtime import content_classes

    a = {"id": "1", "reference": "MedicationRequest/1", "name": "阿莫西林", "ingredients": ["阿莫西林"], "dose_mg": 500.0}
    b = {**a, "id": "2", "reference": "MedicationRequest/2"}
    c = {**a, "id": "3", "reference": "MedicationRequest/3", "dose_mg": 250.0}
    assert content_classes([a, b, c, b]) == [0, 0, 1, 0]


def test_a_compiled_rulebase_with_a_negated_pair_lookup_gates_on_the_positive_one() -> None:
    from . import builders as b

    r = b.ref
    table = b.interactions_table([("辛伐他汀", "克拉霉素", 8, "CYP3A4")])
    cond = b.and_(
        n.Exists(n.Lookup("相互作用", (r("甲", "ingredients"), r("乙", "ingredients")), b.S), b.S),
        b.not_(b.cmp("=", r("甲", "ingredients"), r("乙", "ingredients"))),
    )
    compiled = compile_rulebase(b.rulebase([b.rule("R", b.for_pair(cond))], {"相互作用": table}))
    shard = next(s for s in compiled.shards if s.needs_pairs)
    assert len(shard.pair_gate) == 1
    assert next(d for d in shard.derived if d.name == shard.pair_gate[0]).cond == cond.operands[0]


def test_the_engine_stops_at_its_deadline_with_a_budget_error(shipped: Engine) -> None:
    import time

    from audit_engine.errors import BudgetExceededError

    facts = _facts(json.loads(LARGE_TCM.read_text(encoding="utf-8")))
    with pytest.raises(BudgetExceededError) as err:
        shipped.evaluate_versioned(facts, deadline=time.monotonic() - 0.001)
    assert err.value.stage == "engine"
    assert shipped.evaluate_versioned(facts, deadline=time.monotonic() + 3600)[1] == shipped.evaluate(facts)
