"""The pharmacist queue: the recheck state machine, claims with leases, and timeouts.

States (``store.records``)::

    pending ──claim──▶ claimed ──approve──▶ approved            (final)
       ▲                 │ ├────reject───▶ rejected             (final)
       └──release/lease──┘ └────return───▶ returned ──modify──▶ modified       (final)
    pending ──timeout──▶ timeout_passed (final) | escalated        ├─insist──▶ double_signed  (final)
    escalated ──claim──▶ claimed                                   └─no answer─▶ abandoned    (final)
    pending | claimed | escalated ──new version of the prescription──▶ superseded (final)

A timeout passes a task only when the policy allows it for the task's highest finding
level (``policy.timeout_passes``); otherwise it escalates. When the HIS resends the
prescription number with different content, the earlier version's open task is
superseded: it leaves the queue and names the new review (``next_review_id``).

Every transition goes through :func:`_move`, which refuses anything not in
``TRANSITIONS`` with a TransitionError naming the task, before changing anything. Rows are
read ``FOR UPDATE`` (claims: ``SKIP LOCKED``) on PostgreSQL, and the ORM's version column
makes every UPDATE conditional, so two processes can never both move the same task.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from datetime import datetime, timedelta
from typing import Literal

import sqlalchemy as sa
from sqlalchemy.orm import Session
from sqlalchemy.orm.exc import StaleDataError

from audit_engine import audit_log, webhooks
from audit_engine.auth import Principal, authorize, can_see, visible_institution_ids
from audit_engine.errors import InvalidRequestError, MissingReasonError, NotFoundError, TransitionError
from audit_engine.policy import Policy, timeout_passes
from audit_engine.store.db import read_scope, utcnow
from audit_engine.store.models import Institution, Review, Task
from audit_engine.store.records import (
    ABANDONED,
    APPROVED,
    CLAIMED,
    DOUBLE_SIGNED,
    ESCALATED,
    MODIFIED,
    PENDING,
    REJECTED,
    RETURNED,
    SUPERSEDED,
    TIMEOUT_PASSED,
    TaskRecord,
)
from audit_engine.store.reviews import review_status

DEFAULT_LEASE_SECONDS = 300

# status -> event -> new status
TRANSITIONS: dict[str, dict[str, str]] = {
    PENDING: {"claim": CLAIMED, "timeout_pass": TIMEOUT_PASSED, "escalate": ESCALATED, "supersede": SUPERSEDED},
    ESCALATED: {"claim": CLAIMED, "supersede": SUPERSEDED},
    CLAIMED: {
        "claim": CLAIMED,  # only once the holder's lease has expired
        "renew": CLAIMED,
        "release": PENDING,  # or back to escalated, see _release_target
        "approve": APPROVED,
        "reject": REJECTED,
        "return": RETURNED,
        "timeout_pass": TIMEOUT_PASSED,  # only once the holder's lease has expired
        "escalate": ESCALATED,
        "supersede": SUPERSEDED,
    },
    RETURNED: {"modify": MODIFIED, "insist": DOUBLE_SIGNED, "abandon": ABANDONED},
}
# What the review's outcome becomes after each event (events not listed leave it alone).
REVIEW_OUTCOME = {
    "approve": "pharmacist_pass",
    "reject": "rejected",
    "return": "returned",
    "timeout_pass": "timeout_pass",
    "escalate": "escalated",
    "modify": "modified",
    "insist": "double_signed",
    "abandon": "abandoned",
    "supersede": "superseded",
}
# Events the HIS is told about by webhook.
NOTIFY = frozenset({"approve", "reject", "return", "timeout_pass", "escalate", "supersede"})
EVENT_ZH = {
    "claim": "认领",
    "renew": "续租",
    "release": "释放",
    "approve": "通过",
    "reject": "拒绝",
    "return": "打回",
    "timeout_pass": "超时通过",
    "escalate": "超时升级",
    "modify": "修改重审",
    "insist": "双签",
    "abandon": "关闭",
    "supersede": "被新版本取代",
}


def _check(task: Task, event: str) -> None:
    """Refuse an event the task's status does not allow, before anything is touched."""
    if event not in TRANSITIONS.get(task.status, {}):
        raise TransitionError(
            f"Task/{task.id}", f"任务状态为 {task.status}，不能{EVENT_ZH.get(event, event)}"
        )


