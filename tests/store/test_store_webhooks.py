"""Webhooks: enqueued with the decision, HMAC-signed, retried with back-off, given up after N."""

from __future__ import annotations

import hashlib
import hmac
import json
from datetime import datetime, timedelta

import pytest
import sqlalchemy as sa
import store_support as testing
from store_support import FakePipeline, medication_bundle

from audit_engine import queue, submission, webhooks
from audit_engine.store.db import session_scope, utcnow
from audit_engine.store.models import WebhookDelivery


class FakeSender:
    """Records every POST; answers with the queued statuses (or raises for None)."""

    def __init__(self, *statuses: int | None) -> None:
        self.statuses = list(statuses)
        self.sent: list[tuple[str, bytes, dict[str, str]]] = []

    def __call__(self, url: str, body: bytes, headers: dict[str, str]) -> int:
        self.sent.append((url, body, headers))
        status = self.statuses.pop(0) if self.statuses else 200
        if status is None:
            raise ConnectionError("connection refused")
        return status


@pytest.fixture
def subscribed(engine, world):
    with session_scope(engine) as s:
        testing.allow_webhook_host(s, institution_id=world.ids["M1"], host="his.m1.example")
        sub, secret = webhooks.create_subscription(s, institution_id=world.ids["M1"], url="https://his.m1.example/hook")
    return sub, secret


def decided_review(engine, world, identifier: str = "RX-HOOK", decision: str = "approve") -> str:
    with session_scope(engine) as s:
        rec = submission.submit_review(s, principal=world.his_m1, payload=medication_bundle(identifier, levels=(6,)),
                                    kind="bundle", engine=None, review_fn=FakePipeline())
    with session_scope(engine) as s:
        task = queue.claim_next(s, principal=world.ph_c1)
        assert task is not None
        queue.decide(s, task_id=task.id, principal=world.ph_c1, decision=decision,  # type: ignore[arg-type]
                     reason=None if decision == "approve" else "剂量过大")
    return rec.id


def deliveries(engine) -> list[WebhookDelivery]:
    with session_scope(engine) as s:
        return list(s.scalars(sa.select(WebhookDelivery).order_by(WebhookDelivery.created_at)))


def test_a_decision_enqueues_one_delivery_per_subscription(engine, world, subscribed) -> None:
    review_id = decided_review(engine, world)
    rows = deliveries(engine)
    assert [(d.review_id, d.status, d.attempts) for d in rows] == [(review_id, "pending", 0)]
    assert rows[0].payload["outcome"] == "pharmacist_pass" and rows[0].payload["prescription_identifier"] == "RX-HOOK"


def test_no_subscription_means_no_delivery(engine, world) -> None:
    decided_review(engine, world)
    assert deliveries(engine) == []


def test_a_rolled_back_decision_announces_nothing(engine, world, subscribed) -> None:
    with session_scope(engine) as s:
        submission.submit_review(s, principal=world.his_m1, payload=medication_bundle("RX-RB", levels=(6,)),
                              kind="bundle", engine=None, review_fn=FakePipeline())
    with pytest.raises(RuntimeError), session_scope(engine) as s:
        task = queue.claim_next(s, principal=world.ph_c1)
        assert task is not None
        queue.decide(s, task_id=task.id, principal=world.ph_c1, decision="approve")
        raise RuntimeError("crash before commit")
    assert deliveries(engine) == []


def test_the_body_is_signed_with_hmac_sha256_of_the_subscription_secret(engine, world, subscribed) -> None:
    _, secret = subscribed
    review_id = decided_review(engine, world)
    sender = FakeSender(200)
    with session_scope(engine) as s:
        report = webhooks.deliver_due(s, sender=sender)
    assert report == webhooks.DeliveryReport(attempted=1, delivered=1)
    url, body, headers = sender.sent[0]
    assert url == "https://his.m1.example/hook"
    expected = "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
    assert headers["X-Audit-Signature"] == expected
    assert webhooks.verify_signature(secret, body, headers["X-Audit-Signature"])
    assert not webhooks.verify_signature(secret, body + b" ", headers["X-Audit-Signature"])
    assert json.loads(body)["review_id"] == review_id
    assert deliveries(engine)[0].status == "delivered"
    with session_scope(engine) as s:  # a delivered one is never sent again
        assert webhooks.deliver_due(s, sender=sender, now=utcnow() + timedelta(days=1)).attempted == 0


