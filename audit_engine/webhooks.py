"""Webhooks: tell an institution's HIS about a pharmacist's (or the timeout's) decision.

A delivery row is written in the same transaction as the decision, so a decision is
never lost and never announced unless committed. ``deliver_due`` (run by the worker)
POSTs the JSON body with ``X-Audit-Signature: sha256=<hex HMAC-SHA256 of the body>`` keyed
by the subscription's secret, and retries failures with exponential back-off until it
gives up after ``max_attempts``. Due rows are taken ``FOR UPDATE SKIP LOCKED``, so several
workers never send the same delivery at the same time.

Where a webhook may point: an http(s) URL whose host an admin put on the institution's
allowlist (:func:`allow_host`; county HIS servers live on private addresses, so private
ranges are not banned as such). Loopback, unspecified, link-local and multicast addresses
and ``localhost`` are always refused, and so is the address the service itself answers on.
An institution has at most :data:`MAX_ACTIVE_SUBSCRIPTIONS` active subscriptions.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import json
import re
import secrets
import socket
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa
from sqlalchemy.orm import Session

from audit_engine import audit_log
from audit_engine.errors import InvalidRequestError, LimitExceededError, NotFoundError
from audit_engine.store.db import utcnow
from audit_engine.store.models import (
    Institution,
    Prescription,
    WebhookAllowedHost,
    WebhookDelivery,
    WebhookSubscription,
)

if TYPE_CHECKING:
    from audit_engine.auth import Principal
    from audit_engine.store.models import Review, Task

SIGNATURE_HEADER = "X-Audit-Signature"
MAX_ATTEMPTS = 8
BASE_DELAY = timedelta(seconds=10)
MAX_DELAY = timedelta(hours=1)
IN_FLIGHT = timedelta(minutes=2)  # a claimed delivery is hidden this long while being sent
MAX_ACTIVE_SUBSCRIPTIONS = 20  # per institution: one decision queues at most this many deliveries
_HOST_NAME = re.compile(r"^(?=.{1,253}$)[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?(?:\.[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?)*$")
# An address the service listens on, as (host, port): never a webhook destination.
Address = tuple[str, int]

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


# --------------------------------------------------------------------------- where a webhook may point
def normalise_host(host: str, *, where: str = "host") -> str:
    """A host as the allowlist stores it: a lower-case DNS name or a canonical IP literal
    (``[::1]`` → ``::1``); InvalidRequestError for anything else."""
    text = host.strip().lower().rstrip(".")
    if text.startswith("[") and text.endswith("]"):
        text = text[1:-1]
    try:
        return str(ipaddress.ip_address(text))
    except ValueError:
        pass
    if not _HOST_NAME.match(text):
        raise InvalidRequestError(where, f"不是合法的主机名或 IP 地址：{host!r}")
    return text


def always_refused(host: str) -> str | None:
    """Why ``host`` (normalised) can never receive webhooks, or None: the service's own
    machine (loopback, ``localhost``), unspecified, link-local (cloud metadata) and multicast."""
    if host == "localhost" or host.endswith(".localhost"):
        return "localhost 指向本服务所在主机"
    try:
        ip = ipaddress.ip_address(host)
    except ValueError:
        return None
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    if ip.is_loopback:
        return "回环地址指向本服务所在主机"
    if ip.is_unspecified:
        return "未指定地址（0.0.0.0 / ::）"
    if ip.is_link_local:
        return "链路本地地址（含云主机元数据地址）"
    if ip.is_multicast:
        return "组播地址"
    return None


def _split_url(url: str) -> tuple[str, int]:
    """(normalised host, port) of an http(s) URL, or InvalidRequestError naming the problem."""
    from urllib.parse import urlsplit

    where = "WebhookSubscription.url"
    try:
        parts = urlsplit(url.strip())
        port = parts.port
    except ValueError as exc:
        raise InvalidRequestError(where, f"地址不合法：{exc}") from None
    if parts.scheme not in ("http", "https"):
        raise InvalidRequestError(where, f"须为 http(s) 地址：{url!r}")
    if not parts.hostname:
        raise InvalidRequestError(where, f"地址缺少主机：{url!r}")
    if parts.username is not None or parts.password is not None:
        raise InvalidRequestError(where, "地址中不能含用户名或密码（用订阅密钥签名验证）")
    host = normalise_host(parts.hostname, where=where)
    return host, port if port is not None else (443 if parts.scheme == "https" else 80)


def check_destination(
    s: Session, *, institution_id: int, url: str, own_addresses: frozenset[Address] = frozenset()
) -> str:
    """The URL's normalised host when ``url`` may receive this institution's webhooks;
    InvalidRequestError (422) saying why not otherwise."""
    host, port = _split_url(url)
    where = "WebhookSubscription.url"
    reason = always_refused(host)
    if reason is not None:
        raise InvalidRequestError(where, f"不能回调 {host}：{reason}")
    if (host, port) in own_addresses:
        raise InvalidRequestError(where, f"不能回调本服务自己的地址 {host}:{port}")
    allowed = s.scalar(
        sa.select(WebhookAllowedHost.id).where(
            WebhookAllowedHost.institution_id == institution_id, WebhookAllowedHost.host == host
        )
    )
    if allowed is None:
        raise InvalidRequestError(
            where, f"主机 {host} 不在本机构的回调白名单中：请管理员用 audit-engine webhook-host add 添加"
        )
    return host


# --------------------------------------------------------------------------- the allowlist (admin)
@dataclass(frozen=True, slots=True)
class AllowedHost:
    institution_code: str
    host: str
    added_by: str
    created_at: datetime


def _institution(s: Session, code: str, *, lock: bool = False) -> Institution:
    q = sa.select(Institution).where(Institution.code == code)
    inst = s.scalar(q.with_for_update() if lock else q)
    if inst is None:
        raise NotFoundError(f"Institution/{code}", "没有这个机构")
    return inst


def allowed_hosts(s: Session, *, institution_code: str) -> list[AllowedHost]:
    inst = _institution(s, institution_code)
    rows = s.scalars(
        sa.select(WebhookAllowedHost)
        .where(WebhookAllowedHost.institution_id == inst.id)
        .order_by(WebhookAllowedHost.host)
    )
    return [AllowedHost(inst.code, r.host, r.added_by, r.created_at) for r in rows]


def allow_host(s: Session, *, institution_code: str, host: str, principal: Principal) -> AllowedHost:
    """Put ``host`` on the institution's allowlist (audited); adding it twice is harmless."""
    from audit_engine.auth import authorize

    authorize(principal, "webhook_host.manage")
    name = normalise_host(host)
    reason = always_refused(name)
    if reason is not None:
        raise InvalidRequestError("host", f"不能加入白名单：{reason}")
    inst = _institution(s, institution_code)
    row = s.scalar(
        sa.select(WebhookAllowedHost).where(
            WebhookAllowedHost.institution_id == inst.id, WebhookAllowedHost.host == name
        )
    )
    if row is None:
        row = WebhookAllowedHost(institution_id=inst.id, host=name, added_by=principal.actor, created_at=utcnow())
        s.add(row)
        s.flush()
        audit_log.append(s, actor=audit_log.Actor.of(principal), action="webhook_host.allowed",
                         object_type="institution", object_id=inst.code, institution_id=inst.id,
                         detail={"host": name})
    return AllowedHost(inst.code, row.host, row.added_by, row.created_at)


