"""The pharmacist queue over HTTP: roles, claim, decide, FHIR Task, doctor answers, webhooks."""

from __future__ import annotations

import copy
import json

from apiworld import World, load_fixture

WARFARIN_ASPIRIN = "flagged/interaction_warfarin_aspirin.json"


def submit_recheck(w: World) -> str:
    r = w.client.post("/api/v1/reviews", json=load_fixture(WARFARIN_ASPIRIN), headers=w.his())
    assert r.json()["verdict"] == "recheck"
    return str(r.json()["id"])


def test_claim_needs_the_pharmacist_role(world: World) -> None:
    w = world
    for headers in (w.his(), w.user("quality"), w.user("admin")):
        r = w.client.post("/api/v1/queue/claim", headers=headers)
        assert r.status_code == 403 and r.json()["resourceType"] == "OperationOutcome"


def test_claim_returns_the_task_with_its_review_then_204_when_empty(world: World) -> None:
    w = world
    rid = submit_recheck(w)
    r = w.client.post("/api/v1/queue/claim", headers=w.user("pharmacist"))
    assert r.status_code == 200
    task = r.json()
    assert task["review_id"] == rid and task["status"] == "claimed"
    assert task["review"]["findings"][0]["rule_id"] == "DDI-WARFARIN-ASPIRIN"
    assert w.client.post("/api/v1/queue/claim", headers=w.user("pharmacist")).status_code == 204


def test_task_is_available_as_a_fhir_task(world: World) -> None:
    w = world
    submit_recheck(w)
    task = w.client.post("/api/v1/queue/claim", headers=w.user("pharmacist")).json()
    r = w.client.get(f"/api/v1/tasks/{task['id']}?_format=fhir", headers=w.user("pharmacist"))
    assert r.headers["content-type"].startswith("application/fhir+json")
    fhir = r.json()
    assert fhir["resourceType"] == "Task" and fhir["status"] == "in-progress" and fhir["intent"] == "order"


def test_reject_without_reason_is_refused_with_the_field_named(world: World) -> None:
    w = world
    submit_recheck(w)
    task = w.client.post("/api/v1/queue/claim", headers=w.user("pharmacist")).json()
    r = w.client.post(f"/api/v1/tasks/{task['id']}/decision", json={"decision": "reject"},
                      headers=w.user("pharmacist"))
    assert r.status_code == 422 and r.json()["issue"][0]["expression"] == ["reason"]
    bad = w.client.post(f"/api/v1/tasks/{task['id']}/decision", json={"decision": "maybe"},
                        headers=w.user("pharmacist"))
    assert bad.status_code == 422 and bad.json()["issue"][0]["expression"] == ["decision"]


def test_deciding_twice_is_a_conflict_not_a_500(world: World) -> None:
    w = world
    submit_recheck(w)
    task = w.client.post("/api/v1/queue/claim", headers=w.user("pharmacist")).json()
    ok = w.client.post(f"/api/v1/tasks/{task['id']}/decision", json={"decision": "approve"},
                       headers=w.user("pharmacist"))
    assert ok.status_code == 200
    again = w.client.post(f"/api/v1/tasks/{task['id']}/decision", json={"decision": "approve"},
                          headers=w.user("pharmacist"))
    assert 400 <= again.status_code < 500


def test_doctor_insists_with_a_reason_after_a_return_double_sign(world: World) -> None:
    w = world
    rid = submit_recheck(w)
    task = w.client.post("/api/v1/queue/claim", headers=w.user("pharmacist")).json()
    w.client.post(f"/api/v1/tasks/{task['id']}/decision", json={"decision": "return", "reason": "出血风险"},
                  headers=w.user("pharmacist"))
    missing = w.client.post(f"/api/v1/tasks/{task['id']}/answer", json={"answer": "insist"}, headers=w.his())
    assert missing.status_code == 422
    r = w.client.post(f"/api/v1/tasks/{task['id']}/answer", json={"answer": "insist", "reason": "已监测INR"},
                      headers=w.his())
    assert r.status_code == 200, r.text
    assert r.json()["status"] == "double_signed"
    assert w.client.get(f"/api/v1/reviews/{rid}", headers=w.his()).json()["outcome"] == "double_signed"


