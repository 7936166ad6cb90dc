"""Item facts read from variations of one order (each test changes one thing)."""

from __future__ import annotations

from typing import Any

import pytest
from fhir_support import load_fixture

from audit_engine import intake
from audit_engine.facts import normalise
from audit_engine.item_facts import OVERDOSE_REASON_URL
from audit_engine.knowledge.dictionary import load_dictionary


def _child() -> tuple[dict[str, Any], dict[str, Any]]:
    b = load_fixture("child_weight_per_kg_dose")
    mr = next(e["resource"] for e in b["entry"] if e["resource"]["resourceType"] == "MedicationRequest")
    return b, mr


def _item(b: dict[str, Any]) -> tuple[dict[str, Any], list[str]]:
    f = normalise(intake.parse_bundle(b), dictionary=load_dictionary())
    return f.items[0], [i.code for i in f.issues]


def test_dose_written_per_kg_uses_the_weight() -> None:
    b, mr = _child()
    mr["dosageInstruction"][0]["doseAndRate"][0]["doseQuantity"] = {"value": 15, "unit": "mg/kg", "code": "mg/kg"}
    item, issues = _item(b)
    assert issues == [] and item["dose_mg"] == pytest.approx(15 * 18) and item["dose_per_kg"] == pytest.approx(15)


def test_dose_written_per_kg_without_weight_is_unparseable() -> None:
    b, mr = _child()
    b["entry"] = [e for e in b["entry"] if e["resource"]["resourceType"] != "Observation"]
    mr["dosageInstruction"][0]["doseAndRate"][0]["doseQuantity"] = {"value": 15, "unit": "mg/kg", "code": "mg/kg"}
    item, issues = _item(b)
    assert issues == ["DOSE_UNPARSEABLE"] and "dose_mg" not in item


def test_frequency_max_is_read_conservatively() -> None:
    b, mr = _child()
    mr["dosageInstruction"][0]["timing"]["repeat"].update(frequency=2, frequencyMax=3)
    item, _ = _item(b)
    assert item["frequency"] == 3 and item["daily_dose_mg"] == 750


def test_unknown_dose_unit_is_unparseable() -> None:
    b, mr = _child()
    mr["dosageInstruction"][0]["doseAndRate"][0]["doseQuantity"] = {"value": 1, "unit": "勺"}
    item, issues = _item(b)
    assert issues == ["DOSE_UNPARSEABLE"] and "dose_mg" not in item


def test_mass_dose_for_a_drug_measured_in_units_is_a_conflict() -> None:
    b = load_fixture("ml_dose_with_concentration")
    mr = next(e["resource"] for e in b["entry"] if e["resource"]["resourceType"] == "MedicationRequest")
    mr["dosageInstruction"][0]["doseAndRate"][0]["doseQuantity"] = {"value": 5000, "unit": "mg", "code": "mg"}
    item, issues = _item(b)
    assert issues == ["UNIT_CONFLICT"] and "dose_mg" not in item  # heparin is dosed in IU


def test_overdose_reason_extension() -> None:
    b, mr = _child()
    mr["extension"] = [{"url": OVERDOSE_REASON_URL, "valueString": "重症感染，按说明书上限给药"}]
    assert _item(b)[0]["overdose_reason"] is True


def test_as_needed_concept_marks_prn_and_needs_a_maximum() -> None:
    b, mr = _child()
    dosage = mr["dosageInstruction"][0]
    del dosage["timing"]
    dosage["text"] = "发热时服用"
    dosage["asNeededCodeableConcept"] = {"text": "体温超过38.5℃"}
    item, issues = _item(b)
    assert item["prn"] is True and issues == ["FREQUENCY_UNPARSEABLE"] and "frequency" not in item


def test_missing_frequency_is_a_missing_dose_fact() -> None:
    b, mr = _child()
    dosage = mr["dosageInstruction"][0]
    del dosage["timing"]
    del dosage["text"]
    item, issues = _item(b)
    assert issues == ["DOSE_MISSING"] and item["dose_mg"] == 250 and "daily_dose_mg" not in item


def test_bounds_duration_gives_days_when_no_supply_duration() -> None:
    b, mr = _child()
    del mr["dispenseRequest"]
    mr["dosageInstruction"][0]["timing"]["repeat"]["boundsDuration"] = {"value": 1, "unit": "周", "code": "wk",
                                                                        "system": "http://unitsofmeasure.org"}
    assert _item(b)[0]["days"] == 7


def test_sequential_instructions_take_the_largest_daily_dose() -> None:
    b, mr = _child()
    first = mr["dosageInstruction"][0]
    second = {**first, "sequence": 2, "doseAndRate": [{"doseQuantity": {"value": 0.125, "unit": "g", "code": "g"}}]}
    mr["dosageInstruction"] = [first, second]
    item, _ = _item(b)
    assert item["daily_dose_mg"] == 750 and item["dose_mg"] == 250
