"""One test per normalisation scenario in fixtures/fhir/intake/ (named for what it shows)."""

from __future__ import annotations

import math

import pytest
from fhir_support import FIXTURES, facts_of, issue_codes, load_fixture, parse_any

from audit_engine import clinical
from audit_engine.errors import IntakeError
from audit_engine.knowledge.dictionary import load_dictionary
from audit_engine.schema import FIELDS


def test_every_fixture_file_has_a_test_here() -> None:
    source = open(__file__, encoding="utf-8").read()
    missing = [p.stem for p in FIXTURES.glob("*.json") if f'"{p.stem}"' not in source]
    assert not missing, f"fixtures without a test: {missing}"


def test_adult_outpatient_gets_every_context_fact() -> None:
    f = facts_of("adult_outpatient_full_context")
    assert f.patient["sex"] == "男" and f.patient["age_years"] == 58 and f.patient["population"] == "成人"
    assert f.patient["weight"] == 72.5 and f.patient["chronic"] is True and f.patient["diagnosis_codes"] == ["I10"]
    assert f.prescription["type"] == "门诊" and f.prescription["department"] == "内科"
    assert f.prescription["date"] == "2026-11-20" and f.prescription["item_count"] == 1
    assert f.prescriber == {"title": "主治医师", "antimicrobial_grade": "限制使用级", "rights": ["抗菌药物处方权"]}
    assert f.institution == {"code": "DEMO-COUNTY-HOSP", "level": "县级医院"}
    (item,) = f.items
    assert item["name"] == "氨氯地平" and item["dose_mg"] == 5 and item["daily_dose_mg"] == 5
    assert item["frequency"] == 1 and item["days"] == 7 and item["route"] == "口服"
    assert item["reference"] == "MedicationRequest/mr-1"
    assert f.issues == []


def test_every_fact_key_is_in_the_catalogue() -> None:
    keys = {k for fld in FIELDS for k in fld.keys}
    f = facts_of("adult_outpatient_full_context")
    for part in (f.patient, f.prescription, f.prescriber, f.institution, *f.items):
        unknown = set(part) - keys - {"id", "reference"}
        assert not unknown, unknown
    assert all(v is not None for part in (f.patient, *f.items) for v in part.values())


def test_child_weight_gives_dose_per_kg() -> None:
    f = facts_of("child_weight_per_kg_dose")
    (item,) = f.items
    assert f.patient["population"] == "儿童" and f.patient["weight"] == 18
    assert item["dose_mg"] == 250 and item["daily_dose_mg"] == 750
    assert item["dose_per_kg"] == pytest.approx(250 / 18, rel=1e-5)
    assert item["daily_dose_per_kg"] == pytest.approx(750 / 18, rel=1e-5)


def test_egfr_is_computed_from_latest_creatinine_with_ckd_epi_2021() -> None:
    f = facts_of("egfr_from_creatinine_ckd_epi")
    expected = clinical.ckd_epi_2021(133 / 88.4, 72, "女")
    assert expected is not None and f.patient["egfr"] == pytest.approx(expected, abs=0.06)
    assert 30 < f.patient["egfr"] < 45  # the metformin "do not start" band, as the fixture intends


def test_child_egfr_uses_bedside_schwartz_with_height() -> None:
    f = facts_of("egfr_child_bedside_schwartz")
    assert f.patient["egfr"] == pytest.approx(0.413 * 128 / 0.5, abs=0.06)


def test_reported_egfr_wins_over_creatinine_and_latest_report_wins() -> None:
    assert facts_of("egfr_observed_latest_wins").patient["egfr"] == 27


def test_chinese_free_text_gives_dose_frequency_and_route() -> None:
    (item,) = facts_of("frequency_free_text_chinese").items
    assert (item["dose_mg"], item["frequency"], item["daily_dose_mg"], item["route"]) == (500, 3, 1500, "口服")


def test_timing_code_q8h_means_three_times_a_day() -> None:
    (item,) = facts_of("frequency_timing_code_q8h").items
    assert item["frequency"] == 3 and item["daily_dose_mg"] == 1500


def test_when_morning_and_evening_means_twice_a_day() -> None:
    (item,) = facts_of("frequency_when_morning_evening").items
    assert item["frequency"] == 2 and item["daily_dose_mg"] == 1000