def test_doctor_modifies_a_returned_prescription_into_a_new_linked_review(world: World) -> None:
    w = world
    rid = submit_recheck(w)
    task = w.client.post("/api/v1/queue/claim", headers=w.user("pharmacist")).json()
    w.client.post(f"/api/v1/tasks/{task['id']}/decision", json={"decision": "return", "reason": "换药"},
                  headers=w.user("pharmacist"))
    modified = copy.deepcopy(load_fixture(WARFARIN_ASPIRIN))
    modified["entry"] = [e for e in modified["entry"]
                         if "aspirin" not in e["resource"].get("id", "")]
    modified["identifier"]["value"] += "-M1"  # a new number works as well as a new version of the old one
    for e in modified["entry"]:
        if "groupIdentifier" in e["resource"]:
            e["resource"]["groupIdentifier"]["value"] += "-M1"
    r = w.client.post(f"/api/v1/tasks/{task['id']}/answer", json={"answer": "modify", "bundle": modified},
                      headers=w.his())
    assert r.status_code == 200, r.text
    new = r.json()["new_review"]
    assert new["previous_review_id"] == rid and new["id"] != rid
    assert r.json()["status"] == "modified"


def test_webhook_subscriptions_can_be_created_listed_and_deleted(world: World) -> None:
    w = world
    r = w.client.post("/api/v1/subscriptions", json={"url": "https://his.example.cn/cb"}, headers=w.his())
    assert r.status_code == 201 and len(r.json()["secret"]) >= 16
    listed = w.client.get("/api/v1/subscriptions", headers=w.his()).json()["subscriptions"]
    assert [s["url"] for s in listed] == ["https://his.example.cn/cb"] and "secret" not in listed[0]
    assert w.client.get("/api/v1/subscriptions", headers=w.his(w.other_member_key)).json()["subscriptions"] == []
    assert w.client.delete(f"/api/v1/subscriptions/{listed[0]['id']}", headers=w.his(w.other_member_key)).status_code == 404
    assert w.client.delete(f"/api/v1/subscriptions/{listed[0]['id']}", headers=w.his()).status_code == 204
    bad = w.client.post("/api/v1/subscriptions", json={"url": "ftp://x"}, headers=w.his())
    assert bad.status_code == 422 and bad.json()["issue"][0]["expression"] == ["url"]


def test_a_decision_reaches_the_subscribed_his_signed_with_its_secret(world: World) -> None:
    from audit_engine import webhooks
    from audit_engine.store.db import make_engine
    from audit_engine.worker import tick

    w = world
    sub = w.client.post("/api/v1/subscriptions", json={"url": "https://his.example.cn/cb"}, headers=w.his()).json()
    rid = submit_recheck(w)
    task = w.client.post("/api/v1/queue/claim", headers=w.user("pharmacist")).json()
    w.client.post(f"/api/v1/tasks/{task['id']}/decision", json={"decision": "reject", "reason": "出血风险"},
                  headers=w.user("pharmacist"))
    sent: list[tuple[str, bytes, dict[str, str]]] = []

    def sender(url: str, body: bytes, headers: dict[str, str]) -> int:
        sent.append((url, body, headers))
        return 200

    db = make_engine(w.url)
    tick(db, sender=sender)
    tick(db, sender=sender)  # delivered once, not again
    db.dispose()
    assert len(sent) == 1
    url, body, headers = sent[0]
    assert url == "https://his.example.cn/cb"
    assert webhooks.verify_signature(sub["secret"], body, headers[webhooks.SIGNATURE_HEADER])
    payload = json.loads(body)
    assert payload["review_id"] == rid and payload["decision"] == "reject"
