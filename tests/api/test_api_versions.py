"""A reused prescription number gets the new content's verdict, over HTTP, on SQLite and PostgreSQL.

The fixtures in fixtures/fhir/versions are one submission each: P-0001 clean then dangerous
with the same number, P-0002 sent to a pharmacist then edited, two prescriptions of one patient
whose HIS numbers draft orders 1, 2, 3 and sends no prescription number, and one order-sign
retried with a new hookInstance.
"""

from __future__ import annotations

import threading

from apiworld import World, load_fixture

SERVICE = "/cds-services/county-prescription-review"


def post(w: World, name: str) -> tuple[int, dict]:
    r = w.client.post("/api/v1/reviews", json=load_fixture(f"versions/{name}.json"), headers=w.his())
    assert r.status_code in (200, 201), r.text
    return r.status_code, r.json()


def test_a_reused_number_with_a_dangerous_drug_added_gets_the_new_verdict(any_world: World) -> None:
    w = any_world
    s1, v1 = post(w, "p0001_v1_simvastatin_alone_clean")
    s2, v2 = post(w, "p0001_v2_clarithromycin_added_same_number_dangerous")
    assert s1 == 201 and v1["verdict"] != "block" and "DDI-TABLE" not in [f["rule_id"] for f in v1["findings"]]
    assert (s2, v2["verdict"], v2["replayed"]) == (201, "block", False)
    assert v2["id"] != v1["id"] and v2["previous_review_id"] == v1["id"]
    assert v2["prescription_identifier"] == v1["prescription_identifier"]
    assert "DDI-TABLE" in [f["rule_id"] for f in v2["findings"]]
    earlier = w.client.get(f"/api/v1/reviews/{v1['id']}", headers=w.his()).json()
    assert earlier["next_review_id"] == v2["id"] and earlier["verdict"] == v1["verdict"]
    # resending the dangerous version replays it: never the earlier clean verdict
    s3, again = post(w, "p0001_v2_clarithromycin_added_same_number_dangerous")
    assert (s3, again["id"], again["verdict"], again["replayed"]) == (200, v2["id"], "block", True)


def test_an_edited_prescription_supersedes_the_task_of_the_earlier_version(any_world: World) -> None:
    w = any_world
    _, v1 = post(w, "p0002_v1_warfarin_aspirin_to_pharmacist")
    assert v1["verdict"] == "recheck" and v1["task"]["status"] == "pending"
    _, v2 = post(w, "p0002_v2_aspirin_removed_same_number")
    assert v2["verdict"] != "recheck" and v2["previous_review_id"] == v1["id"]
    for who in (w.his(), w.user("pharmacist")):  # the HIS and the pharmacist both see it
        earlier = w.client.get(f"/api/v1/reviews/{v1['id']}", headers=who).json()
        assert earlier["outcome"] == "superseded" and earlier["next_review_id"] == v2["id"]
        assert earlier["task"]["status"] == "superseded" and earlier["task"]["next_review_id"] == v2["id"]
        assert earlier["decision"]["outcome"] == "superseded"
    task = w.client.get(f"/api/v1/tasks/{v1['task']['id']}", headers=w.user("pharmacist"))
    assert task.status_code == 200 and task.json()["status"] == "superseded"
    assert w.client.post("/api/v1/queue/claim", headers=w.user("pharmacist")).status_code == 204  # left the queue


def test_draft_orders_numbered_alike_without_a_prescription_number_are_two_prescriptions(any_world: World) -> None:
    w = any_world
    _, first = post(w, "draft_orders_1_2_3_no_number_first_prescription")
    status, second = post(w, "draft_orders_1_2_3_no_number_second_prescription")
    assert first["verdict"] != "block"
    assert (status, second["verdict"], second["replayed"]) == (201, "block", False)
    assert second["id"] != first["id"] and second["previous_review_id"] is None
    assert second["prescription_identifier"] == first["prescription_identifier"]  # the same derived key
    again = w.client.get(f"/api/v1/reviews/{first['id']}", headers=w.his()).json()
    assert again["outcome"] == first["outcome"] and again["next_review_id"] is None


def test_an_order_sign_retried_with_a_new_hook_instance_is_replayed_with_the_same_cards(any_world: World) -> None:
    w = any_world
    first = w.client.post(SERVICE, json=load_fixture("versions/cds_p0003_order_sign.json"), headers=w.his())
    retry = w.client.post(SERVICE, json=load_fixture("versions/cds_p0003_order_sign_retry_new_hook_instance.json"),
                          headers=w.his())
    assert first.status_code == retry.status_code == 200, retry.text
    a, b = first.json(), retry.json()
    assert a["extension"]["review"]["id"] == b["extension"]["review"]["id"]
    assert a["extension"]["review"]["verdict"] == "recheck"
    assert [c["uuid"] for c in a["cards"]] == [c["uuid"] for c in b["cards"]] != []
    assert w.client.post("/api/v1/queue/claim", headers=w.user("pharmacist")).status_code == 200
    assert w.client.post("/api/v1/queue/claim", headers=w.user("pharmacist")).status_code == 204  # one task


def test_concurrent_posts_of_both_versions_give_one_review_per_content(any_world: World) -> None:
    w = any_world
    names = ["p0002_v1_warfarin_aspirin_to_pharmacist", "p0002_v2_aspirin_removed_same_number"] * 3
    barrier = threading.Barrier(len(names))
    results: list[tuple[str, str]] = []
    errors: list[BaseException] = []

    def send(name: str) -> None:
        try:
            barrier.wait()
            results.append((name, post(w, name)[1]["id"]))
        except BaseException as exc:  # surfaced below
            errors.append(exc)

    threads = [threading.Thread(target=send, args=(n,)) for n in names]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    ids = {name: {rid for n, rid in results if n == name} for name in set(names)}
    assert all(len(v) == 1 for v in ids.values()), ids
    v1, v2 = (next(iter(ids[n])) for n in names[:2])
    bodies = [w.client.get(f"/api/v1/reviews/{rid}", headers=w.his()).json() for rid in (v1, v2)]
    assert {b["previous_review_id"] for b in bodies} in ({None, v1}, {None, v2})  # one chain


def test_modifying_a_returned_prescription_may_keep_its_number(world: World) -> None:
    w = world
    _, v1 = post(w, "p0002_v1_warfarin_aspirin_to_pharmacist")
    task = w.client.post("/api/v1/queue/claim", headers=w.user("pharmacist")).json()
    r = w.client.post(f"/api/v1/tasks/{task['id']}/decision", json={"decision": "return", "reason": "出血风险，请停用阿司匹林"},
                      headers=w.user("pharmacist"))
    assert r.status_code == 200, r.text
    unchanged = w.client.post(f"/api/v1/tasks/{task['id']}/answer", headers=w.his(), json={
        "answer": "modify", "bundle": load_fixture("versions/p0002_v1_warfarin_aspirin_to_pharmacist.json")})
    assert unchanged.status_code == 422 and unchanged.json()["resourceType"] == "OperationOutcome"
    answer = w.client.post(f"/api/v1/tasks/{task['id']}/answer", headers=w.his(), json={
        "answer": "modify", "bundle": load_fixture("versions/p0002_v2_aspirin_removed_same_number.json")})
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert body["status"] == "modified" and body["new_review"]["verdict"] != "recheck"
    assert body["new_review"]["previous_review_id"] == v1["id"]
