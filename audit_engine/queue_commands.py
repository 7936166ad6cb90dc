"""The queue's use cases as the workbench and the HIS call them: claim, read, decide, answer.

Each takes a unit of work and owns its transaction (``with uow as s:``); the state machine
itself, with its checks, locks and audit entries, is ``audit_engine.queue``.
"""

from __future__ import annotations

from typing import Literal

from audit_engine import queue
from audit_engine.auth import Principal
from audit_engine.store.records import ReviewRecord, TaskRecord
from audit_engine.store.reviews import get_review
from audit_engine.unit_of_work import UnitOfWork


def claim(uow: UnitOfWork, *, principal: Principal,
          lease_seconds: int) -> tuple[TaskRecord, ReviewRecord | None] | None:
    """Claim the next task for a pharmacist: the task and its review (with the facts), or None
    when the queue is empty. The claim is committed before the review is read."""
    with uow as s:
        task = queue.claim_next(s, principal=principal, lease_seconds=lease_seconds)
    if task is None:
        return None
    return task, review_of(uow, task, principal)


def claim_task(uow: UnitOfWork, *, task_id: str, principal: Principal, lease_seconds: int) -> TaskRecord:
    """Claim one named task (or renew one's own claim on it)."""
    with uow as s:
        return queue.claim(s, task_id=task_id, principal=principal, lease_seconds=lease_seconds)


def review_of(uow: UnitOfWork, task: TaskRecord, principal: Principal) -> ReviewRecord | None:
    """A task's review with the facts (the pharmacist needs the patient and the drugs beside the
    findings); the read is recorded."""
    with uow as s:
        return get_review(s, review_id=task.review_id, principal=principal, with_facts=True)


def task(uow: UnitOfWork, *, task_id: str, principal: Principal) -> TaskRecord | None:
    """The task, or None when absent or not visible to ``principal``."""
    with uow as s:
        return queue.get_task(s, task_id=task_id, principal=principal)


def tasks(uow: UnitOfWork, *, principal: Principal, statuses: tuple[str, ...] | None,
          limit: int) -> list[TaskRecord]:
    """The tasks the principal may see, in queue order."""
    with uow as s:
        return queue.list_tasks(s, principal=principal, statuses=statuses, limit=limit)


def decide(uow: UnitOfWork, *, task_id: str, principal: Principal,
           decision: Literal["approve", "reject", "return"], reason: str | None) -> TaskRecord:
    """A pharmacist's decision on a task they hold (reject and return need a reason)."""
    with uow as s:
        return queue.decide(s, task_id=task_id, principal=principal, decision=decision, reason=reason)


def insist(uow: UnitOfWork, *, task_id: str, principal: Principal, reason: str | None) -> TaskRecord:
    """The doctor keeps a returned prescription, with a reason (双签)."""
    with uow as s:
        return queue.doctor_answer(s, task_id=task_id, principal=principal, kind="insist", reason=reason)