def _move(
    s: Session,
    task: Task,
    event: str,
    *,
    actor: audit_log.Actor,
    now: datetime,
    detail: dict[str, object] | None = None,
) -> None:
    """Apply one state-machine event to a locked, fresh task row (or raise, changing nothing)."""
    _check(task, event)
    target = TRANSITIONS[task.status][event]
    if event == "release" and task.escalated:
        target = ESCALATED
    previous = task.status
    task.status = target
    outcome = REVIEW_OUTCOME.get(event)
    review = s.get(Review, task.review_id)
    assert review is not None
    if outcome is not None:
        review.outcome = outcome
        if event in NOTIFY and event != "escalate":
            review.decided_at = now
    try:
        s.flush()
    except StaleDataError as exc:  # someone moved it between our read and our write
        raise TransitionError(f"Task/{task.id}", "任务已被他人处理，请刷新") from exc
    audit_log.append(
        s,
        actor=actor,
        action=f"task.{event}",
        object_type="task",
        object_id=task.id,
        institution_id=task.institution_id,
        detail={"from": previous, "to": target, **(detail or {})},
        at=now,
    )
    if event in NOTIFY:
        webhooks.enqueue_decision(s, review=review, task=task, now=now)


def _record(s: Session, task: Task) -> TaskRecord:
    code = s.scalar(sa.select(Institution.code).where(Institution.id == task.institution_id))
    return TaskRecord.of(task, institution_code=code)


def _locked_task(s: Session, task_id: str, principal: Principal | None) -> Task:
    task = s.get(Task, task_id, with_for_update=True, populate_existing=True)
    if task is None or (principal is not None and not can_see(s, principal, task.institution_id)):
        raise NotFoundError(f"Task/{task_id}", "没有这个任务")
    return task


def _claimable(now: datetime) -> sa.ColumnElement[bool]:
    return sa.or_(
        Task.status.in_((PENDING, ESCALATED)),
        sa.and_(Task.status == CLAIMED, Task.lease_expires_at < now),
    )


# --------------------------------------------------------------------------- pharmacist actions
def claim_next(
    s: Session,
    *,
    principal: Principal,
    lease_seconds: int = DEFAULT_LEASE_SECONDS,
    now: datetime | None = None,
) -> TaskRecord | None:
    """Claim the most urgent task the pharmacist may see, or None when the queue is empty.

    Order: escalated first, then emergency (急诊), then highest level, then longest waiting.
    A task whose holder's lease ran out is claimable again. On PostgreSQL the candidate row
    is locked with ``FOR UPDATE SKIP LOCKED``, so concurrent claimers take different tasks.
    """
    authorize(principal, "queue.work")
    at = now or utcnow()
    q = (
        sa.select(Task)
        .where(_claimable(at))
        .order_by(
            Task.escalated.desc(), Task.emergency.desc(), Task.max_level.desc(), Task.created_at, Task.id
        )
        .limit(1)
        .with_for_update(skip_locked=True)
        .execution_options(populate_existing=True)
    )
    visible = visible_institution_ids(s, principal)
    if visible is not None:
        q = q.where(Task.institution_id.in_(visible))
    # PostgreSQL: SKIP LOCKED hands each claimer a different row. SQLite: BEGIN IMMEDIATE
    # makes claims serial. Either way the version column turns a lost race into an error.
    task = s.scalar(q)
    if task is None:
        return None
    expired_holder = task.claimed_by if task.status == CLAIMED else None
    task.claimed_by = principal.actor
    task.claimed_at = at
    task.lease_expires_at = at + timedelta(seconds=lease_seconds)
    _move(
        s,
        task,
        "claim",
        actor=audit_log.Actor.of(principal),
        now=at,
        detail={"lease_seconds": lease_seconds, "expired_holder": expired_holder},
    )
    return _record(s, task)


def claim(
    s: Session,
    *,
    task_id: str,
    principal: Principal,
    lease_seconds: int = DEFAULT_LEASE_SECONDS,
    now: datetime | None = None,
) -> TaskRecord:
    """Claim one given task (the one the pharmacist is looking at), if it is claimable:
    pending, escalated, or held by someone whose lease ran out. Claiming a task one already
    holds renews the lease. Raises TransitionError naming the holder otherwise."""
    authorize(principal, "queue.work")
    at = now or utcnow()
    task = _locked_task(s, task_id, principal)
    _check(task, "claim")
    if task.status == CLAIMED and task.claimed_by != principal.actor and not (
        task.lease_expires_at is not None and task.lease_expires_at < at
    ):
        raise TransitionError(f"Task/{task.id}", f"任务已由 {task.claimed_by} 领取")
    expired_holder = task.claimed_by if task.status == CLAIMED and task.claimed_by != principal.actor else None
    task.claimed_by = principal.actor
    task.claimed_at = at
    task.lease_expires_at = at + timedelta(seconds=lease_seconds)
    _move(s, task, "claim", actor=audit_log.Actor.of(principal), now=at,
          detail={"lease_seconds": lease_seconds, "expired_holder": expired_holder})
    return _record(s, task)


