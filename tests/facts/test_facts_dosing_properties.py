"""Dose, frequency and route reading: examples, and hypothesis properties with an oracle."""

from __future__ import annotations

import copy
from typing import Any

import pytest
from fhir_support import load_fixture
from hypothesis import given, settings
from hypothesis import strategies as st

from audit_engine import dosing, intake, units
from audit_engine.facts import normalise
from audit_engine.item_facts import canonical_variants
from audit_engine.knowledge.dictionary import load_dictionary

ZH = {1: "一", 2: "二", 3: "三", 4: "四", 6: "六", 8: "八", 12: "十二"}
ABBREV = {1: "qd", 2: "bid", 3: "tid", 4: "qid"}


@pytest.mark.parametrize(("text", "per_day"), [
    ("qd", 1), ("bid", 2), ("tid", 3), ("qid", 4), ("q8h", 3), ("q12h", 2), ("qn", 1), ("Q6H", 4),
    ("每日三次", 3), ("一日2次", 2), ("每8小时一次", 3), ("3次/日", 3), ("隔日一次", 0.5), ("每周2次", 2 / 7),
    ("每晚睡前", 1), ("口服 0.5g tid 饭后", 3), ("b.i.d.", 2), ("每天1次", 1), ("每12h一次", 2), ("q8h一次", 3),
    ("一天三次", 3), ("1次/日", 1), ("qod", 0.5), ("每3天1次", 1 / 3),
])
def test_frequency_text_forms(text: str, per_day: float) -> None:
    reading = dosing.frequency_from_text(text)
    assert reading is not None and reading.per_day == pytest.approx(per_day)


def test_prn_and_st_are_recognised() -> None:
    assert dosing.frequency_from_text("prn") == dosing.FrequencyReading(None, prn=True)
    assert dosing.frequency_from_text("必要时") == dosing.FrequencyReading(None, prn=True)
    st_reading = dosing.frequency_from_text("st")
    assert st_reading is not None and st_reading.once and st_reading.per_day == 1


def test_text_naming_two_frequencies_is_not_guessed() -> None:
    assert dosing.frequency_from_text("bid 每日三次") is None
    assert dosing.frequency_from_text("遵医嘱") is None


@pytest.mark.parametrize(("text", "route"), [
    ("口服", "口服"), ("静脉滴注", "静滴"), ("静滴", "静滴"), ("ivgtt", "静滴"), ("静推", "静注"), ("肌内注射", "肌注"),
    ("皮下注射", "皮下"), ("外用", "外用"), ("雾化吸入", "吸入"), ("舌下含服", "舌下"), ("水煎服", "煎服"),
    ("Intravenous route", "静注"), ("oral", "口服"),
])
def test_route_text_forms(text: str, route: str) -> None:
    assert dosing.route_from_text(text) == route


@pytest.mark.parametrize(("code", "route"), [("26643006", "口服"), ("47625008", "静注"), ("78421000", "肌注"),
                                             ("34206005", "皮下"), ("PO", "口服"), ("IVINFUS", "静滴")])
def test_route_codes(code: str, route: str) -> None:
    assert dosing.route_from_code(code) == route


@pytest.mark.parametrize(("written", "symbol"), [("mg", "mg"), ("毫克", "mg"), ("ug", "µg"), ("mcg", "µg"),
                                                 ("[iU]", "IU"), ("万U", "万IU"), ("{tbl}", "片"), ("mL", "mL")])
def test_dose_unit_spellings(written: str, symbol: str) -> None:
    assert dosing.dose_unit(written) == symbol


# --- properties ---------------------------------------------------------------------------

@settings(max_examples=60, deadline=None)
@given(st.floats(min_value=0.001, max_value=1e5, allow_nan=False), st.sampled_from(["g", "mg", "µg", "mcg", "克", "IU", "万U"]))
def test_unit_conversion_round_trips(value: float, unit: str) -> None:
    symbol = dosing.dose_unit(unit)
    assert symbol is not None
    variants, why = canonical_variants(value, symbol, None, None)
    assert why is None and len(variants) == 1
    (dimension, base), = variants.items()
    assert units.convert(base, units.BASE_UNITS[dimension], symbol) == pytest.approx(value, rel=1e-9)


