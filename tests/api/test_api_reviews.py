"""The native review API: contract shape, idempotency, FHIR output, scoping, long-poll."""

from __future__ import annotations

import threading
import time
from pathlib import Path

from apiworld import World, load_fixture

SIMVA_CLARI = "flagged/interaction_simvastatin_clarithromycin.json"
WARFARIN_ASPIRIN = "flagged/interaction_warfarin_aspirin.json"


def test_health_reports_the_serving_rulebase_version(world: World) -> None:
    r = world.client.get("/health")
    assert r.status_code == 200
    assert r.json() == {"status": "ok", "rulebase": {"version": world.engine.version},
                        "audit_chain": {"status": "unchecked", "verified_seq": 0}}


def test_review_returns_verdict_findings_and_rulebase_version(any_world: World) -> None:
    w = any_world
    r = w.client.post("/api/v1/reviews", json=load_fixture(SIMVA_CLARI), headers=w.his())
    assert r.status_code == 201, r.text
    body = r.json()
    assert set(body) >= {"id", "verdict", "findings", "rulebase_version"}
    assert body["verdict"] == "block"
    assert body["rulebase_version"] == w.engine.version
    f = body["findings"][0]
    assert {"rule_id", "level", "category", "message", "implicated"} <= set(f)
    assert f["implicated"] == ["MedicationRequest/mr-simvastatin", "MedicationRequest/mr-clarithromycin"]


def test_posting_the_same_prescription_twice_returns_the_same_review_and_one_task(any_world: World) -> None:
    w = any_world
    bundle = load_fixture(WARFARIN_ASPIRIN)
    first = w.client.post("/api/v1/reviews", json=bundle, headers=w.his())
    second = w.client.post("/api/v1/reviews", json=bundle, headers=w.his())
    assert first.status_code == 201 and second.status_code == 200
    assert first.json()["id"] == second.json()["id"]
    assert first.json()["verdict"] == "recheck"
    claimed = w.client.post("/api/v1/queue/claim", headers=w.user("pharmacist"))
    assert claimed.status_code == 200
    assert w.client.post("/api/v1/queue/claim", headers=w.user("pharmacist")).status_code == 204


def test_fhir_format_gives_detected_issues_with_severity_and_implicated(world: World) -> None:
    w = world
    r = w.client.post("/api/v1/reviews", json=load_fixture(SIMVA_CLARI), headers=w.his() | {
        "Accept": "application/fhir+json"})
    assert r.headers["content-type"].startswith("application/fhir+json")
    issue = r.json()["entry"][0]["resource"]
    assert issue["resourceType"] == "DetectedIssue"
    assert issue["severity"] == "high"
    assert issue["implicated"][0]["reference"] == "MedicationRequest/mr-simvastatin"
    assert issue["mitigation"][0]["action"]["text"]
    again = w.client.get(f"/api/v1/reviews/{r.json()['id']}?_format=fhir", headers=w.his())
    assert again.json()["entry"][0]["resource"]["code"]["coding"][0]["code"] == "DDI-TABLE"


def test_requests_without_valid_credentials_get_401_operation_outcome(world: World) -> None:
    w = world
    for headers in ({}, {"Authorization": "Bearer nonsense"}, {"Authorization": "Basic abc"}):
        r = w.client.post("/api/v1/reviews", json=load_fixture(SIMVA_CLARI), headers=headers)
        assert r.status_code == 401
        assert r.json()["resourceType"] == "OperationOutcome"
    assert w.client.get("/api/v1/reviews/x").status_code == 401
    assert w.client.post("/api/v1/queue/claim").status_code == 401


def test_an_institution_sees_only_its_own_reviews_and_the_centre_pharmacists_see_members(world: World) -> None:
    w = world
    rid = w.client.post("/api/v1/reviews", json=load_fixture(SIMVA_CLARI), headers=w.his()).json()["id"]
    assert w.client.get(f"/api/v1/reviews/{rid}", headers=w.his()).status_code == 200
    assert w.client.get(f"/api/v1/reviews/{rid}", headers=w.his(w.other_member_key)).status_code == 404
    # The centre's HIS key is one institution's software: it does not see members' prescriptions.
    assert w.client.get(f"/api/v1/reviews/{rid}", headers=w.his(w.centre_key)).status_code == 404
    assert w.client.get(f"/api/v1/reviews/{rid}", headers=w.user("pharmacist")).status_code == 200
    assert w.client.get(f"/api/v1/reviews/{rid}", headers=w.user("quality")).status_code == 200


def test_reads_do_not_grow_the_history_the_his_receives_but_are_recorded_apart(any_world: World) -> None:
    import sqlalchemy as sa

    from audit_engine.store.db import make_engine
    from audit_engine.store.models import ReviewAccess

    w = any_world
    rid = w.client.post("/api/v1/reviews", json=load_fixture(WARFARIN_ASPIRIN), headers=w.his()).json()["id"]
    first = w.client.get(f"/api/v1/reviews/{rid}", headers=w.his()).json()["history"]
    for _ in range(25):
        assert w.client.get(f"/api/v1/reviews/{rid}", headers=w.user("quality")).status_code == 200
    last = w.client.get(f"/api/v1/reviews/{rid}", headers=w.his()).json()["history"]
    assert last == first and [h["action"] for h in last] == ["review.created", "task.created"]
    db = make_engine(w.url)
    try:
        with db.connect() as conn:
            rows = conn.execute(sa.select(ReviewAccess.actor_name, ReviewAccess.action)
                                .where(ReviewAccess.review_id == rid)).all()
    finally:
        db.dispose()
    assert len(rows) == 27 and rows.count(("zhikong", "read")) == 25


