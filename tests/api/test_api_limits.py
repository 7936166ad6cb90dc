"""Bounded work over HTTP: the order limit (413), the per-review time budget (fail mode),
and ``/health`` answering while a review is in progress."""

from __future__ import annotations

import copy
import json
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from apiworld import SAMPLE_RULEBASE, World, build_world
from dbutil import fresh_database

from audit_engine.settings import get_settings
from audit_engine.store.db import make_engine
from audit_engine.store.models import Prescription, Review

ROOT = Path(__file__).resolve().parents[2]
LARGE_TCM = ROOT / "fixtures" / "fhir" / "limits" / "tcm_large_decoction_60_herbs.json"
SERVICE = "/cds-services/county-prescription-review"


def large_tcm(extra: int = 0) -> dict[str, Any]:
    """The 60-herb 饮片 prescription, with ``extra`` more orders (copies under new ids)."""
    bundle = json.loads(LARGE_TCM.read_text(encoding="utf-8"))
    last = bundle["entry"][-1]
    for k in range(extra):
        more = copy.deepcopy(last)
        more["resource"]["id"] = f"mr-extra-{k}"
        bundle["entry"].append(more)
    return bundle


def order_sign(bundle: dict[str, Any]) -> dict[str, Any]:
    orders = [{"resource": e["resource"]} for e in bundle["entry"] if e["resource"]["resourceType"] == "MedicationRequest"]
    patient = next(e["resource"] for e in bundle["entry"] if e["resource"]["resourceType"] == "Patient")
    return {"hook": "order-sign", "hookInstance": "0d4c5f7e-4d3b-4f7a-8f59-2a9b6c1d3e21",
            "context": {"userId": "Practitioner/doc", "patientId": patient["id"],
                        "draftOrders": {"resourceType": "Bundle", "type": "collection", "entry": orders}},
            "prefetch": {"patient": patient}}


def stored(url: str) -> tuple[int, int]:
    db = make_engine(url)
    try:
        with db.connect() as conn:
            return (int(conn.scalar(sa.select(sa.func.count()).select_from(Prescription)) or 0),
                    int(conn.scalar(sa.select(sa.func.count()).select_from(Review)) or 0))
    finally:
        db.dispose()


