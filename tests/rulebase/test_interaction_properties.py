"""Property: every interactions.csv row is caught once, whichever way round its cells are written.

For a row, pick a drug for each cell (the drug itself for an ingredient, any dictionary drug of
the class for a class), put both on one prescription in either order, and expect exactly one
DDI-TABLE* finding implicating both — never zero (a missed orientation) and never two (a pair
reported by an ingredient rule and again by a class rule).
"""

from __future__ import annotations

import csv
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from audit_engine.knowledge.dictionary import load_dictionary
from audit_engine.schema import PrescriptionFacts

from .conftest import RULEBASE

TABLE_RULES = ("DDI-TABLE", "DDI-TABLE-CLASS", "DDI-TABLE-CLASS-R", "DDI-TABLE-CLASSES")


def _lines(name: str) -> list[str]:
    text = (RULEBASE / "tables" / name).read_text(encoding="utf-8")
    return [ln for ln in text.splitlines() if ln and not ln.startswith("#")]


def _drugs_for(cell: str) -> list[Any]:
    d = load_dictionary()
    drugs = [x for x in d.all() if cell in x.item_fields().get("ingredients", [])]
    return drugs or [x for x in d.all() if cell in x.item_fields().get("classes", [])]


def _cases() -> list[tuple[Any, Any]]:
    dose_pairs = {frozenset((r["成分甲"], r["成分乙"])) for r in csv.DictReader(_lines("interaction_dose_limits.csv"))}
    def dose_limited(x: Any, y: Any) -> bool:  # reported by DDI-DOSE-LIMIT / DDI-SIMVA-* only above the limit
        return any(frozenset((i, j)) in dose_pairs for i in x.ingredients for j in y.ingredients)

    cases = []
    for r in csv.DictReader(_lines("interactions.csv")):
        a, b = _drugs_for(r["成分甲"]), _drugs_for(r["成分乙"])
        pair = next(((x, y) for x in a for y in b if x.id != y.id and not dose_limited(x, y)), None)
        if pair is not None:
            cases.append(pair)
    return cases


CASES = _cases()


def _item(drug: Any, n: int) -> dict[str, Any]:
    item: dict[str, Any] = {"id": f"i{n}", "reference": f"MedicationRequest/i{n}"}
    item.update(drug.item_fields())
    item.update(frequency=1.0, days=3.0, overdose_reason=False)  # no dose: only the pair matters
    return item


def test_most_interaction_rows_name_drugs_of_the_dictionary() -> None:
    assert len(CASES) >= 150


@settings(max_examples=80, deadline=None)
@given(case=st.sampled_from(CASES), swap=st.booleans())
def test_each_interaction_row_is_reported_exactly_once(engine: Any, case: tuple[Any, Any], swap: bool) -> None:
    first, second = reversed(case) if swap else case
    facts = PrescriptionFacts(patient={"age_years": 50, "age_months": 600, "age_days": 18262, "population": "成人"},
                              prescription={"type": "门诊", "item_count": 2},
                              items=[_item(first, 1), _item(second, 2)])
    hits = [f for f in engine.evaluate(facts) if f.rule_id in TABLE_RULES]
    assert len(hits) == 1, [(f.rule_id, f.message) for f in hits]
    assert hits[0].implicated == ("MedicationRequest/i1", "MedicationRequest/i2")