def _require_holder(task: Task, principal: Principal) -> None:
    if task.status == CLAIMED and task.claimed_by != principal.actor:
        raise TransitionError(f"Task/{task.id}", f"任务由 {task.claimed_by} 认领，不能代为处理")


def renew_lease(
    s: Session,
    *,
    task_id: str,
    principal: Principal,
    lease_seconds: int = DEFAULT_LEASE_SECONDS,
    now: datetime | None = None,
) -> TaskRecord:
    """Extend the caller's claim (the workbench calls this while the pharmacist is active)."""
    authorize(principal, "queue.work")
    at = now or utcnow()
    task = _locked_task(s, task_id, principal)
    _check(task, "renew")
    _require_holder(task, principal)
    task.lease_expires_at = at + timedelta(seconds=lease_seconds)
    _move(s, task, "renew", actor=audit_log.Actor.of(principal), now=at)
    return _record(s, task)


def release(s: Session, *, task_id: str, principal: Principal, now: datetime | None = None) -> TaskRecord:
    """Give a claimed task back to the queue."""
    authorize(principal, "queue.work")
    at = now or utcnow()
    task = _locked_task(s, task_id, principal)
    _check(task, "release")
    _require_holder(task, principal)
    task.claimed_by = task.claimed_at = task.lease_expires_at = None
    _move(s, task, "release", actor=audit_log.Actor.of(principal), now=at)
    return _record(s, task)


def require_reason(reason: str | None, location: str, message: str) -> None:
    """The one check of the decisions and answers that need a reason (MissingReasonError, 422)."""
    if not (reason and reason.strip()):
        raise MissingReasonError(location, message)


def decide(
    s: Session,
    *,
    task_id: str,
    principal: Principal,
    decision: Literal["approve", "reject", "return"],
    reason: str | None = None,
    now: datetime | None = None,
) -> TaskRecord:
    """The pharmacist's decision on a task they hold. Reject and return need a reason.

    Raises TransitionError (task not claimed by the caller, already decided …) and
    InvalidRequestError (unknown decision, missing reason); nothing changes then.
    """
    authorize(principal, "queue.work")
    if decision not in ("approve", "reject", "return"):
        raise InvalidRequestError(
            f"Task/{task_id}", f"未知决定 {decision!r}（应为 approve、reject 或 return）"
        )
    if decision != "approve":
        require_reason(reason, f"Task/{task_id}", "拒绝或打回必须填写理由")
    at = now or utcnow()
    task = _locked_task(s, task_id, principal)
    _check(task, decision)
    _require_holder(task, principal)
    if task.status == CLAIMED:
        task.decision, task.reason = decision, reason
        task.decided_by, task.decided_at = principal.actor, at
        task.lease_expires_at = None
        if decision == "return":
            task.answer_due_at = at + timedelta(hours=_policy_of(s, task).answer_hours)
        else:
            task.closed_at = at
    _move(s, task, decision, actor=audit_log.Actor.of(principal), now=at, detail={"reason": reason})
    return _record(s, task)


def _policy_of(s: Session, task: Task) -> Policy:
    review = s.get(Review, task.review_id)
    return Policy.from_snapshot(review.policy) if review is not None else Policy()


# --------------------------------------------------------------------------- the doctor's answer
def doctor_answer(
    s: Session,
    *,
    task_id: str,
    principal: Principal,
    kind: Literal["modify", "insist"],
    reason: str | None = None,
    new_review_id: str | None = None,
    now: datetime | None = None,
) -> TaskRecord:
    """The doctor answers a returned prescription: ``modify`` (with the new review of the
    modified prescription) or ``insist`` with a reason (双签, double signature)."""
    authorize(principal, "review.answer")
    at = now or utcnow()
    if kind == "insist":  # before anything is locked, as for a pharmacist's decision
        require_reason(reason, f"Task/{task_id}", "坚持原处方（双签）必须说明理由")
    task = _locked_task(s, task_id, principal)
    if kind in ("insist", "modify"):
        _check(task, kind)
    if kind == "modify":
        new = s.get(Review, new_review_id) if new_review_id else None
        if new is None or new.institution_id != task.institution_id:
            raise InvalidRequestError(f"Task/{task_id}", "修改处方须提供同一机构的新审核 new_review_id")
        if new.previous_review_id is None:
            new.previous_review_id = task.review_id
        task.next_review_id = new.id
    elif kind != "insist":
        raise InvalidRequestError(f"Task/{task_id}", f"未知答复 {kind!r}（应为 modify 或 insist）")
    if task.status == RETURNED:
        task.doctor_answer, task.doctor_reason, task.closed_at = kind, reason, at
    _move(
        s,
        task,
        kind,
        actor=audit_log.Actor.of(principal),
        now=at,
        detail={"reason": reason, "new_review": new_review_id},
    )
    return _record(s, task)


