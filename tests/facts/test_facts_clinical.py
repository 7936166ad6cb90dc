"""Age, population bands, eGFR equations and diagnosis flags."""

from __future__ import annotations

import copy
from datetime import date

import pytest
from fhir_support import load_fixture
from hypothesis import given, settings
from hypothesis import strategies as st

from audit_engine import clinical, intake
from audit_engine.facts import normalise
from audit_engine.knowledge.dictionary import load_dictionary


def test_age_parts_counts_completed_months_and_years() -> None:
    assert clinical.age_parts(date(2020, 3, 15), date(2026, 3, 14)) == ((date(2026, 3, 14) - date(2020, 3, 15)).days, 71, 5)
    assert clinical.age_parts(date(2020, 3, 15), date(2026, 3, 15))[1:] == (72, 6)


def test_leap_day_birthday_is_completed_on_the_first_of_march() -> None:
    assert clinical.age_parts(date(2016, 2, 29), date(2026, 2, 28))[2] == 9
    assert clinical.age_parts(date(2016, 2, 29), date(2026, 3, 1))[2] == 10


@pytest.mark.parametrize(("days", "years", "band"), [
    (0, 0, "新生儿"), (27, 0, "新生儿"), (28, 0, "婴儿"), (364, 0, "婴儿"), (400, 1, "幼儿"), (1100, 3, "儿童"),
    (4400, 12, "青少年"), (6600, 18, "成人"), (23700, 64, "成人"), (23800, 65, "老年"),
])
def test_population_band_boundaries(days: int, years: int, band: str) -> None:
    assert clinical.population(days, years) == band


@settings(max_examples=60, deadline=None)
@given(st.dates(min_value=date(1900, 1, 1), max_value=date(2026, 11, 20)))
def test_age_parts_agree_with_each_other(birth: date) -> None:
    on = date(2026, 11, 20)
    days, months, years = clinical.age_parts(birth, on)
    assert days == (on - birth).days and years == months // 12
    assert 28 * months <= days + 3 and days < 31 * (months + 1) + 1


def test_ckd_epi_2021_reference_values() -> None:
    # NKF/ASN calculator values for a 50-year-old with serum creatinine 1.0 mg/dL.
    assert clinical.ckd_epi_2021(1.0, 50, "男") == pytest.approx(92, abs=1)
    assert clinical.ckd_epi_2021(1.0, 50, "女") == pytest.approx(69, abs=1)
    assert clinical.ckd_epi_2021(1.0, 50, "未知") is None and clinical.ckd_epi_2021(1.0, 17, "男") is None


@settings(max_examples=50, deadline=None)
@given(st.floats(0.3, 10), st.floats(0.3, 10), st.integers(18, 100), st.sampled_from(["男", "女"]))
def test_ckd_epi_falls_as_creatinine_rises(a: float, b: float, age: int, sex: str) -> None:
    low, high = sorted((a, b))
    assert (clinical.ckd_epi_2021(high, age, sex) or 0) <= (clinical.ckd_epi_2021(low, age, sex) or 0) + 1e-9


def test_creatinine_units() -> None:
    assert clinical.creatinine_mg_dl(88.4, "umol/L") == pytest.approx(1.0)
    assert clinical.creatinine_mg_dl(88.4, "µmol/L") == pytest.approx(1.0)
    assert clinical.creatinine_mg_dl(1.2, "mg/dL") == 1.2 and clinical.creatinine_mg_dl(1, "g/L") is None


def test_no_equation_for_infants_or_children_without_height() -> None:
    assert clinical.egfr_from_creatinine(0.3, age_years=0, age_days=100, sex="男", height_cm=60) is None
    assert clinical.egfr_from_creatinine(0.5, age_years=8, age_days=3000, sex="男", height_cm=None) is None


def test_icd10_prefix_matching() -> None:
    assert clinical.icd_matches("C34.9", clinical.CHRONIC_PAIN_ICD10)
    assert clinical.icd_matches("K74.6", clinical.HEPATIC_ICD10) and not clinical.icd_matches("K76.0", clinical.HEPATIC_ICD10)
    assert clinical.icd_matches("O26.9", clinical.PREGNANCY_ICD10) and not clinical.icd_matches(None, clinical.CHRONIC_ICD10)


def test_male_is_never_pregnant_and_unknown_woman_is_absent() -> None:
    male = normalise(intake.parse_bundle(load_fixture("adult_outpatient_full_context")), dictionary=load_dictionary())
    assert male.patient["pregnant"] is False
    woman = normalise(intake.parse_bundle(load_fixture("child_weight_per_kg_dose")), dictionary=load_dictionary())
    assert "pregnant" not in woman.patient


def test_no_diagnosis_list_leaves_diagnosis_flags_absent() -> None:
    f = normalise(intake.parse_bundle(load_fixture("child_weight_per_kg_dose")), dictionary=load_dictionary())
    assert not {"chronic", "hepatic_impairment", "chronic_pain", "diagnosis_codes"} & set(f.patient)


def test_reason_code_on_the_order_counts_as_a_diagnosis() -> None:
    b = load_fixture("child_weight_per_kg_dose")
    mr = next(e["resource"] for e in b["entry"] if e["resource"]["resourceType"] == "MedicationRequest")
    mr["reasonCode"] = [{"coding": [{"system": "http://hl7.org/fhir/sid/icd-10", "code": "J02.9", "display": "急性咽炎"}]}]
    f = normalise(intake.parse_bundle(b), dictionary=load_dictionary())
    assert f.diagnoses == [{"chronic": False, "code": "J02.9", "name": "急性咽炎"}]
    assert f.patient["diagnosis_codes"] == ["J02.9"]


def test_prescription_date_falls_back_to_today() -> None:
    mr = copy.deepcopy(load_fixture("single_medication_request"))
    del mr["authoredOn"]
    f = normalise(intake.parse_medication_request(mr), dictionary=load_dictionary(), today=date(2026, 1, 2))
    assert f.prescription["date"] == "2026-01-02"


def test_pregnancy_status_older_than_a_pregnancy_is_ignored() -> None:
    b = load_fixture("pregnancy_from_observation")
    obs = next(e["resource"] for e in b["entry"] if e["resource"]["resourceType"] == "Observation")
    obs["effectiveDateTime"] = "2025-01-05T08:00:00+08:00"
    f = normalise(intake.parse_bundle(b), dictionary=load_dictionary())
    assert "pregnant" not in f.patient
