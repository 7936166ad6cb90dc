"""The ``context`` field: who the patient is and what was prescribed, beside the findings."""

from __future__ import annotations

import copy
from typing import Any

from apiworld import World, load_fixture

WARFARIN_ASPIRIN = "flagged/interaction_warfarin_aspirin.json"


def with_amlodipine(doc: dict[str, Any]) -> dict[str, Any]:
    """The warfarin + aspirin prescription with a third, unflagged order (amlodipine 5 mg qd)."""
    doc = copy.deepcopy(doc)
    aspirin = next(e for e in doc["entry"] if e["resource"].get("id") == "mr-aspirin")
    extra = copy.deepcopy(aspirin)
    mr = extra["resource"]
    mr["id"] = "mr-amlodipine"
    extra["fullUrl"] = extra["fullUrl"].replace("mr-aspirin", "mr-amlodipine")
    mr["medicationCodeableConcept"] = {"text": "氨氯地平", "coding": [
        {"system": "http://www.whocc.no/atc", "code": "C08CA01", "display": "氨氯地平"}]}
    mr["dosageInstruction"][0]["doseAndRate"][0]["doseQuantity"].update(value=5)
    mr["dosageInstruction"][0]["text"] = "口服，每日1次，每次5mg"
    doc["entry"].append(extra)
    return doc


def claim(w: World, doc: dict[str, Any]) -> dict[str, Any]:
    r = w.client.post("/api/v1/reviews", json=doc, headers=w.his())
    assert r.status_code == 201, r.text
    assert "context" not in r.json()  # the HIS sent the prescription: its answer does not echo it
    task = w.client.post("/api/v1/queue/claim", headers=w.user("pharmacist"))
    assert task.status_code == 200
    return dict(task.json())


def test_claimed_task_carries_the_patient_prescription_and_drugs(world: World) -> None:
    task = claim(world, with_amlodipine(load_fixture(WARFARIN_ASPIRIN)))
    ctx = task["review"]["context"]
    patient, rx, items = ctx["patient"], ctx["prescription"], ctx["items"]
    assert patient["sex"] == "男" and patient["age_years"] >= 70 and patient["population"] == "老年"
    assert patient["diagnoses"] == [{"code": "I48.9", "name": "心房颤动"}]
    assert patient["weight"] is None  # no weight Observation: unknown, and the key is still there
    assert rx["type"] == "门诊" and rx["department"] == "心内科" and rx["prescriber_title"] == "主治医师"
    assert rx["institution_code"] == "DC-0001"
    by_ref = {i["reference"]: i for i in items}
    assert list(by_ref) == ["MedicationRequest/mr-warfarin", "MedicationRequest/mr-aspirin",
                            "MedicationRequest/mr-amlodipine"]
    warfarin = by_ref["MedicationRequest/mr-warfarin"]
    assert warfarin["name"] == "华法林" and warfarin["dose"] == [{"value": 3.0, "unit": "mg"}]
    assert warfarin["frequency"] == 1.0 and warfarin["route"] == "口服" and warfarin["days"] == 7.0
    implicated = {ref for f in task["review"]["findings"] for ref in f["implicated"]}
    for ref, item in by_ref.items():
        assert bool(item["implicated_by"]) == (ref in implicated)
    assert by_ref["MedicationRequest/mr-amlodipine"]["implicated_by"] == []
    assert by_ref["MedicationRequest/mr-aspirin"]["implicated_by"] == ["DDI-WARFARIN-ASPIRIN"]


def test_task_and_review_reads_return_the_same_context(world: World) -> None:
    w = world
    task = claim(w, load_fixture(WARFARIN_ASPIRIN))
    again = w.client.get(f"/api/v1/tasks/{task['id']}", headers=w.user("pharmacist")).json()
    review = w.client.get(f"/api/v1/reviews/{task['review_id']}", headers=w.his()).json()
    assert again["review"]["context"] == task["review"]["context"] == review["context"]
    assert not [h for h in review["history"] if h["action"].startswith("prescription.")]  # reads are not changes


def test_what_the_engine_could_not_establish_is_null_with_the_reason_on_the_drug(world: World) -> None:
    doc = load_fixture(WARFARIN_ASPIRIN)
    for e in doc["entry"]:
        r = e["resource"]
        if r["resourceType"] == "Patient":
            del r["gender"], r["birthDate"]
        if r.get("id") == "mr-aspirin":
            r["medicationCodeableConcept"] = {"text": "自配止痛散"}
            del r["dosageInstruction"][0]["doseAndRate"], r["dosageInstruction"][0]["text"]
    task = claim(world, doc)
    ctx = task["review"]["context"]
    assert ctx["patient"]["age_years"] is None and ctx["patient"]["age_days"] is None
    unknown = next(i for i in ctx["items"] if i["reference"] == "MedicationRequest/mr-aspirin")
    assert unknown["name"] is None and unknown["dose"] == []
    assert any("无法识别" in m for m in unknown["issues"]) and unknown["implicated_by"]
