"""Webhooks: tell an institution's HIS about a pharmacist's (or the timeout's) decision.

A delivery row is written in the same transaction as the decision, so a decision is
never lost and never announced unless committed. ``deliver_due`` (run by the worker)
POSTs the JSON body with ``X-Audit-Signature: sha256=<hex HMAC-SHA256 of the body>`` keyed
by the subscription's secret, and retries failures with exponential back-off until it
gives up after ``max_attempts``. Due rows are taken ``FOR UPDATE SKIP LOCKED``, so several
workers never send the same delivery at the same time.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import secrets
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa
from sqlalchemy.orm import Session

from audit_engine.errors import InvalidRequestError, NotFoundError
from audit_engine.store.db import utcnow
from audit_engine.store.models import Prescription, WebhookDelivery, WebhookSubscription

if TYPE_CHECKING:
    from audit_engine.store.models import Review, Task

SIGNATURE_HEADER = "X-Audit-Signature"
MAX_ATTEMPTS = 8
BASE_DELAY = timedelta(seconds=10)
MAX_DELAY = timedelta(hours=1)
IN_FLIGHT = timedelta(minutes=2)  # a claimed delivery is hidden this long while being sent

# (url, body, headers) -> HTTP status; raises on a network failure.
Sender = Callable[[str, bytes, dict[str, str]], int]


@dataclass(frozen=True, slots=True)
class SubscriptionRecord:
    id: int
    institution_id: int
    url: str
    active: bool
    created_at: datetime


@dataclass(frozen=True, slots=True)
class DeliveryReport:
    """What one ``deliver_due`` pass did."""

    attempted: int = 0
    delivered: int = 0
    retrying: int = 0
    failed: int = 0


def sign(secret: str, body: bytes) -> str:
    """The signature header value for ``body``: ``sha256=<hex HMAC-SHA256>``."""
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def verify_signature(secret: str, body: bytes, header: str) -> bool:
    """What a receiving HIS does: recompute and compare in constant time."""
    return hmac.compare_digest(sign(secret, body), header)


def backoff(attempts: int) -> timedelta:
    """Delay before retry number ``attempts`` (1-based): 10 s, 20 s, 40 s … capped at 1 h."""
    return min(BASE_DELAY * (2 ** max(0, attempts - 1)), MAX_DELAY)


def body_of(payload: dict[str, Any]) -> bytes:
    return json.dumps(payload, ensure_ascii=False, sort_keys=True, separators=(",", ":")).encode()


# --------------------------------------------------------------------------- subscriptions
def create_subscription(
    s: Session, *, institution_id: int, url: str, secret: str | None = None
) -> tuple[SubscriptionRecord, str]:
    """Subscribe an institution's endpoint; returns it with the signing secret (generated
    when not given; shown to the integrator once)."""
    if not url.startswith(("http://", "https://")):
        raise InvalidRequestError("WebhookSubscription.url", f"须为 http(s) 地址：{url!r}")
    key = secret or secrets.token_urlsafe(32)
    row = WebhookSubscription(
        institution_id=institution_id, url=url, secret=key, active=True, created_at=utcnow()
    )
    s.add(row)
    s.flush()
    return _sub(row), key


def _sub(row: WebhookSubscription) -> SubscriptionRecord:
    return SubscriptionRecord(row.id, row.institution_id, row.url, row.active, row.created_at)


def list_subscriptions(s: Session, *, institution_id: int) -> list[SubscriptionRecord]:
    rows = s.scalars(
        sa.select(WebhookSubscription)
        .where(WebhookSubscription.institution_id == institution_id, WebhookSubscription.active)
        .order_by(WebhookSubscription.id)
    )
    return [_sub(r) for r in rows]


def delete_subscription(s: Session, *, subscription_id: int, institution_id: int) -> None:
    """Deactivate a subscription (its delivery history stays)."""
    row = s.get(WebhookSubscription, subscription_id)
    if row is None or row.institution_id != institution_id:
        raise NotFoundError(f"WebhookSubscription/{subscription_id}", "没有这个订阅")
    row.active = False
    s.flush()


# --------------------------------------------------------------------------- enqueue
def enqueue(
    s: Session,
    *,
    review_id: str,
    institution_id: int,
    event: str,
    payload: dict[str, Any],
    now: datetime | None = None,
) -> int:
    """One pending delivery per active subscription of the institution; returns how many."""
    at = now or utcnow()
    subs = s.scalars(
        sa.select(WebhookSubscription.id).where(
            WebhookSubscription.institution_id == institution_id, WebhookSubscription.active
        )
    ).all()
    for sub_id in subs:
        s.add(
            WebhookDelivery(
                subscription_id=sub_id,
                review_id=review_id,
                event=event,
                payload=payload,
                status="pending",
                attempts=0,
                next_attempt_at=at,
                created_at=at,
            )
        )
    s.flush()
    return len(subs)


def enqueue_decision(s: Session, *, review: Review, task: Task, now: datetime) -> int:
    """Announce a task's decision (approve / reject / return / timeout / escalation)."""
    identifier = s.scalar(sa.select(Prescription.identifier).where(Prescription.id == review.prescription_id))
    payload = {
        "event": "review.decided",
        "review_id": review.id,
        "task_id": task.id,
        "prescription_identifier": identifier,
        "verdict": review.verdict,
        "outcome": review.outcome,
        "decision": task.decision,
        "reason": task.reason,
        "decided_by": task.decided_by,
        "decided_at": (task.decided_at or now).isoformat(),
        "next_review_id": task.next_review_id,  # the new version, when superseded
    }
    return enqueue(
        s,
        review_id=review.id,
        institution_id=review.institution_id,
        event="review.decided",
        payload=payload,
        now=now,
    )


