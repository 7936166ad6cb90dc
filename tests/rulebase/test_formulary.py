"""The alliance drug list (统一用药目录): LEG-OFF-FORMULARY fires exactly for the items off the
list of the prescribing institution's level, one finding per item, naming the level."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from audit_engine.knowledge.dictionary import load_dictionary
from audit_engine.lang.tables import TableData
from audit_engine.schema import PrescriptionFacts

LEVELS = ("县级医院", "乡镇卫生院", "社区卫生服务中心", "村卫生室")
RULE = "LEG-OFF-FORMULARY"


@pytest.fixture(scope="module")
def formulary(rulebase: Any) -> TableData:
    table: TableData = rulebase.tables["统一用药目录"]
    return table


def allowed(table: TableData, name: str) -> tuple[str, ...]:
    row = next((r for r in table.rows if r["药品"] == name), None)
    return row["可用级别"] if row is not None else ()


def test_every_dictionary_drug_has_one_row_with_known_levels_and_a_source(formulary: TableData) -> None:
    names = [r["药品"] for r in formulary.rows]
    assert len(names) == len(set(names))
    assert set(names) == {d.name_zh for d in load_dictionary().all()}
    for r in formulary.rows:
        assert r["可用级别"] and set(r["可用级别"]) <= set(LEVELS), r
        assert "县级医院" in r["可用级别"], "the county hospital list is the widest"
        assert r["来源"], r


def test_essential_medicines_and_decoction_pieces_are_on_every_level(formulary: TableData) -> None:
    for drug in load_dictionary().all():
        if drug.essential or drug.herbal:
            assert set(allowed(formulary, drug.name_zh)) == set(LEVELS), drug.name_zh


def facts_for(level: str, names: list[str]) -> PrescriptionFacts:
    dictionary = load_dictionary()
    items = []
    for i, name in enumerate(names, start=1):
        drug = dictionary.by_name(name)
        assert drug is not None
        items.append({"id": f"m{i}", "reference": f"MedicationRequest/m{i}", **drug.item_fields(),
                      "route": "口服", "days": 3})
    return PrescriptionFacts(prescription_id="t", items=items, patient={"age_years": 40, "population": "成人"},
                             institution={"level": level, "code": "T-1"}, prescription={"type": "门诊"})


@settings(max_examples=40, deadline=None)
@given(level=st.sampled_from(LEVELS), picks=st.lists(st.integers(min_value=0, max_value=10_000), min_size=1,
                                                       max_size=4, unique=True))
def test_the_rule_fires_for_exactly_the_items_off_the_level_list(engine: Any, formulary: TableData, level: str,
                                                                  picks: list[int]) -> None:
    names = sorted({formulary.rows[p % len(formulary.rows)]["药品"] for p in picks})
    findings = [f for f in engine.evaluate(facts_for(level, names)) if f.rule_id == RULE]
    off = {f"MedicationRequest/m{i}" for i, n in enumerate(names, start=1) if level not in allowed(formulary, n)}
    assert sorted(ref for f in findings for ref in f.implicated) == sorted(off)
    assert all(len(f.implicated) == 1 and f"{level}目录" in f.message for f in findings)


@pytest.mark.parametrize(("level", "fires"), [("县级医院", False), ("乡镇卫生院", True),
                                              ("社区卫生服务中心", True), ("村卫生室", True)])
def test_celecoxib_is_on_the_county_list_only(engine: Any, level: str, fires: bool) -> None:
    found = [f for f in engine.evaluate(facts_for(level, ["塞来昔布"])) if f.rule_id == RULE]
    assert bool(found) is fires
    if fires:
        (f,) = found
        assert f.message.startswith(f"塞来昔布 不在医联体统一用药目录的{level}目录内")


@pytest.mark.parametrize(("level", "fires"), [("县级医院", False), ("乡镇卫生院", False),
                                              ("社区卫生服务中心", False), ("村卫生室", True)])
def test_a_bridging_chronic_drug_reaches_township_and_community_but_not_village(engine: Any, level: str,
                                                                                fires: bool) -> None:
    found = [f for f in engine.evaluate(facts_for(level, ["泮托拉唑"])) if f.rule_id == RULE]
    assert bool(found) is fires
