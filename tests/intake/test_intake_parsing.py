"""Intake: what is accepted, what is refused (with which FHIRPath), and which orders are under review."""

from __future__ import annotations

import copy
import json
from typing import Any

import pytest
from fhir_support import EXTERNAL, load_fixture

from audit_engine import intake
from audit_engine.errors import IntakeError


def _refused(fn: Any, payload: Any) -> IntakeError:
    with pytest.raises(IntakeError) as err:
        fn(payload)
    return err.value


def _base() -> dict[str, Any]:
    return load_fixture("adult_outpatient_full_context")


def _order_index(bundle: dict[str, Any]) -> int:
    return next(i for i, e in enumerate(bundle["entry"]) if e["resource"]["resourceType"] == "MedicationRequest")


@pytest.mark.parametrize("btype", ["collection", "transaction", "searchset", "batch"])
def test_bundle_types_carrying_a_prescription_are_accepted(btype: str) -> None:
    b = _base()
    b["type"] = btype
    assert [o.id for o in intake.parse_bundle(b).orders] == ["mr-1"]


def test_unsupported_bundle_type_names_the_element() -> None:
    b = _base()
    b["type"] = "document"
    err = _refused(intake.parse_bundle, b)
    assert err.status == 422 and [i.expression for i in err.issues] == ["Bundle.type"]


def test_wrong_resource_type_says_which_entry_point_to_use() -> None:
    err = _refused(intake.parse_bundle, load_fixture("single_medication_request"))
    assert err.issues[0].expression == "resourceType" and "medication_request" in err.issues[0].message


def test_every_bad_element_is_reported_at_once() -> None:
    b = _base()
    k = _order_index(b)
    mr = b["entry"][k]["resource"]
    mr["status"] = "activ"
    mr["dosageInstruction"][0]["timing"]["repeat"]["frequency"] = "x"
    b["entry"][0]["resource"]["birthDate"] = "1968-13-40"
    err = _refused(intake.parse_bundle, b)
    exprs = sorted(i.expression or "" for i in err.issues)
    assert exprs == sorted([
        "Bundle.entry[0].resource.birthDate",
        f"Bundle.entry[{k}].resource.dosageInstruction[0].timing.repeat.frequency",
    ])  # the status code is checked after the structure validates; both structural errors come together


def test_invalid_status_suggests_the_closest_code() -> None:
    b = _base()
    k = _order_index(b)
    b["entry"][k]["resource"]["status"] = "activ"
    (issue,) = _refused(intake.parse_bundle, b).issues
    assert issue.expression == f"Bundle.entry[{k}].resource.status" and "'active'" in issue.message


def test_missing_required_intent_is_reported_as_required() -> None:
    b = _base()
    k = _order_index(b)
    del b["entry"][k]["resource"]["intent"]
    (issue,) = _refused(intake.parse_bundle, b).issues
    assert issue.code == "required" and issue.expression == f"Bundle.entry[{k}].resource.intent"


def test_unknown_element_suggests_a_close_name() -> None:
    b = _base()
    k = _order_index(b)
    b["entry"][k]["resource"]["dosageInstruction"][0]["timming"] = {}
    (issue,) = _refused(intake.parse_bundle, b).issues
    assert issue.expression == f"Bundle.entry[{k}].resource.dosageInstruction[0].timming"
    assert "'timing'" in issue.message and issue.code == "structure"


def test_stopped_orders_alone_are_not_a_prescription() -> None:
    b = _base()
    b["entry"][_order_index(b)]["resource"]["status"] = "stopped"
    err = _refused(intake.parse_bundle, b)
    assert err.issues[0].expression == "Bundle.entry" and "stopped" in err.issues[0].message


def test_single_medication_request_must_be_draft_or_active() -> None:
    mr = load_fixture("single_medication_request")
    mr["status"] = "completed"
    (issue,) = _refused(intake.parse_medication_request, mr).issues
    assert issue.expression == "MedicationRequest.status"