def test_conflicting_code_and_unit_is_a_unit_conflict_not_a_dose() -> None:
    f = facts_of("bad_dose_unit_conflict")
    assert issue_codes(f) == ["UNIT_CONFLICT"]
    assert f.issues[0].where == "Bundle.entry[5].resource.dosageInstruction[0].doseAndRate[0].doseQuantity"
    assert "dose_mg" not in f.items[0] and "daily_dose_mg" not in f.items[0]


def test_stu3_dose_quantity_is_accepted_with_a_warning() -> None:
    received = parse_any(load_fixture("stu3_dose_quantity"))
    assert [w.expression for w in received.warnings] == ["Bundle.entry[5].resource.dosageInstruction[0]"]
    assert all(w.severity == "warning" for w in received.warnings)
    f = facts_of("stu3_dose_quantity")
    assert f.items[0]["dose_mg"] == 5 and f.issues == []


def test_unknown_local_code_is_reported_for_the_pharmacist() -> None:
    f = facts_of("unknown_drug_local_code")
    assert issue_codes(f) == ["UNKNOWN_DRUG"]
    assert "复方苦参洗液" in f.issues[0].message and f.issues[0].item == "mr-1"
    assert "drug_id" not in f.items[0] and f.items[0]["daily_dose_ml"] == 20
    assert "has_western" not in f.prescription  # unknown drug: we cannot say


def test_local_product_code_converts_tablets_through_strength() -> None:
    (item,) = facts_of("tablets_converted_through_strength").items
    # the local code only resolves for its institution; its product row pins one strength
    product = load_dictionary().resolve([("urn:cn:local", "YP0011", None)], None, "DEMO-COUNTY-HOSP")
    assert product is not None and load_dictionary().resolve([("urn:cn:local", "YP0011", None)]) is None
    per_tablet = product.canonical_dose(1, "片")
    assert per_tablet is not None and per_tablet[0] == "mass"
    assert item["drug_id"] == product.id and item["dose_mg"] == pytest.approx(2 * per_tablet[1])
    assert item["daily_dose_mg"] == item["dose_mg"]


def test_ml_dose_converts_through_concentration() -> None:
    (item,) = facts_of("ml_dose_with_concentration").items
    assert item["dose_ml"] == 0.4 and item["dose_iu"] == pytest.approx(0.4 * 12500 / 2)
    assert item["daily_dose_iu"] == pytest.approx(2 * 0.4 * 12500 / 2) and item["route"] == "皮下"


def test_emergency_encounter_and_iv_drip_route_text() -> None:
    f = facts_of("emergency_iv_drip_route_text")
    assert f.prescription["type"] == "急诊" and f.items[0]["route"] == "静滴"
    assert f.items[0]["injection"] is True and f.items[0]["days"] == 1


def test_prn_counts_its_stated_maximum() -> None:
    (item,) = facts_of("prn_with_max_dose_per_period").items
    assert item["prn"] is True and item["frequency"] == 4 and item["daily_dose_mg"] == 800


def test_pregnancy_from_observation() -> None:
    assert facts_of("pregnancy_from_observation").patient["pregnant"] is True


def test_pregnancy_from_icd10_condition() -> None:
    f = facts_of("pregnancy_from_condition_icd10")
    assert f.patient["pregnant"] is True and f.patient["diagnosis_codes"] == ["Z33"]


def test_lactation_from_condition() -> None:
    p = facts_of("lactation_from_condition").patient
    assert p["lactating"] is True and "pregnant" not in p  # nothing says either way about pregnancy


def test_hepatic_impairment_from_active_condition_only() -> None:
    f = facts_of("hepatic_impairment_from_condition")
    assert f.patient["hepatic_impairment"] is True
    assert f.patient["diagnosis_codes"] == ["K74.6"]  # the resolved J06.9 is history
    assert [d["name"] for d in f.diagnoses] == ["肝硬化"]


def test_allergy_resolves_to_ingredients_and_classes() -> None:
    allergies = facts_of("allergy_resolved_to_ingredients_and_classes").patient["allergies"]
    assert {"阿莫西林", "青霉素类", "J01CA04"} <= set(allergies)
    assert "J" not in allergies and "J01" not in allergies  # broad ATC levels are not allergens
    assert "花生" not in allergies  # food allergy
    assert "磺胺类" in allergies  # written by class name, kept


