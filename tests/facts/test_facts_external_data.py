"""The public test data normalises without an error.

Synthea (Apache-2.0) and the HL7 PDDI CDS examples (CC0), copied unchanged from
/work/shared/data/external into fixtures/fhir/intake/external/ (see SOURCES.md there).
"""

from __future__ import annotations

import json
from collections import defaultdict
from functools import lru_cache
from typing import Any

import pytest
from fhir_support import EXTERNAL

from audit_engine import intake
from audit_engine.facts import normalise
from audit_engine.knowledge.dictionary import load_dictionary
from audit_engine.schema import FactIssue

BULK = EXTERNAL / "synthea-bulk-10"
ISSUE_CODES = {"UNKNOWN_DRUG", "DOSE_UNPARSEABLE", "FREQUENCY_UNPARSEABLE", "UNIT_CONFLICT", "DOSE_MISSING",
               "ROUTE_UNKNOWN", "ALLERGY_UNMAPPED"}


@lru_cache(maxsize=1)
def _bulk() -> dict[str, list[dict[str, Any]]]:
    out: dict[str, list[dict[str, Any]]] = {}
    for path in sorted(BULK.glob("*.ndjson")):
        rtype = path.name.split(".")[0]
        out[rtype] = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    return out


def _patient_ref(resource: dict[str, Any]) -> str:
    ref = (resource.get("subject") or resource.get("patient") or {}).get("reference", "")
    return ref.rsplit("/", 1)[-1]


def _by_patient() -> dict[str, dict[str, list[dict[str, Any]]]]:
    grouped: dict[str, dict[str, list[dict[str, Any]]]] = defaultdict(lambda: defaultdict(list))
    data = _bulk()
    for p in data["Patient"]:
        grouped[p["id"]]["Patient"].append(p)
    for rtype in ("MedicationRequest", "Condition", "AllergyIntolerance"):
        for r in data[rtype]:
            grouped[_patient_ref(r)][rtype].append(r)
    return grouped


def _check_issues(issues: list[FactIssue], item_ids: set[str]) -> None:
    for issue in issues:
        assert issue.code in ISSUE_CODES
        # an allergy issue belongs to the patient, not to an order
        assert (issue.item in item_ids or (issue.code == "ALLERGY_UNMAPPED" and issue.item is None))
        assert issue.where and issue.message


def test_bulk_export_holds_1745_medication_requests() -> None:
    assert len(_bulk()["MedicationRequest"]) == 1745


def test_every_bulk_medication_request_normalises_as_an_order_under_review() -> None:
    """Each of the 1,745 orders, made the current order of its patient, gives facts or FactIssues, never an error."""
    dictionary = load_dictionary()
    reviewed = unknown = 0
    for resources in _by_patient().values():
        for mr in resources["MedicationRequest"]:
            order = {**mr, "status": "active"}
            # one order alone: the patient context is exercised by the per-patient test below
            facts = normalise(intake.parse_medication_request(order), dictionary=dictionary)
            assert [i["id"] for i in facts.items] == [mr["id"]]
            _check_issues(facts.issues, {mr["id"]})
            known = "drug_id" in facts.items[0]
            unknown += not known
            assert known != any(i.code == "UNKNOWN_DRUG" for i in facts.issues)
            reviewed += 1
    assert reviewed == 1745 and unknown < reviewed


def test_each_bulk_patient_history_normalises_with_stopped_orders_as_context() -> None:
    dictionary = load_dictionary()
    seen = 0
    for resources in _by_patient().values():
        mrs = resources["MedicationRequest"]
        if not any(m["status"] in ("active", "draft") for m in mrs):
            continue
        bundle = {"resourceType": "Bundle", "type": "collection",
                  "entry": [{"resource": r} for rs in resources.values() for r in rs]}
        facts = normalise(intake.parse_bundle(bundle), dictionary=dictionary)
        assert facts.items and len(facts.items) + len(facts.context_items) == len(mrs)
        assert all(c["status"] for c in facts.context_items)
        _check_issues(facts.issues, {i["id"] for i in facts.items})
        seen += 1
    assert seen > 0


def test_synthea_patient_bundle_normalises() -> None:
    payload = json.loads((EXTERNAL / "synthea-bundles" / "Louis_Maggio.json").read_text(encoding="utf-8"))
    facts = normalise(intake.parse_bundle(payload), dictionary=load_dictionary())
    assert facts.items and facts.patient["sex"] == "男" and "age_years" in facts.patient
    assert facts.patient["weight"] > 0 and facts.patient["height"] > 0 and facts.patient["egfr"] > 0
    assert facts.prescription["type"] == "门诊"
    _check_issues(facts.issues, {i["id"] for i in facts.items})


def test_synthea_bundle_with_every_order_made_current_normalises() -> None:
    payload = json.loads((EXTERNAL / "synthea-bundles" / "Louis_Maggio.json").read_text(encoding="utf-8"))
    dictionary = load_dictionary()
    entries = payload["entry"]
    for k, entry in enumerate(entries):
        if entry["resource"]["resourceType"] != "MedicationRequest":
            continue
        only = [e for e in entries if e["resource"]["resourceType"] != "MedicationRequest"]
        only.append({"resource": {**entry["resource"], "status": "draft"}})
        facts = normalise(intake.parse_bundle({**payload, "entry": only}), dictionary=dictionary)
        assert [i["id"] for i in facts.items] == [entry["resource"]["id"]], k


@pytest.mark.parametrize("name", sorted(p.name for p in (EXTERNAL / "hl7-pddi-cds").glob("request-*.json")))
def test_pddi_requests_normalise(name: str) -> None:
    payload = json.loads((EXTERNAL / "hl7-pddi-cds" / name).read_text(encoding="utf-8"))
    facts = normalise(intake.parse_cds_request(payload), dictionary=load_dictionary())
    assert len(facts.items) == 1 and facts.items[0]["frequency"] == 1 and facts.items[0]["days"] == 90
    _check_issues(facts.issues, {facts.items[0]["id"]})