@pytest.fixture(autouse=True)
def default_limits(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.delenv("AUDIT_MAX_ORDERS", raising=False)
    get_settings.cache_clear()
    yield
    get_settings.cache_clear()


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def tight_budget_world(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[World]:
    """The real rules network with a review budget of 1 ms: no 60-order review fits in it."""
    for url in fresh_database(request.param, tmp_path):
        yield from build_world(url, tmp_path, real_engine=True, rulebase_path=str(SAMPLE_RULEBASE),
                               review_budget_ms=1)


def test_one_order_beyond_the_limit_is_413_on_the_native_api_and_nothing_is_stored(any_world: World) -> None:
    w = any_world
    r = w.client.post("/api/v1/reviews", json=large_tcm(extra=1), headers=w.his())
    assert r.status_code == 413, r.text
    assert r.headers["content-type"].startswith("application/fhir+json")
    issue = r.json()["issue"][0]
    assert r.json()["resourceType"] == "OperationOutcome" and issue["code"] == "too-costly"
    assert "60" in issue["diagnostics"] and issue["expression"][0].startswith("Bundle.entry[")
    assert stored(w.url) == (0, 0)
    assert w.client.post("/api/v1/reviews", json=large_tcm(), headers=w.his()).status_code == 201


def test_one_order_beyond_the_limit_is_413_on_cds_hooks(world: World) -> None:
    r = world.client.post(SERVICE, json=order_sign(large_tcm(extra=1)), headers=world.his())
    assert r.status_code == 413, r.text
    assert r.json()["issue"][0]["expression"] == ["context.draftOrders.entry[60].resource"]
    assert stored(world.url) == (0, 0)


def test_a_review_past_its_time_budget_goes_to_the_pharmacist_and_records_why(tight_budget_world: World) -> None:
    w = tight_budget_world
    r = w.client.post("/api/v1/reviews", json=large_tcm(), headers=w.his())
    assert r.status_code == 201, r.text
    body = r.json()
    assert body["engine_failed"] is True and body["fail_mode"] == "closed"
    assert body["verdict"] == "recheck" and body["engine_failure"] == "time-budget"
    db = make_engine(w.url)
    try:
        with db.connect() as conn:
            error = conn.scalar(sa.select(Review.engine_error).where(Review.id == body["id"]))
    finally:
        db.dispose()
    assert error is not None and error.startswith("BudgetExceededError") and "1 ms" in error
    claimed = w.client.post("/api/v1/queue/claim", headers=w.user("pharmacist"))
    assert claimed.status_code == 200  # a pharmacist has it


def test_a_review_past_its_time_budget_passes_under_a_fail_open_policy(tight_budget_world: World) -> None:
    from audit_engine.policy import Policy
    from audit_engine.store.db import session_scope
    from audit_engine.store.models import Institution
    from audit_engine.store.policies import set_policy

    w = tight_budget_world
    db = make_engine(w.url)
    with session_scope(db) as s:
        inst = s.scalar(sa.select(Institution.id).where(Institution.code == "TOWN01"))
        set_policy(s, institution_id=inst, policy=Policy(fail_mode="open"))
    db.dispose()
    body = w.client.post("/api/v1/reviews", json=large_tcm(), headers=w.his()).json()
    assert body["verdict"] == "pass" and body["engine_failure"] == "time-budget" and body["fail_mode"] == "open"


def test_the_budget_comes_from_audit_review_budget_ms(monkeypatch: pytest.MonkeyPatch) -> None:
    from audit_engine.settings import Settings, load_settings

    assert Settings(database_url="sqlite://").review_budget_ms == 5000
    monkeypatch.setenv("AUDIT_REVIEW_BUDGET_MS", "750")
    assert load_settings().review_budget_ms == 750


def test_health_answers_while_the_largest_allowed_prescription_is_being_reviewed(world: World) -> None:
    w = world
    w.engine.hold.set()  # the review stays inside the engine until released
    result: dict[str, Any] = {}
    worker = threading.Thread(target=lambda: result.update(
        r=w.client.post("/api/v1/reviews", json=large_tcm(), headers=w.his())))
    worker.start()
    try:
        assert w.engine.entered.wait(30), "the review never reached the engine"
        health = w.client.get("/health")
        assert health.status_code == 200 and health.json()["status"] == "ok"
        assert worker.is_alive() and "r" not in result  # answered while the review was still running
    finally:
        w.engine.hold.clear()
        worker.join(30)
    assert result["r"].status_code == 201


def test_health_shows_a_broken_audit_chain_and_stays_200(any_world: World) -> None:
    from apiworld import load_fixture

    from audit_engine import audit_log, chain_check
    from audit_engine.store.db import is_postgres, session_scope
    from audit_engine.store.models import AuditEntry

    w = any_world
    assert w.client.post("/api/v1/reviews", json=large_tcm(), headers=w.his()).status_code == 201
    r = w.client.post("/api/v1/reviews", json=load_fixture("flagged/interaction_warfarin_aspirin.json"),
                      headers=w.his())
    assert r.status_code == 201 and r.json()["verdict"] == "recheck"
    db = make_engine(w.url)
    try:
        with session_scope(db) as s:
            audit_log.seal(s)  # the worker's sealing (PostgreSQL)
        monitor = chain_check.ChainMonitor()
        assert chain_check.run_check(db, monitor).state == "intact"
        intact = w.client.get("/health").json()["audit_chain"]
        assert intact["status"] == "intact" and intact["verified_seq"] >= 3
        # With the trigger bypassed, the review.created entry's verdict goes from recheck to pass.
        with db.begin() as conn:
            conn.exec_driver_sql("DROP TRIGGER audit_log_no_update" + (" ON audit_log" if is_postgres(db) else ""))
        table = AuditEntry.__table__
        with db.begin() as conn:
            row = conn.execute(sa.select(table).where(table.c.action == "review.created",
                                                      table.c.object_id == r.json()["id"])).one()
            assert row.detail["verdict"] == "recheck"
            conn.execute(sa.update(table).where(table.c.id == row.id)
                         .values(detail={**row.detail, "verdict": "pass"}))
        assert chain_check.run_check(db, monitor).state == "broken"
    finally:
        db.dispose()
    health = w.client.get("/health")
    assert health.status_code == 200 and health.json()["status"] == "ok"
    chain = health.json()["audit_chain"]
    assert chain["status"] == "broken" and chain["first_bad_seq"] == row.chain_seq
    assert "篡改" in chain["problem"]
