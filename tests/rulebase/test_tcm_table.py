"""Every 十八反 / 十九畏 pair of tables/tcm_incompatibility.csv is caught once, in either order."""

from __future__ import annotations

import csv
from typing import Any

import pytest

from audit_engine.knowledge.dictionary import load_dictionary
from audit_engine.schema import PrescriptionFacts

from .conftest import RULEBASE

RULE_OF = {"十八反": "TCM-18FAN", "十九畏": "TCM-19WEI"}


def _pairs() -> list[tuple[str, str, str]]:
    text = (RULEBASE / "tables" / "tcm_incompatibility.csv").read_text(encoding="utf-8")
    lines = [ln for ln in text.splitlines() if ln and not ln.startswith("#")]
    return [(r["药材甲"], r["药材乙"], r["类型"]) for r in csv.DictReader(lines)]


def _herb(name: str, n: int) -> dict[str, Any]:
    drug = load_dictionary().by_name(name)
    assert drug is not None, f"{name} is not in the drug dictionary"
    item: dict[str, Any] = {"id": f"h{n}", "reference": f"MedicationRequest/h{n}", **drug.item_fields()}
    item.update(dose_mg=3000.0, daily_dose_mg=3000.0, frequency=1.0, days=7.0, overdose_reason=False)
    return item


def test_both_classical_lists_are_complete_enough() -> None:
    kinds = [k for _, _, k in _pairs()]
    assert kinds.count("十八反") >= 18 and kinds.count("十九畏") >= 9


@pytest.mark.parametrize("pair", _pairs(), ids=lambda p: f"{p[0]}-{p[1]}")
def test_incompatible_pair_fires_its_rule_once_in_either_order(engine: Any, pair: tuple[str, str, str]) -> None:
    first, second, kind = pair
    for a, b in ((first, second), (second, first)):
        facts = PrescriptionFacts(patient={"age_years": 50, "age_months": 600, "age_days": 18262, "population": "成人"},
                                  prescription={"type": "门诊", "item_count": 2, "has_herbal": True, "has_western": False},
                                  items=[_herb(a, 1), _herb(b, 2)])
        hits = [f for f in engine.evaluate(facts) if f.rule_id == RULE_OF[kind]]
        assert len(hits) == 1 and hits[0].implicated == ("MedicationRequest/h1", "MedicationRequest/h2")
