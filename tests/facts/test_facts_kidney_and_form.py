"""Issue 9 facts: creatinine clearance and renal dose bands, the 麻精 form class from every place a
HIS writes the form, and non-daily frequencies written as text."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from audit_engine import clinical, dosing, intake
from audit_engine.facts import normalise
from audit_engine.knowledge.dictionary import form_class, form_class_of_code, load_dictionary

LOINC = "http://loinc.org"


def _bundle(*resources: dict[str, Any], birth: str = "1944-03-10", sex: str = "female") -> dict[str, Any]:
    patient = {"resourceType": "Patient", "id": "p", "gender": sex, "birthDate": birth}
    return {"resourceType": "Bundle", "type": "collection",
            "entry": [{"resource": r} for r in (patient, *resources)]}


def _obs(oid: str, code: str, value: float, unit: str) -> dict[str, Any]:
    return {"resourceType": "Observation", "id": oid, "status": "final", "subject": {"reference": "Patient/p"},
            "code": {"coding": [{"system": LOINC, "code": code}]}, "effectiveDateTime": "2026-11-20",
            "valueQuantity": {"value": value, "unit": unit, "code": unit}}


def _order(text: str = "氨氯地平", dosage: str = "口服 每日1次 每次5mg", **extra: Any) -> dict[str, Any]:
    mr = {"resourceType": "MedicationRequest", "id": "m1", "status": "draft", "intent": "order",
          "subject": {"reference": "Patient/p"}, "authoredOn": "2026-11-23",
          "medicationCodeableConcept": {"text": text}, "dosageInstruction": [{"text": dosage}]}
    mr.update(extra)
    return mr


def _facts(bundle: dict[str, Any]) -> Any:
    return normalise(intake.parse_bundle(bundle), dictionary=load_dictionary())


# ------------------------------------------------------------------ kidney


def test_cockcroft_gault_matches_the_published_formula() -> None:
    # (140 − 82) × 48 / (72 × 1.4) × 0.85 = 23.48
    assert clinical.cockcroft_gault(1.4, 82, 48, "女") == pytest.approx(23.48, abs=0.01)
    assert clinical.cockcroft_gault(1.0, 40, 72, "男") == pytest.approx(100.0)
    assert clinical.cockcroft_gault(1.0, 16, 50, "男") is None  # adults only
    assert clinical.cockcroft_gault(1.0, 40, 72, "未知") is None


@settings(max_examples=100, deadline=None)
@given(egfr=st.floats(min_value=1, max_value=150), crcl=st.one_of(st.none(), st.floats(min_value=1, max_value=150)))
def test_renal_bands_are_exactly_the_cuts_above_each_estimate(egfr: float, crcl: float | None) -> None:
    bands = set(clinical.renal_bands(egfr, crcl))
    stand_in = crcl if crcl is not None else egfr
    for cut in clinical.RENAL_CUTS:
        assert (f"eGFR<{cut}" in bands) == (egfr < cut)
        assert (f"CrCl<{cut}" in bands) == (stand_in < cut)


def test_crcl_is_computed_from_age_weight_sex_and_creatinine_and_the_basis_says_so() -> None:
    f = _facts(_bundle(_obs("w", "29463-7", 48, "kg"), _obs("c", "2160-0", 1.4, "mg/dL"), _order()))
    p = f.patient
    assert p["crcl"] == pytest.approx(23.5, abs=0.1)
    assert p["egfr"] == pytest.approx(37.6, abs=0.1)  # CKD-EPI 2021 from the same creatinine
    assert "CrCl<25" in p["renal_bands"] and "CrCl<20" not in p["renal_bands"]
    assert "eGFR<40" in p["renal_bands"] and "eGFR<35" not in p["renal_bands"]
    assert "Cockcroft–Gault" in p["renal_basis"] and "CKD-EPI 2021" in p["renal_basis"]


def test_creatinine_in_umol_per_litre_gives_the_same_clearance() -> None:
    f = _facts(_bundle(_obs("w", "29463-7", 48, "kg"), _obs("c", "2160-0", 1.4 * 88.4, "umol/L"), _order()))
    assert f.patient["crcl"] == pytest.approx(23.5, abs=0.1)


def test_without_weight_the_egfr_stands_in_for_crcl_and_the_basis_says_so() -> None:
    f = _facts(_bundle(_obs("e", "33914-3", 25, "mL/min/{1.73_m2}"), _order()))
    p = f.patient
    assert "crcl" not in p
    assert "CrCl<30" in p["renal_bands"] and "eGFR<30" in p["renal_bands"]
    assert "以 eGFR 代替" in p["renal_basis"] and "缺血肌酐、体重" in p["renal_basis"]


def test_an_observed_creatinine_clearance_wins_over_cockcroft_gault() -> None:
    f = _facts(_bundle(_obs("w", "29463-7", 48, "kg"), _obs("c", "2160-0", 1.4, "mg/dL"),
                       _obs("cl", "2164-2", 40, "mL/min"), _order()))
    assert f.patient["crcl"] == 40 and f.patient["renal_basis"].startswith("肌酐清除率 40 mL/min（检验结果）")


def test_no_kidney_data_means_no_bands() -> None:
    f = _facts(_bundle(_order()))
    assert "renal_bands" not in f.patient and "crcl" not in f.patient


# ------------------------------------------------------------------ form class


@pytest.mark.parametrize(("text", "cls"), [
    ("盐酸吗啡片", "其他剂型"), ("吗啡即释片", "其他剂型"), ("硫酸吗啡缓释片", "缓控释制剂"), ("盐酸羟考酮控释片", "缓控释制剂"),
    ("芬太尼透皮贴剂", "缓控释制剂"), ("盐酸吗啡注射液", "注射剂"), ("注射用盐酸哌替啶", "注射剂"),
    ("Prolonged-release tablet", "缓控释制剂"), ("Extended Release Oral Tablet", "缓控释制剂"), ("Tablet", "其他剂型"),
    ("Injectable Solution", "注射剂"), ("Morphine Sulfate 15 MG ER Tablet", "缓控释制剂"), ("吗啡", None), ("Morphine", None),
])
def test_form_words_give_the_form_class(text: str, cls: str | None) -> None:
    assert form_class(text) == cls


def test_the_name_text_gives_the_form_even_when_the_atc_code_resolved_the_drug() -> None:
    mr = _order(dosage="口服 每4小时1次 每次10mg")
    mr["medicationCodeableConcept"] = {"coding": [{"system": "http://www.whocc.no/atc", "code": "N02AA01"}],
                                       "text": "盐酸吗啡片"}
    item = _facts(_bundle(mr)).items[0]
    assert item["drug_id"] == "morphine" and item["form_class"] == "其他剂型" and item["sustained_release"] is False


def test_medication_form_of_a_contained_medication_gives_the_form() -> None:
    mr = _order(dosage="口服 每12小时1次 每次30mg")
    del mr["medicationCodeableConcept"]
    mr["contained"] = [{"resourceType": "Medication", "id": "med",
                        "code": {"coding": [{"system": "http://www.whocc.no/atc", "code": "N02AA01"}], "text": "吗啡"},
                        "form": {"coding": [{"system": "http://standardterms.edqm.eu",
                                             "display": "Prolonged-release tablet"}]}}]
    mr["medicationReference"] = {"reference": "#med"}
    item = _facts(_bundle(mr)).items[0]
    assert item["form_class"] == "缓控释制剂" and item["sustained_release"] is True


@pytest.mark.parametrize(("system", "code", "cls"), [
    ("http://snomed.info/sct", "385055001", "其他剂型"), ("http://snomed.info/sct", "385219001", "注射剂"),
    ("http://terminology.hl7.org/CodeSystem/v3-orderableDrugForm", "TAB", "其他剂型"),
    ("http://terminology.hl7.org/CodeSystem/v3-orderableDrugForm", "ERTAB", "缓控释制剂"),
    ("http://terminology.hl7.org/CodeSystem/v3-orderableDrugForm", "INJSOL", "注射剂"),
    ("http://terminology.hl7.org/CodeSystem/v3-orderableDrugForm", "PATCH", "缓控释制剂"),
    ("http://snomed.info/sct", "12345678", None), ("urn:local", "TAB", None),
])
def test_dose_form_codes_give_the_form_class(system: str, code: str, cls: str | None) -> None:
    assert form_class_of_code(system, code) == cls


def test_a_dose_form_code_without_display_in_medication_form_gives_the_form() -> None:
    mr = _order(dosage="口服 每4小时1次 每次10mg")
    del mr["medicationCodeableConcept"]
    mr["contained"] = [{"resourceType": "Medication", "id": "med", "code": {"text": "吗啡"},
                        "form": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v3-orderableDrugForm",
                                             "code": "TAB"}]}}]
    mr["medicationReference"] = {"reference": "#med"}
    assert _facts(_bundle(mr)).items[0]["form_class"] == "其他剂型"


def test_an_injection_route_narrows_a_drug_with_tablets_and_ampoules() -> None:
    mr = _order(dosage="皮下注射 每次10mg 立即")
    mr["medicationCodeableConcept"] = {"text": "吗啡"}
    mr["dosageInstruction"][0]["route"] = {"text": "皮下"}
    item = _facts(_bundle(mr)).items[0]
    assert item["form_class"] == "注射剂" and item["injection"] is True


def test_an_oral_order_of_a_drug_with_tablets_and_sustained_release_tablets_stays_undetermined() -> None:
    mr = _order(dosage="口服 每日4次 每次10mg")
    mr["medicationCodeableConcept"] = {"text": "吗啡"}
    item = _facts(_bundle(mr)).items[0]
    assert "form_class" not in item


def test_a_drug_with_one_form_class_needs_no_form_word() -> None:
    mr = _order(dosage="口服 每日3次 每次15mg")
    mr["medicationCodeableConcept"] = {"text": "可待因"}
    assert _facts(_bundle(mr)).items[0]["form_class"] == "其他剂型"


# ------------------------------------------------------------------ non-daily frequencies


@pytest.mark.parametrize(("text", "per_day"), [
    ("每周1次", 1 / 7), ("1次/周", 1 / 7), ("每2周1次", 1 / 14), ("每月1次", 1 / 30), ("1次/月", 1 / 30),
    ("每年1次", 1 / 365), ("qw", 1 / 7), ("每周3次", 3 / 7),
])
def test_weekly_monthly_and_yearly_frequencies_are_read(text: str, per_day: float) -> None:
    reading = dosing.frequency_from_text(text)
    assert reading is not None and reading.per_day == pytest.approx(per_day)


def test_a_coded_drug_is_narrowed_to_the_product_its_name_names_so_tablets_convert() -> None:
    mr = _order(dosage="口服 每日1次")
    mr["medicationCodeableConcept"] = {"coding": [{"system": "http://www.whocc.no/atc", "code": "A02BC01"}],
                                       "text": "奥美拉唑肠溶胶囊"}
    mr["dosageInstruction"][0]["doseAndRate"] = [{"doseQuantity": {"value": 1, "unit": "粒"}}]
    item = _facts(_bundle(mr)).items[0]
    assert item["form"] == "肠溶胶囊" and item["dose_mg"] == 20 and item["injection"] is False