def test_neonate_age_in_days_and_weight_in_grams() -> None:
    f = facts_of("neonate_age_in_days")
    assert (f.patient["age_days"], f.patient["age_months"], f.patient["age_years"]) == (10, 0, 0)
    assert f.patient["population"] == "新生儿" and f.patient["weight"] == 3.2
    assert f.items[0]["route"] == "静滴"  # SNOMED IV route refined by the text 静滴
    assert f.items[0]["dose_per_kg"] == pytest.approx(150 / 3.2, rel=1e-5)


def test_village_clinic_rural_doctor_has_the_lowest_grade() -> None:
    f = facts_of("village_clinic_rural_doctor")
    assert f.institution == {"code": "VILLAGE-017", "level": "村卫生室"}
    assert f.prescriber["title"] == "乡村医生" and f.prescriber["antimicrobial_grade"] == "非限制使用级"


def test_senior_prescriber_rights_and_cancer_pain() -> None:
    f = facts_of("senior_prescriber_with_narcotic_rights")
    assert f.prescriber["title"] == "副主任医师" and f.prescriber["antimicrobial_grade"] == "特殊使用级"
    assert "麻醉药品和第一类精神药品处方权" in f.prescriber["rights"]
    assert f.patient["chronic_pain"] is True and f.items[0]["control"] == "麻醉"


def test_history_orders_are_context_and_drafts_are_reviewed() -> None:
    f = facts_of("history_orders_are_context")
    assert [i["id"] for i in f.items] == ["mr-draft-1", "mr-draft-2"]
    assert {i["id"]: i["status"] for i in f.context_items} == {
        "mr-old-stopped": "stopped", "mr-old-completed": "completed", "mr-chronic-active": "active"}
    assert f.prescription["item_count"] == 2


def test_only_the_latest_active_group_is_reviewed() -> None:
    f = facts_of("latest_active_group_reviewed")
    assert [i["id"] for i in f.items] == ["mr-today-1", "mr-today-2"]
    assert [i["id"] for i in f.context_items] == ["mr-october"]
    assert f.prescription_id is not None and f.prescription_id.startswith("sha256:")


def test_days_from_quantity_divided_by_daily_use() -> None:
    (item,) = facts_of("days_from_quantity").items
    assert item["days"] == 5 and item["dose_mg"] == 250


def test_tablets_of_a_drug_with_two_strengths_cannot_be_converted() -> None:
    f = facts_of("bad_tablets_ambiguous_strength")
    assert issue_codes(f) == ["DOSE_UNPARSEABLE"] and "规格" in f.issues[0].message
    assert "dose_mg" not in f.items[0] and f.items[0]["days"] == 4  # 12 片 ÷ 3 片/日


def test_long_term_prescription_flag() -> None:
    f = facts_of("long_term_prescription")
    assert f.prescription["long_term"] is True and f.items[0]["days"] == 56


def test_overdose_reason_from_note() -> None:
    assert facts_of("overdose_reason_in_note").items[0]["overdose_reason"] is True
    assert facts_of("adult_outpatient_full_context").items[0]["overdose_reason"] is False


def test_conflicting_timing_is_a_frequency_issue() -> None:
    f = facts_of("bad_frequency_conflict")
    assert issue_codes(f) == ["FREQUENCY_UNPARSEABLE"] and "矛盾" in f.issues[0].message
    assert "frequency" not in f.items[0] and "daily_dose_mg" not in f.items[0]


def test_dose_missing_sends_to_pharmacist() -> None:
    f = facts_of("bad_dose_missing")
    assert issue_codes(f) == ["DOSE_MISSING", "FREQUENCY_UNPARSEABLE"]
    assert all(i.where and i.where.startswith("Bundle.entry[5].resource.dosageInstruction[0]") for i in f.issues)


def test_unknown_route_is_reported() -> None:
    f = facts_of("bad_route_unknown")
    assert issue_codes(f) == ["ROUTE_UNKNOWN"] and "膀胱内给药" in f.issues[0].message


def test_herbal_and_western_flags() -> None:
    f = facts_of("herbal_and_western_mixed")
    assert f.prescription["has_herbal"] is True and f.prescription["has_western"] is True
    herb = next(i for i in f.items if i["id"] == "mr-herb")
    assert herb["herbal"] is True and herb["route"] == "煎服" and herb["dose_mg"] == 6000