def test_failures_back_off_exponentially_and_give_up_after_max_attempts(engine, world, subscribed) -> None:
    decided_review(engine, world)
    sender = FakeSender(500, None, 503, 502)
    now = utcnow()
    gaps: list[timedelta] = []
    row = deliveries(engine)[0]
    while row.status == "pending":
        with session_scope(engine) as s:
            assert webhooks.deliver_due(s, sender=sender, now=now, max_attempts=4).attempted == 1
        row = deliveries(engine)[0]
        if row.status == "pending":
            gaps.append(row.next_attempt_at - now)
            with session_scope(engine) as s:  # not a moment early
                early = row.next_attempt_at - timedelta(seconds=1)
                assert webhooks.deliver_due(s, sender=sender, now=early, max_attempts=4).attempted == 0
            now = row.next_attempt_at
    assert gaps == [timedelta(seconds=10), timedelta(seconds=20), timedelta(seconds=40)]
    assert row.status == "failed" and row.attempts == 4 and len(sender.sent) == 4
    assert row.last_status == 502 and "HTTP 502" in (row.last_error or "")


def test_backoff_doubles_and_is_capped() -> None:
    assert [webhooks.backoff(n).total_seconds() for n in range(1, 6)] == [10, 20, 40, 80, 160]
    assert webhooks.backoff(30) == timedelta(hours=1)


def test_a_retry_happens_only_when_due_and_then_succeeds(engine, world, subscribed) -> None:
    decided_review(engine, world)
    sender = FakeSender(None, 204)
    start = datetime(2030, 1, 1, 8, 0)
    with session_scope(engine) as s:
        webhooks.deliver_due(s, sender=sender, now=start)
    row = deliveries(engine)[0]
    assert (row.status, row.attempts, row.next_attempt_at) == ("pending", 1, start + webhooks.backoff(1))
    assert "ConnectionError" in (row.last_error or "")
    with session_scope(engine) as s:
        assert webhooks.deliver_due(s, sender=sender, now=start + timedelta(seconds=9)).attempted == 0
        assert webhooks.deliver_due(s, sender=sender, now=start + timedelta(seconds=10)).delivered == 1


def test_subscription_urls_must_be_http(engine, world) -> None:
    from audit_engine.errors import InvalidRequestError

    with pytest.raises(InvalidRequestError), session_scope(engine) as s:
        webhooks.create_subscription(s, institution_id=world.ids["M1"], url="ftp://x")


def test_the_worker_sends_with_no_transaction_open(engine, world, subscribed, db_url) -> None:
    from audit_engine.store.db import make_engine

    decided_review(engine, world)
    impatient = make_engine(db_url, connect_args={"timeout": 0.0, "check_same_thread": False}) if db_url.startswith(
        "sqlite") else make_engine(db_url)
    writes: list[str] = []

    def sender(url: str, body: bytes, headers: dict[str, str]) -> int:
        # a review arriving while the HIS is slow to answer must not wait for the webhook
        with session_scope(impatient) as s:
            testing.allow_webhook_host(s, institution_id=world.ids["M2"], host="his.m2.example")
            webhooks.create_subscription(s, institution_id=world.ids["M2"], url="https://his.m2.example/hook")
        writes.append(headers["X-Audit-Delivery"])
        return 200

    try:
        report = webhooks.deliver_due_in_steps(engine, sender=sender)
    finally:
        impatient.dispose()
    assert report.delivered == 1 and len(writes) == 1
    assert deliveries(engine)[0].status == "delivered"


def test_a_delivery_whose_sender_died_is_retried_after_the_in_flight_window(engine, world, subscribed) -> None:
    decided_review(engine, world)
    start = utcnow()
    with session_scope(engine) as s:
        claimed = webhooks.claim_due(s, now=start)  # ... and the process dies before recording
    assert len(claimed) == 1
    sender = FakeSender(200)
    with session_scope(engine) as s:
        assert webhooks.deliver_due(s, sender=sender, now=start + webhooks.IN_FLIGHT - timedelta(seconds=1)).attempted == 0
    with session_scope(engine) as s:
        report = webhooks.deliver_due(s, sender=sender, now=start + webhooks.IN_FLIGHT)
    assert report.delivered == 1 and sender.sent[0][2]["X-Audit-Delivery"] == claimed[0].id
    assert deliveries(engine)[0].attempts == 2