def _times_text(n: int, form: int) -> str:
    return [f"每日{n}次", f"一日{ZH[n]}次", f"{n}次/日", f"每天{ZH[n]}次", ABBREV[n]][form]


@settings(max_examples=60, deadline=None)
@given(st.sampled_from([1, 2, 3, 4]), st.integers(0, 4), st.sampled_from(["", "口服 ", "每次0.5g，", "饭后 "]))
def test_times_per_day_text_agrees_with_timing(n: int, form: int, prefix: str) -> None:
    reading = dosing.frequency_from_text(prefix + _times_text(n, form))
    assert reading is not None and reading.per_day == dosing.frequency_from_repeat(n, None, 1, "d")


@settings(max_examples=40, deadline=None)
@given(st.sampled_from([2, 3, 4, 6, 8, 12]), st.booleans())
def test_every_n_hours_text_agrees_with_timing(hours: int, chinese: bool) -> None:
    text = f"每{hours}小时一次" if chinese else f"q{hours}h"
    reading = dosing.frequency_from_text(text)
    assert reading is not None
    assert reading.per_day == pytest.approx(dosing.frequency_from_repeat(1, None, hours, "h") or 0)


def _order(value: float, unit: str, freq: int, period: float, period_unit: str) -> dict[str, Any]:
    mr = copy.deepcopy(load_fixture("single_medication_request"))
    mr["dosageInstruction"] = [{
        "timing": {"repeat": {"frequency": freq, "period": period, "periodUnit": period_unit}},
        "doseAndRate": [{"doseQuantity": {"value": value, "unit": unit, "system": "http://unitsofmeasure.org", "code": unit}}],
    }]
    del mr["dispenseRequest"]
    return mr


@settings(max_examples=50, deadline=None)
@given(st.floats(min_value=0.01, max_value=5000, allow_nan=False).map(lambda x: round(x, 3)),
       st.sampled_from(["g", "mg", "ug"]), st.integers(1, 6), st.sampled_from([(1, "d"), (12, "h"), (8, "h"), (2, "d"), (1, "wk")]))
def test_daily_dose_is_dose_times_frequency(value: float, unit: str, freq: int, period: tuple[int, str]) -> None:
    facts = normalise(intake.parse_medication_request(_order(value, unit, freq, *period)), dictionary=load_dictionary())
    (item,) = facts.items
    assert item["frequency"] == pytest.approx(freq / (period[0] * dosing.DAYS_PER_UNIT[period[1]]), rel=1e-5)
    assert item["dose_mg"] == pytest.approx(units.convert(value, dosing.dose_unit(unit) or "", "mg"), rel=1e-5, abs=1e-6)
    assert item["daily_dose_mg"] == pytest.approx(item["dose_mg"] * item["frequency"], rel=1e-5, abs=1e-5)


@settings(max_examples=40, deadline=None)
@given(st.integers(1, 200), st.sampled_from([1, 2]), st.integers(1, 4))
def test_days_supply_is_quantity_over_daily_use(quantity: int, tablets: int, freq: int) -> None:
    bundle = load_fixture("days_from_quantity")
    mr = next(e["resource"] for e in bundle["entry"] if e["resource"]["resourceType"] == "MedicationRequest")
    mr["dosageInstruction"][0]["timing"]["repeat"]["frequency"] = freq
    mr["dosageInstruction"][0]["doseAndRate"][0]["doseQuantity"]["value"] = tablets
    mr["dispenseRequest"]["quantity"]["value"] = quantity
    (item,) = normalise(intake.parse_bundle(bundle), dictionary=load_dictionary()).items
    assert item["days"] == pytest.approx(quantity / (tablets * freq), rel=1e-5)