def remove_host(s: Session, *, institution_code: str, host: str, principal: Principal) -> int:
    """Take ``host`` off the allowlist (audited) and deactivate the institution's active
    subscriptions to it; returns how many were deactivated."""
    from audit_engine.auth import authorize

    authorize(principal, "webhook_host.manage")
    name = normalise_host(host)
    inst = _institution(s, institution_code)
    row = s.scalar(
        sa.select(WebhookAllowedHost).where(
            WebhookAllowedHost.institution_id == inst.id, WebhookAllowedHost.host == name
        )
    )
    if row is None:
        raise NotFoundError(f"Institution/{inst.code}/webhook-hosts/{name}", "白名单中没有这个主机")
    s.delete(row)
    stopped = 0
    for sub in s.scalars(
        sa.select(WebhookSubscription).where(
            WebhookSubscription.institution_id == inst.id, WebhookSubscription.active
        )
    ):
        if _split_url(sub.url)[0] == name:
            sub.active = False
            stopped += 1
    s.flush()
    audit_log.append(s, actor=audit_log.Actor.of(principal), action="webhook_host.removed",
                     object_type="institution", object_id=inst.code, institution_id=inst.id,
                     detail={"host": name, "subscriptions_deactivated": stopped})
    return stopped


# --------------------------------------------------------------------------- subscriptions
def create_subscription(
    s: Session,
    *,
    institution_id: int,
    url: str,
    secret: str | None = None,
    own_addresses: frozenset[Address] = frozenset(),
) -> tuple[SubscriptionRecord, str]:
    """Subscribe an institution's endpoint; returns it with the signing secret (generated
    when not given; shown to the integrator once).

    The URL must pass :func:`check_destination` (422 otherwise), and the institution may
    hold at most :data:`MAX_ACTIVE_SUBSCRIPTIONS` active subscriptions (LimitExceededError,
    409). The institution's row is locked while counting, so concurrent creates cannot
    pass the cap together."""
    check_destination(s, institution_id=institution_id, url=url, own_addresses=own_addresses)
    s.execute(sa.select(Institution.id).where(Institution.id == institution_id).with_for_update())
    active = s.scalar(
        sa.select(sa.func.count()).select_from(WebhookSubscription).where(
            WebhookSubscription.institution_id == institution_id, WebhookSubscription.active
        )
    )
    if (active or 0) >= MAX_ACTIVE_SUBSCRIPTIONS:
        raise LimitExceededError(
            "WebhookSubscription",
            f"本机构已有 {active} 个有效订阅（上限 {MAX_ACTIVE_SUBSCRIPTIONS}）：请先删除不用的订阅",
        )
    key = secret or secrets.token_urlsafe(32)
    row = WebhookSubscription(
        institution_id=institution_id, url=url.strip(), secret=key, active=True, created_at=utcnow()
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
def resolved_refusal(url: str) -> str | None:
    """Why ``url``'s host, as DNS resolves it now, must not be called (a name on the
    allowlist that has come to point at loopback or link-local), or None."""
    host, port = _split_url(url)
    try:
        infos = socket.getaddrinfo(host, port, proto=socket.IPPROTO_TCP)
    except OSError:
        return None  # the POST fails by itself and is retried
    for info in infos:
        reason = always_refused(normalise_host(str(info[4][0])))
        if reason is not None:
            return f"{host} 解析为 {info[4][0]}：{reason}"
    return None


def httpx_sender(timeout_s: float = 5.0) -> Sender:
    """The real sender: one POST with httpx, refused when the host resolves to this machine."""
    import httpx

    def send(url: str, body: bytes, headers: dict[str, str]) -> int:
        refusal = resolved_refusal(url)
        if refusal is not None:
            raise ConnectionRefusedError(refusal)
        return httpx.post(url, content=body, headers=headers, timeout=timeout_s,
                          follow_redirects=False).status_code

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