def test_weight_in_pounds_and_height_in_metres() -> None:
    p = facts_of("weight_height_unit_conversion").patient
    assert p["weight"] == pytest.approx(154 * 0.45359237, abs=1e-3) and p["height"] == 170


def test_contained_medication_reference_resolves() -> None:
    f = facts_of("medication_reference_contained")
    assert f.items[0]["drug_id"] == "amoxicillin" and f.issues == []


def test_frequency_written_as_text_is_refused_with_fhirpath() -> None:
    with pytest.raises(IntakeError) as err:
        parse_any(load_fixture("bad_fhir_frequency_not_integer"))
    assert err.value.status == 422
    assert [i.expression for i in err.value.issues] == [
        "Bundle.entry[5].resource.dosageInstruction[0].timing.repeat.frequency"]


def test_bad_period_unit_suggests_the_code() -> None:
    with pytest.raises(IntakeError) as err:
        parse_any(load_fixture("bad_fhir_period_unit"))
    (issue,) = err.value.issues
    assert issue.expression == "Bundle.entry[5].resource.dosageInstruction[0].timing.repeat.periodUnit"
    assert "'d'" in issue.message and issue.code == "code-invalid"


def test_single_medication_request_is_the_whole_prescription() -> None:
    f = facts_of("single_medication_request")
    assert [i["id"] for i in f.items] == ["mr-1"] and f.prescription_id == "urn:cn:county:his:prescription|RX20261120-0001"
    assert f.patient == {}  # nothing about the patient was sent: absent, not guessed


def test_cds_order_sign_reads_every_prefetch_key() -> None:
    f = facts_of("cds_order_sign_full_prefetch", client_institution={"code": "DEMO-COUNTY-HOSP", "level": "县级医院"})
    assert [i["id"] for i in f.items] == ["draft-simva", "draft-clari"]
    assert f.patient["population"] == "老年" and f.patient["egfr"] == 52 and f.patient["weight"] == 55
    assert f.patient["diagnosis_codes"] == ["E78.5", "J18.9"] and f.patient["allergies"] == []
    assert f.prescriber["title"] == "副主任医师" and f.prescription["type"] == "门诊"
    assert f.institution == {"code": "DEMO-COUNTY-HOSP", "level": "县级医院"}  # from the calling client


def test_cds_order_sign_without_prefetch_still_reviews_the_drugs() -> None:
    f = facts_of("cds_order_sign_without_prefetch")
    assert f.items[0]["daily_dose_mg"] == 20 and f.issues == []
    assert "age_years" not in f.patient and "title" not in f.prescriber


def test_dose_range_is_read_at_its_high_end() -> None:
    (item,) = facts_of("dose_range_reads_high_end").items
    assert item["dose_mg"] == 500 and item["daily_dose_mg"] == 1500


def test_concurrent_dosage_instructions_add_up() -> None:
    (item,) = facts_of("split_daily_doses_add_up").items
    assert item["daily_dose_mg"] == 1500 and item["dose_mg"] == 1000 and item["frequency"] == 2
    assert not math.isnan(item["frequency"])


def test_department_organization_part_of_the_township_centre() -> None:
    f = facts_of("department_organization_part_of_township_centre")
    assert f.prescription["department"] == "全科医学科"
    assert f.institution == {"code": "TOWNSHIP-003", "level": "乡镇卫生院"}
    assert f.prescriber["antimicrobial_grade"] == "非限制使用级"
    assert f.items[0]["frequency"] == 2 and f.items[0]["daily_dose_mg"] == 10


def test_route_not_written_is_filled_from_the_dictionary_but_marked_unstated() -> None:
    (written,) = facts_of("single_medication_request").items
    (unwritten,) = facts_of("route_not_written").items
    assert (written["route"], written["route_stated"]) == ("口服", True)
    # The default route still lets route-specific rules work; 途径已写 = 否 lets the form rule flag it.
    assert (unwritten["route"], unwritten["route_stated"]) == ("口服", False)


def test_unreadable_route_counts_as_written() -> None:
    (item,) = facts_of("bad_route_unknown").items
    assert item["route_stated"] is True
    assert "ROUTE_UNKNOWN" in issue_codes(facts_of("bad_route_unknown"))
