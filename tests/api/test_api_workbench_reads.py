"""The workbench's reads over HTTP: the queue page with summaries and filters, a task's history
across versions with what changed, and claiming the task on screen."""

from __future__ import annotations

import copy
from typing import Any

from apiworld import World, load_fixture
from test_api_review_context import with_amlodipine

WARFARIN_ASPIRIN = "flagged/interaction_warfarin_aspirin.json"
MODIFIED = "modified/interaction_warfarin_aspirin_modified_dose_and_ppi.json"


def numbered(doc: dict[str, Any], number: str) -> dict[str, Any]:
    doc = copy.deepcopy(doc)
    doc["identifier"]["value"] = number
    for e in doc["entry"]:
        if "groupIdentifier" in e["resource"]:
            e["resource"]["groupIdentifier"]["value"] = number
    return doc


def emergency(doc: dict[str, Any]) -> dict[str, Any]:
    doc = copy.deepcopy(doc)
    enc = next(e["resource"] for e in doc["entry"] if e["resource"]["resourceType"] == "Encounter")
    enc["class"] = {"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "EMER", "display": "emergency"}
    return doc


def post(w: World, doc: dict[str, Any], key: str | None = None) -> dict[str, Any]:
    r = w.client.post("/api/v1/reviews", json=doc, headers=w.his(key))
    assert r.status_code == 201, r.text
    return dict(r.json())


def queue(w: World, **params: Any) -> dict[str, Any]:
    r = w.client.get("/api/v1/queue", params=params, headers=w.user("pharmacist"))
    assert r.status_code == 200, r.text
    return dict(r.json())


def test_queue_rows_say_which_drugs_what_problem_where_and_by_when(world: World) -> None:
    post(world, with_amlodipine(load_fixture(WARFARIN_ASPIRIN)))
    page = queue(world)
    assert page["total"] == 1
    row = page["rows"][0]
    assert row["drugs"] == ["华法林", "阿司匹林"] and row["drug_count"] == 3
    assert row["drugs_text"] == "华法林、阿司匹林 等 3 种"
    assert row["top_finding"] == "华法林与阿司匹林相互作用" and row["top_finding_level"] == 5
    assert row["institution_code"] == "TOWN01" and row["institution_name"] == "城关镇卫生院"
    assert row["rx_type"] == "门诊" and row["emergency"] is False
    assert row["prescription_number"] == "RX202611230538"  # the value, not system|value
    assert row["deadline_at"].endswith("Z") and row["deadline_at"] > row["created_at"]
    assert page["institutions"] == [{"code": "TOWN01", "name": "城关镇卫生院", "count": 1}]


def test_the_queue_is_read_by_pharmacists_and_quality_managers_and_worked_by_pharmacists_only(world: World) -> None:
    for who in (world.his(), world.user("admin")):
        r = world.client.get("/api/v1/queue", headers=who)
        assert r.status_code == 403 and r.json()["resourceType"] == "OperationOutcome"
    post(world, numbered(load_fixture(WARFARIN_ASPIRIN), "RX-Q"))
    page = world.client.get("/api/v1/queue", headers=world.user("quality"))
    assert page.status_code == 200 and page.json()["total"] == 1  # queue.read: 处方点评 reads the queue
    task_id = page.json()["rows"][0]["task_id"]
    r = world.client.post(f"/api/v1/tasks/{task_id}/claim", headers=world.user("quality"))
    assert r.status_code == 403 and "queue.work" in r.json()["issue"][0]["diagnostics"]


def test_queue_filters_by_institution_severity_and_type(world: World) -> None:
    post(world, numbered(load_fixture(WARFARIN_ASPIRIN), "RX-A"))
    post(world, emergency(numbered(load_fixture(WARFARIN_ASPIRIN), "RX-B")), key=world.other_member_key)
    assert queue(world)["total"] == 2
    assert [r["prescription_number"] for r in queue(world, institution="VIL01")["rows"]] == ["RX-B"]
    assert [r["rx_type"] for r in queue(world, type="急诊")["rows"]] == ["急诊"]
    assert [r["prescription_number"] for r in queue(world, type="门诊")["rows"]] == ["RX-A"]
    assert queue(world, min_level=5)["total"] == 2 and queue(world, min_level=6)["total"] == 0
    assert queue(world, waited_minutes=30)["total"] == 0  # both just arrived
    # 急诊 first in claim order, and the institutions facet ignores the filters.
    assert [r["rx_type"] for r in queue(world)["rows"]] == ["急诊", "门诊"]
    assert {i["code"] for i in queue(world, institution="VIL01")["institutions"]} == {"TOWN01", "VIL01"}


def test_queue_pages_and_an_unchanged_queue_answers_304(world: World) -> None:
    for n in range(5):
        post(world, numbered(load_fixture(WARFARIN_ASPIRIN), f"RX-P{n}"))
    first = queue(world, limit=2)
    second = queue(world, limit=2, offset=2)
    assert first["total"] == 5 and len(first["rows"]) == 2 and len(second["rows"]) == 2
    assert not {r["task_id"] for r in first["rows"]} & {r["task_id"] for r in second["rows"]}
    r = world.client.get("/api/v1/queue", headers=world.user("pharmacist"))
    tag = r.headers["etag"]
    again = world.client.get("/api/v1/queue", headers={**world.user("pharmacist"), "If-None-Match": tag})
    assert again.status_code == 304
    world.client.post("/api/v1/queue/claim", headers=world.user("pharmacist"))
    changed = world.client.get("/api/v1/queue", headers={**world.user("pharmacist"), "If-None-Match": tag})
    assert changed.status_code == 200 and "yaoshi" in {row["claimed_by"] for row in changed.json()["rows"]}


def test_a_modified_prescription_shows_its_versions_answers_and_what_changed(world: World) -> None:
    w = world
    first = post(w, load_fixture(WARFARIN_ASPIRIN))
    task = w.client.post("/api/v1/queue/claim", headers=w.user("pharmacist")).json()
    reason = "华法林与阿司匹林合用出血风险高，请减量并加用胃黏膜保护"
    r = w.client.post(f"/api/v1/tasks/{task['id']}/decision", json={"decision": "return", "reason": reason},
                      headers=w.user("pharmacist"))
    assert r.status_code == 200, r.text
    r = w.client.post(f"/api/v1/tasks/{task['id']}/answer", json={"answer": "modify", "bundle": load_fixture(MODIFIED)},
                      headers=w.his())
    assert r.status_code == 200, r.text
    new_review = r.json()["new_review"]
    assert new_review["previous_review_id"] == first["id"]
    new_task = queue(w)["rows"][0]
    assert new_task["review_id"] == new_review["id"]

    h = w.client.get(f"/api/v1/tasks/{new_task['task_id']}/history", headers=w.user("pharmacist"))
    assert h.status_code == 200, h.text
    body = h.json()
    assert [v["review_id"] for v in body["versions"]] == [first["id"], new_review["id"]]
    old, new = body["versions"]
    assert old["task_status"] == "modified" and old["decision"] == "return" and old["reason"] == reason
    assert old["decided_by"] == "yaoshi" and old["doctor_answer"] == "modify"
    assert new["current"] and not old["current"] and new["task_status"] == "pending"
    assert old["prescription_number"] == "RX202611230538" and new["prescription_number"] == "RX202611230538-M1"
    assert body["patient_identifiers"] == [{"system": "https://his.demo-county.cn/fhir/mrn", "value": "MRN000538"}]
    assert body["changes"] == [
        {"kind": "added", "name": "奥美拉唑", "changes": []},
        {"kind": "changed", "name": "华法林", "changes": [{"field": "dose", "before": "3 mg", "after": "2.5 mg"}]},
    ]
    # The returned version's own history is the same chain, with no changes of its own.
    h_old = w.client.get(f"/api/v1/tasks/{task['id']}/history", headers=w.user("pharmacist")).json()
    assert len(h_old["versions"]) == 2 and h_old["changes"] == [] and h_old["versions"][0]["current"]


def test_an_insisting_doctor_s_reason_is_in_the_history(world: World) -> None:
    w = world
    post(w, load_fixture(WARFARIN_ASPIRIN))
    task = w.client.post("/api/v1/queue/claim", headers=w.user("pharmacist")).json()
    w.client.post(f"/api/v1/tasks/{task['id']}/decision", json={"decision": "return", "reason": "出血风险"},
                  headers=w.user("pharmacist"))
    why = "患者机械瓣膜置换术后，心内科会诊意见需双联抗栓，已监测INR"
    r = w.client.post(f"/api/v1/tasks/{task['id']}/answer", json={"answer": "insist", "reason": why}, headers=w.his())
    assert r.status_code == 200, r.text
    v = w.client.get(f"/api/v1/tasks/{task['id']}/history", headers=w.user("pharmacist")).json()["versions"]
    assert len(v) == 1 and v[0]["doctor_answer"] == "insist" and v[0]["doctor_reason"] == why
    assert v[0]["task_status"] == "double_signed"


def test_claiming_the_task_on_screen_refuses_a_colleague_s_claim(world: World, tmp_path: Any) -> None:
    from audit_engine import auth
    from audit_engine.store.db import make_engine, session_scope

    post(world, load_fixture(WARFARIN_ASPIRIN))
    db = make_engine(world.url)
    with session_scope(db) as s:
        auth.create_user(s, username="yaoshi2", password="pw-yaoshi-2", role="pharmacist", institution_code="LEAD001")
    db.dispose()
    other = world.client.post("/api/v1/auth/token", data={"username": "yaoshi2", "password": "pw-yaoshi-2"}).json()
    tid = queue(world)["rows"][0]["task_id"]
    mine = world.client.post(f"/api/v1/tasks/{tid}/claim", headers=world.user("pharmacist"))
    assert mine.status_code == 200 and mine.json()["claimed_by"] == "yaoshi"
    theirs = world.client.post(f"/api/v1/tasks/{tid}/claim", headers={"Authorization": f"Bearer {other['access_token']}"})
    assert theirs.status_code == 409 and "yaoshi" in theirs.json()["issue"][0]["diagnostics"]
    again = world.client.post(f"/api/v1/tasks/{tid}/claim", headers=world.user("pharmacist"))
    assert again.status_code == 200  # renewing one's own claim
    assert world.client.post(f"/api/v1/tasks/{tid}/claim", headers=world.user("quality")).status_code == 403
    assert world.client.post("/api/v1/tasks/nope/claim", headers=world.user("pharmacist")).status_code == 404
