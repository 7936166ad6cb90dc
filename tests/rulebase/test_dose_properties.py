"""Property: the dose rules fire exactly when a daily dose exceeds its table maximum (hypothesis oracle).

For any drug and population of tables/dose_limits.csv with a daily maximum in mg, a daily dose
at or below the maximum gives no DOSE-DAILY-MAX, one above it gives DOSE-DAILY-MAX on that item,
unless the prescriber stated an overdose reason, in which case FORM-OVERDOSE-REASONED fires instead.
"""

from __future__ import annotations

import csv
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from audit_engine.knowledge.dictionary import load_dictionary
from audit_engine.schema import PrescriptionFacts

from .conftest import RULEBASE

AGE_OF = {"成人": 40, "老年": 75, "青少年": 15}


def _rows() -> list[tuple[str, str, float]]:
    lines = [ln for ln in (RULEBASE / "tables" / "dose_limits.csv").read_text(encoding="utf-8").splitlines()
             if ln and not ln.startswith("#")]
    d = load_dictionary()
    return [(r["药品"], r["人群"], float(r["日上限"])) for r in csv.DictReader(lines)
            if r["人群"] in AGE_OF and r["单位"] == "mg" and r["日上限"] and d.by_name(r["药品"]) is not None]


ROWS = _rows()


def _facts(drug: str, population: str, daily_mg: float, reason: bool) -> PrescriptionFacts:
    item: dict[str, Any] = {"id": "a", "reference": "MedicationRequest/a"}
    item.update(load_dictionary().by_name(drug).item_fields())  # type: ignore[union-attr]
    # One administration a day, so the single dose equals the daily dose; single maxima may fire too.
    item.update(dose_mg=daily_mg, daily_dose_mg=daily_mg, frequency=1.0, days=3.0, overdose_reason=reason)
    age = AGE_OF[population]
    patient = {"age_years": age, "age_months": age * 12, "age_days": int(age * 365.25), "population": population}
    return PrescriptionFacts(patient=patient, prescription={"type": "门诊", "item_count": 1}, items=[item])


def test_the_dose_table_has_more_than_a_hundred_drugs() -> None:
    assert len({drug for drug, _, _ in ROWS}) >= 100


@settings(max_examples=60, deadline=None)
@given(row=st.sampled_from(ROWS), factor=st.floats(min_value=0.05, max_value=3.0), reason=st.booleans())
def test_daily_maximum_fires_exactly_above_the_table_limit(engine: Any, row: tuple[str, str, float],
                                                             factor: float, reason: bool) -> None:
    drug, population, limit = row
    daily = round(limit * factor, 3)
    ids = {f.rule_id for f in engine.evaluate(_facts(drug, population, daily, reason))}
    over = daily > limit
    assert ("DOSE-DAILY-MAX" in ids) == (over and not reason)
    if over and reason:
        assert "FORM-OVERDOSE-REASONED" in ids
    if not over:
        assert "DOSE-DAILY-MAX" not in ids