def test_orders_of_two_patients_cannot_be_one_prescription() -> None:
    b = _base()
    k = _order_index(b)
    second = copy.deepcopy(b["entry"][k])
    second["resource"]["id"] = "mr-2"
    second["resource"]["subject"] = {"reference": "Patient/someone-else"}
    b["entry"].append(second)
    (issue,) = _refused(intake.parse_bundle, b).issues
    assert issue.code == "business-rule" and "不同患者" in issue.message


def test_resources_nobody_reads_are_not_validated() -> None:
    b = _base()
    b["entry"].append({"resource": {"resourceType": "Claim", "id": "c1", "whatever": [1, 2]}})
    assert intake.parse_bundle(b).orders


def test_entry_without_resource_is_refused() -> None:
    b = _base()
    b["entry"].append({"fullUrl": "urn:uuid:x"})
    (issue,) = _refused(intake.parse_bundle, b).issues
    assert issue.expression == f"Bundle.entry[{len(b['entry']) - 1}].resource"


def test_group_identifier_is_the_prescription_id() -> None:
    assert intake.parse_bundle(_base()).prescription_id == "urn:cn:county:his:prescription|RX20261120-0001"


def test_bundle_identifier_is_used_without_group_identifier() -> None:
    b = _base()
    del b["entry"][_order_index(b)]["resource"]["groupIdentifier"]
    b["identifier"] = {"system": "urn:cn:his", "value": "B-77"}
    assert intake.parse_bundle(b).prescription_id == "urn:cn:his|B-77"


def test_hashed_prescription_id_is_stable_and_depends_on_the_orders() -> None:
    b = _base()
    del b["entry"][_order_index(b)]["resource"]["groupIdentifier"]
    first = intake.parse_bundle(b).prescription_id
    shuffled = copy.deepcopy(b)
    shuffled["entry"].reverse()
    assert intake.parse_bundle(shuffled).prescription_id == first
    b["entry"][_order_index(b)]["resource"]["identifier"][0]["value"] = "ORD-other"
    assert intake.parse_bundle(b).prescription_id != first and first and first.startswith("sha256:")


def test_drafts_are_reviewed_and_active_orders_become_context() -> None:
    received = intake.parse_bundle(load_fixture("history_orders_are_context"))
    assert [o.id for o in received.orders] == ["mr-draft-1", "mr-draft-2"]
    assert {o.id for o in received.context_orders} == {"mr-old-stopped", "mr-old-completed", "mr-chronic-active"}
    assert received.encounter is not None and received.encounter.id == "enc-001"


def test_conditional_requester_reference_resolves_by_identifier() -> None:
    b = _base()
    prac = next(e["resource"] for e in b["entry"] if e["resource"]["resourceType"] == "Practitioner")
    prac["identifier"] = [{"system": "urn:cn:nhc:doctor", "value": "110105198001011234"}]
    received = intake.parse_bundle(b)
    found = received.find("Practitioner?identifier=urn:cn:nhc:doctor|110105198001011234")
    assert found is not None and found.id == prac["id"]


def test_synthea_bundle_reviews_only_the_latest_active_encounter() -> None:
    payload = json.loads((EXTERNAL / "synthea-bundles" / "Louis_Maggio.json").read_text())
    received = intake.parse_bundle(payload)
    mrs = [e["resource"] for e in payload["entry"] if e["resource"]["resourceType"] == "MedicationRequest"]
    active = [m for m in mrs if m["status"] == "active"]
    latest = max(active, key=lambda m: m["authoredOn"])
    assert [o.id for o in received.orders] == [m["id"] for m in active if m["encounter"] == latest["encounter"]]
    assert len(received.orders) + len(received.context_orders) == len(mrs)
    assert received.patient is not None and received.encounter is not None
    assert received.encounter.id == latest["encounter"]["reference"].rsplit(":", 1)[-1].rsplit("/", 1)[-1]