# --------------------------------------------------------------------------- delivery
def httpx_sender(timeout_s: float = 5.0) -> Sender:
    """The real sender: one POST with httpx."""
    import httpx

    def send(url: str, body: bytes, headers: dict[str, str]) -> int:
        return httpx.post(url, content=body, headers=headers, timeout=timeout_s).status_code

    return send


@dataclass(frozen=True, slots=True)
class Outgoing:
    """One claimed delivery, ready to send with no database transaction open."""

    id: str
    url: str
    body: bytes
    headers: dict[str, str]
    attempts: int
    active: bool


def claim_due(s: Session, *, now: datetime, limit: int = 50) -> list[Outgoing]:
    """Take due deliveries (SKIP LOCKED), count the attempt and hide them for ``IN_FLIGHT``:
    if the sender dies before recording the result, the delivery is simply retried then."""
    rows = s.scalars(
        sa.select(WebhookDelivery)
        .where(WebhookDelivery.status == "pending", WebhookDelivery.next_attempt_at <= now)
        .order_by(WebhookDelivery.next_attempt_at)
        .limit(limit)
        .with_for_update(skip_locked=True)
        .execution_options(populate_existing=True)
    ).all()
    out: list[Outgoing] = []
    for row in rows:
        sub = s.get(WebhookSubscription, row.subscription_id)
        assert sub is not None
        body = body_of(row.payload)
        row.attempts += 1
        row.next_attempt_at = now + IN_FLIGHT
        headers = {
            "Content-Type": "application/json",
            SIGNATURE_HEADER: sign(sub.secret, body),
            "X-Audit-Event": row.event,
            "X-Audit-Delivery": row.id,  # receivers deduplicate on it: delivery is at least once
        }
        out.append(Outgoing(row.id, sub.url, body, headers, row.attempts, sub.active))
    s.flush()
    return out


def send(item: Outgoing, sender: Sender) -> tuple[int | None, str | None]:
    """POST one delivery: (HTTP status, error or None when it was a 2xx)."""
    try:
        status: int | None = sender(item.url, item.body, item.headers)
    except Exception as exc:  # any network failure is a failed attempt, retried later
        return None, f"{type(exc).__name__}: {exc}"
    return status, None if status is not None and 200 <= status < 300 else f"HTTP {status}"


def record_result(
    s: Session, *, item: Outgoing, status: int | None, error: str | None, now: datetime, max_attempts: int
) -> str:
    """Store what one attempt gave; returns the delivery's new status."""
    row = s.get(WebhookDelivery, item.id, populate_existing=True)
    assert row is not None
    row.last_status, row.last_error = status, error
    if error is None:
        row.status, row.delivered_at = "delivered", now
    elif item.attempts >= max_attempts or not item.active:
        row.status = "failed"
    else:
        row.status, row.next_attempt_at = "pending", now + backoff(item.attempts)
    s.flush()
    return row.status


def _report(outcomes: list[str]) -> DeliveryReport:
    return DeliveryReport(
        attempted=len(outcomes),
        delivered=outcomes.count("delivered"),
        retrying=outcomes.count("pending"),
        failed=outcomes.count("failed"),
    )


def deliver_due(
    s: Session,
    *,
    now: datetime | None = None,
    sender: Sender,
    limit: int = 50,
    max_attempts: int = MAX_ATTEMPTS,
) -> DeliveryReport:
    """Send every due delivery inside the caller's transaction; 2xx marks it delivered,
    anything else schedules a retry after :func:`backoff`, and the ``max_attempts``-th
    failure marks it failed. (The worker uses :func:`deliver_due_in_steps` instead, which
    holds no transaction while it waits on the network.)"""
    at = now or utcnow()
    outcomes = [
        record_result(s, item=item, status=st, error=err, now=at, max_attempts=max_attempts)
        for item in claim_due(s, now=at, limit=limit)
        for st, err in [send(item, sender)]
    ]
    return _report(outcomes)


def deliver_due_in_steps(
    engine: sa.Engine,
    *,
    now: datetime | None = None,
    sender: Sender,
    limit: int = 50,
    max_attempts: int = MAX_ATTEMPTS,
) -> DeliveryReport:
    """Claim (one short transaction), send with no transaction open, record each result
    (one short transaction each): a slow HIS never holds the SQLite write lock or row locks."""
    from audit_engine.store.db import session_scope

    at = now or utcnow()
    with session_scope(engine) as s:
        items = claim_due(s, now=at, limit=limit)
    outcomes: list[str] = []
    for item in items:
        status, error = send(item, sender)
        with session_scope(engine) as s:
            outcomes.append(
                record_result(s, item=item, status=status, error=error, now=at, max_attempts=max_attempts)
            )
    return _report(outcomes)