def link_modified_review(
    s: Session, *, previous: Review, new_review: Review, principal: Principal, now: datetime
) -> None:
    """Called by ``submit_review(replaces_review_id=...)``: a modified prescription answers
    the returned task of the review it replaces (if that task awaits the doctor), or the
    system's own return (自动打回) or request for a reason — so statistics can count how
    often doctors modify after an intervention."""
    task = s.scalar(sa.select(Task).where(Task.review_id == previous.id).with_for_update())
    if task is not None and task.status == RETURNED:
        doctor_answer(
            s, task_id=task.id, principal=principal, kind="modify", new_review_id=new_review.id, now=now
        )
    elif task is None and previous.outcome in ("auto_return", "awaiting_reason"):
        before = previous.outcome
        previous.outcome = "modified"
        s.flush()
        audit_log.append(
            s,
            actor=audit_log.Actor.of(principal),
            action="review.modified",
            object_type="review",
            object_id=previous.id,
            institution_id=previous.institution_id,
            detail={"from": before, "new_review": new_review.id},
            at=now,
        )


def supersede_version(
    s: Session, *, earlier: Review, new_review: Review, principal: Principal, now: datetime
) -> None:
    """Called by ``submit_review`` when the HIS resends a prescription number with different
    content: ``new_review`` is the new version of ``earlier`` (the latest stored version).

    An open task of the earlier version (pending, claimed or escalated) is closed as
    ``superseded`` and leaves the queue: a pharmacist must not decide on content the doctor
    has since changed. A prescription waiting for the doctor (returned by a pharmacist,
    returned by the system, or awaiting a reason) has been answered by modification, as
    with ``replaces_review_id``. A decided earlier version keeps its decision, and its
    history records that a newer version exists.
    """
    task = s.scalar(
        sa.select(Task).where(Task.review_id == earlier.id).with_for_update().execution_options(populate_existing=True)
    )
    if task is not None and task.status in (PENDING, CLAIMED, ESCALATED):
        task.next_review_id = new_review.id
        task.claimed_by = task.claimed_at = task.lease_expires_at = None
        task.decided_by, task.decided_at, task.closed_at = "system", now, now
        _move(s, task, "supersede", actor=audit_log.Actor.of(principal), now=now,
              detail={"new_review": new_review.id})
        return
    if (task is not None and task.status == RETURNED) or (
        task is None and earlier.outcome in ("auto_return", "awaiting_reason")
    ):
        link_modified_review(s, previous=earlier, new_review=new_review, principal=principal, now=now)
        return
    audit_log.append(
        s,
        actor=audit_log.Actor.of(principal),
        action="review.new_version",
        object_type="review",
        object_id=earlier.id,
        institution_id=earlier.institution_id,
        detail={"new_review": new_review.id, "outcome": earlier.outcome},
        at=now,
    )


# --------------------------------------------------------------------------- background work
def release_expired_leases(s: Session, *, now: datetime | None = None, limit: int = 500) -> int:
    """Put claimed tasks whose lease ran out back in the queue; returns how many."""
    at = now or utcnow()
    tasks = s.scalars(
        sa.select(Task)
        .where(Task.status == CLAIMED, Task.lease_expires_at < at)
        .order_by(Task.lease_expires_at)
        .limit(limit)
        .with_for_update(skip_locked=True)
        .execution_options(populate_existing=True)
    ).all()
    for task in tasks:
        holder = task.claimed_by
        task.claimed_by = task.claimed_at = task.lease_expires_at = None
        _move(s, task, "release", actor=audit_log.SYSTEM, now=at, detail={"expired_holder": holder})
    return len(tasks)