def test_long_poll_returns_as_soon_as_the_pharmacist_decides(world: World) -> None:
    w = world
    rid = w.client.post("/api/v1/reviews", json=load_fixture(WARFARIN_ASPIRIN), headers=w.his()).json()["id"]
    task = w.client.post("/api/v1/queue/claim", headers=w.user("pharmacist")).json()
    result: dict[str, object] = {}

    def poll() -> None:
        r = w.client.get(f"/api/v1/reviews/{rid}?wait=20", headers=w.his())
        result["body"] = r.json()

    t = threading.Thread(target=poll)
    t.start()
    time.sleep(0.3)
    assert "body" not in result  # still waiting: no decision yet
    d = w.client.post(f"/api/v1/tasks/{task['id']}/decision", json={"decision": "approve"},
                      headers=w.user("pharmacist"))
    assert d.status_code == 200, d.text
    t.join(15)
    body = result["body"]
    assert isinstance(body, dict)
    assert body["decision"]["decision"] == "approve"


def test_an_engine_failure_answers_by_the_fail_closed_policy_not_a_500(world: World) -> None:
    w = world
    w.engine.fail = True
    r = w.client.post("/api/v1/reviews", json=load_fixture(SIMVA_CLARI), headers=w.his())
    assert r.status_code == 201
    body = r.json()
    assert body["verdict"] == "recheck"
    assert body["engine_failed"] is True and body["fail_mode"] == "closed"
    assert "Traceback" not in r.text


def test_health_is_503_until_the_service_is_ready_and_when_the_rulebase_fails(tmp_path: Path) -> None:
    from fastapi.testclient import TestClient

    from api.main import create_app
    from audit_engine.settings import Settings
    from audit_engine.store.db import upgrade_schema

    url = f"sqlite:///{tmp_path / 'h.sqlite'}"
    upgrade_schema(url)
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "bad.rules").write_text("规则 {", encoding="utf-8")
    app = create_app(Settings(database_url=url, rulebase_path=str(broken), rulebase_store_dir=str(tmp_path / "rb")))
    not_started = TestClient(app)  # no lifespan: nothing loaded yet
    assert not_started.get("/health").status_code == 503
    with TestClient(app) as client:
        r = client.get("/health")
        assert r.status_code == 503 and r.json()["status"] == "error" and "bad.rules" in r.json()["error"]


def test_an_engine_failure_under_a_fail_open_policy_passes_and_says_so(world: World) -> None:
    import sqlalchemy as sa

    from audit_engine.policy import Policy
    from audit_engine.store.db import make_engine, session_scope
    from audit_engine.store.models import Institution
    from audit_engine.store.policies import set_policy

    db = make_engine(world.url)
    with session_scope(db) as s:
        inst = s.scalar(sa.select(Institution.id).where(Institution.code == "TOWN01"))
        set_policy(s, institution_id=inst, policy=Policy(fail_mode="open"))
    db.dispose()
    world.engine.fail = True
    r = world.client.post("/api/v1/reviews", json=load_fixture(SIMVA_CLARI), headers=world.his())
    assert r.status_code == 201
    assert r.json()["verdict"] == "pass" and r.json()["engine_failed"] is True and r.json()["fail_mode"] == "open"


def test_the_doctor_explains_an_explain_verdict_through_the_native_api(world: World) -> None:
    w = world
    r = w.client.post("/api/v1/reviews", json=load_fixture("flagged/interaction_clopidogrel_omeprazole.json"),
                      headers=w.his())
    assert r.json()["verdict"] == "explain" and r.json()["outcome"] == "awaiting_reason"
    empty = w.client.post(f"/api/v1/reviews/{r.json()['id']}/explanation", json={"reason": ""}, headers=w.his())
    assert empty.status_code == 422 and empty.json()["issue"][0]["expression"] == ["reason"]
    ok = w.client.post(f"/api/v1/reviews/{r.json()['id']}/explanation", json={"reason": "已换用泮托拉唑评估"},
                       headers=w.his())
    assert ok.status_code == 200 and ok.json()["outcome"] == "explained"
    other = w.client.post(f"/api/v1/reviews/{r.json()['id']}/explanation", json={"reason": "x"},
                          headers=w.his(w.other_member_key))
    assert other.status_code == 404


def test_an_explanation_names_only_a_rule_among_the_reviews_findings(world: World) -> None:
    w = world
    body = w.client.post("/api/v1/reviews", json=load_fixture("flagged/interaction_clopidogrel_omeprazole.json"),
                         headers=w.his()).json()
    rid, rule = body["id"], body["findings"][0]["rule_id"]
    bad = w.client.post(f"/api/v1/reviews/{rid}/explanation", json={"reason": "已告知", "rule_id": "NO-SUCH-RULE"},
                        headers=w.his())
    assert bad.status_code == 422 and bad.json()["issue"][0]["expression"] == ["rule_id"]
    assert w.client.get(f"/api/v1/reviews/{rid}", headers=w.his()).json()["outcome"] == "awaiting_reason"
    ok = w.client.post(f"/api/v1/reviews/{rid}/explanation", json={"reason": "患者既往使用耐受", "rule_id": rule},
                       headers=w.his())
    assert ok.status_code == 200 and ok.json()["outcome"] == "explained"