def apply_timeouts(s: Session, *, now: datetime | None = None, limit: int = 200) -> int:
    """Fire every due timeout once: pending past its deadline → 超时通过 when the review's
    policy allows it for the task's highest finding level (``policy.timeout_passes``), else
    escalate; returned past the doctor's answer time → abandoned. Rows are taken with SKIP
    LOCKED, so concurrent workers split the work and never fire one twice."""
    at = now or utcnow()
    due = s.scalars(
        sa.select(Task)
        .where(
            sa.or_(
                sa.and_(Task.status == PENDING, Task.deadline_at <= at),
                sa.and_(Task.status == CLAIMED, Task.lease_expires_at < at, Task.deadline_at <= at),
                sa.and_(Task.status == RETURNED, Task.answer_due_at <= at),
            )
        )
        .order_by(Task.deadline_at)
        .limit(limit)
        .with_for_update(skip_locked=True)
        .execution_options(populate_existing=True)
    ).all()
    for task in due:
        if task.status == RETURNED:
            task.closed_at = at
            _move(s, task, "abandon", actor=audit_log.SYSTEM, now=at)
            continue
        review = s.get(Review, task.review_id)
        policy = Policy.from_snapshot(review.policy) if review is not None else Policy()
        engine_failed = bool(review is not None and review.engine_failed)
        task.claimed_by = task.claimed_at = task.lease_expires_at = None
        if timeout_passes(policy, max_level=task.max_level, engine_failed=engine_failed):
            task.decision, task.decided_by, task.decided_at, task.closed_at = "timeout_pass", "system", at, at
            _move(
                s,
                task,
                "timeout_pass",
                actor=audit_log.SYSTEM,
                now=at,
                detail={"deadline_at": str(task.deadline_at)},
            )
        else:
            task.escalated, task.deadline_at = True, None
            why = (
                "timeout_action" if policy.timeout_action != "pass"
                else "engine_failed" if task.max_level <= policy.timeout_pass_max_level
                else "max_level"
            )
            _move(
                s,
                task,
                "escalate",
                actor=audit_log.SYSTEM,
                now=at,
                detail={"because": why, "max_level": task.max_level,
                        "timeout_pass_max_level": policy.timeout_pass_max_level},
            )
    return len(due)


# --------------------------------------------------------------------------- reading
def get_task(s: Session, *, task_id: str, principal: Principal) -> TaskRecord | None:
    task = s.get(Task, task_id)
    if task is None or not can_see(s, principal, task.institution_id):
        return None
    return _record(s, task)


def list_tasks(
    s: Session, *, principal: Principal, statuses: tuple[str, ...] | None = None, limit: int = 100
) -> list[TaskRecord]:
    """Tasks the principal may see in queue order (default: the open ones)."""
    q = (
        sa.select(Task)
        .where(Task.status.in_(statuses or (PENDING, ESCALATED, CLAIMED, RETURNED)))
        .order_by(
            Task.escalated.desc(), Task.emergency.desc(), Task.max_level.desc(), Task.created_at, Task.id
        )
        .limit(max(1, min(limit, 1000)))
    )
    visible = visible_institution_ids(s, principal)
    if visible is not None:
        q = q.where(Task.institution_id.in_(visible))
    return [_record(s, t) for t in s.scalars(q)]


def decision_status(engine: sa.Engine, *, review_id: str) -> tuple[str, bool] | None:
    """(outcome, decided) of a review in a read transaction of its own, so each poll sees
    what any process committed since; None for an unknown review. Blocking."""
    with read_scope(engine) as s:
        return review_status(s, review_id=review_id)


async def await_decision(
    engine: sa.Engine,
    *,
    review_id: str,
    timeout_s: float,
    poll_s: float = 0.05,
    max_poll_s: float = 0.5,
    stop: Callable[[], Awaitable[bool]] | None = None,
) -> tuple[str, bool] | None:
    """The long-poll: wait until the review is decided or ``timeout_s`` passes, polling the
    database (a decision may be made by any process), every ``poll_s`` at first and backing
    off gently to ``max_poll_s``. ``stop`` (e.g. "has the client gone?") ends the wait early.
    Returns the last (outcome, decided), or None for an unknown review. Each poll runs in a
    worker thread, so the event loop is never blocked."""
    from anyio import to_thread

    deadline = time.monotonic() + max(0.0, timeout_s)
    interval = poll_s
    while True:
        status = await to_thread.run_sync(lambda: decision_status(engine, review_id=review_id))
        remaining = deadline - time.monotonic()
        if status is None or status[1] or remaining <= 0 or (stop is not None and await stop()):
            return status
        await asyncio.sleep(min(interval, remaining))
        interval = min(interval * 1.5, max(max_poll_s, poll_s))


def wait_for_decision(
    engine: sa.Engine, *, review_id: str, timeout_s: float, poll_s: float = 0.2
) -> tuple[str, bool] | None:
    """:func:`await_decision` for code outside an event loop (blocking: call it from a worker thread)."""
    return asyncio.run(await_decision(engine, review_id=review_id, timeout_s=timeout_s, poll_s=poll_s,
                                      max_poll_s=poll_s))
