"""Frozen views of stored reviews and tasks: what the store hands to the API layer.

ORM rows never leave ``audit_engine.store``/``queue``; routes get these records, which do
not change under them and need no open session.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from audit_engine.audit_log import HistoryEntry
from audit_engine.findings import Finding
from audit_engine.store.models import FindingRow, Review, Task

# Task statuses. A task ends in exactly one FINAL status.
PENDING, CLAIMED, RETURNED, ESCALATED = "pending", "claimed", "returned", "escalated"
APPROVED, REJECTED, MODIFIED, DOUBLE_SIGNED = "approved", "rejected", "modified", "double_signed"
TIMEOUT_PASSED, ABANDONED, SUPERSEDED = "timeout_passed", "abandoned", "superseded"
OPEN_STATUSES = frozenset({PENDING, CLAIMED, RETURNED, ESCALATED})
FINAL_STATUSES = frozenset({APPROVED, REJECTED, MODIFIED, DOUBLE_SIGNED, TIMEOUT_PASSED, ABANDONED, SUPERSEDED})

# Review outcomes (DOMAIN.md: 系统通过 / 人工通过 / 超时通过 / 打回 / 双签 / 自动打回 ...).
OUTCOME_ZH = {
    "system_pass": "系统通过",
    "awaiting_reason": "待医生说明理由",
    "explained": "医生已说明理由",
    "pending": "待药师审核",
    "pharmacist_pass": "人工通过",
    "rejected": "药师拒绝",
    "returned": "打回",
    "modified": "已修改重审",
    "double_signed": "双签",
    "timeout_pass": "超时通过",
    "escalated": "超时升级",
    "auto_return": "自动打回",
    "abandoned": "打回后未答复",
    "superseded": "已被新版本取代",
}
# Outcomes after which the HIS has its answer (long-poll returns, webhooks fire).
DECIDED_OUTCOMES = frozenset(OUTCOME_ZH) - {"pending", "escalated"}


@dataclass(frozen=True, slots=True)
class TaskRecord:
    """The pharmacist work item of one review, as the queue sees it."""

    id: str
    review_id: str
    institution_id: int
    institution_code: str | None
    status: str
    final: bool
    emergency: bool
    escalated: bool
    max_level: int
    created_at: datetime
    deadline_at: datetime | None
    claimed_by: str | None
    claimed_at: datetime | None
    lease_expires_at: datetime | None
    decision: str | None
    reason: str | None
    decided_by: str | None
    decided_at: datetime | None
    answer_due_at: datetime | None
    doctor_answer: str | None
    doctor_reason: str | None
    next_review_id: str | None
    closed_at: datetime | None

    @classmethod
    def of(cls, t: Task, *, institution_code: str | None = None) -> TaskRecord:
        return cls(
            id=t.id,
            review_id=t.review_id,
            institution_id=t.institution_id,
            institution_code=institution_code,
            status=t.status,
            final=t.status in FINAL_STATUSES,
            emergency=t.emergency,
            escalated=t.escalated,
            max_level=t.max_level,
            created_at=t.created_at,
            deadline_at=t.deadline_at,
            claimed_by=t.claimed_by,
            claimed_at=t.claimed_at,
            lease_expires_at=t.lease_expires_at,
            decision=t.decision,
            reason=t.reason,
            decided_by=t.decided_by,
            decided_at=t.decided_at,
            answer_due_at=t.answer_due_at,
            doctor_answer=t.doctor_answer,
            doctor_reason=t.doctor_reason,
            next_review_id=t.next_review_id,
            closed_at=t.closed_at,
        )


@dataclass(frozen=True, slots=True)
class ReviewRecord:
    """A stored review with everything the API returns about it.

    ``verdict`` is the system's verdict (pass / explain / recheck / block); ``outcome`` is
    where the review stands now (see ``OUTCOME_ZH``); ``decision`` is the pharmacist's (or
    the timeout's) decision once there is one; ``history`` is the audit trail of the review
    and its task (changes only: reads are recorded apart, in ``review_access``). ``replayed``
    is True when this call found the stored review of the same prescription identifier and
    the same clinical content instead of creating one. ``previous_review_id`` /
    ``next_review_id`` link the versions of a prescription (same number, edited content) and
    a returned prescription to its modification.
    """

    id: str
    prescription_id: str
    prescription_identifier: str | None
    institution_id: int
    institution_code: str | None
    verdict: str
    outcome: str
    decided: bool
    findings: tuple[Finding, ...]
    max_level: int
    unchecked: bool
    emergency: bool
    items: tuple[str, ...]
    rulebase_version: str
    policy: dict[str, Any]
    fail_mode: str
    engine_failed: bool
    engine_error: str | None
    timings_ms: dict[str, float]
    received_at: datetime
    created_at: datetime
    decided_at: datetime | None
    retention_class: str
    previous_review_id: str | None
    task: TaskRecord | None
    decision: dict[str, Any] | None
    history: tuple[HistoryEntry, ...] = ()
    facts: dict[str, Any] | None = None
    replayed: bool = False
    next_review_id: str | None = None

    @property
    def outcome_zh(self) -> str:
        return OUTCOME_ZH.get(self.outcome, self.outcome)


def finding_of(row: FindingRow) -> Finding:
    return Finding(
        rule_id=row.rule_id,
        title=row.title,
        category=row.category,
        subtype=row.subtype,
        level=row.level,
        message=row.message,
        evidence=row.evidence,
        implicated=tuple(row.implicated),
        suggestion=row.suggestion,
        source=row.source,
    )


def decision_of(review: Review, task: Task | None) -> dict[str, Any] | None:
    """The decision the HIS waits for, once there is one (None while a pharmacist is pending)."""
    if review.outcome not in DECIDED_OUTCOMES or task is None:
        return None
    return {
        "outcome": review.outcome,
        "outcome_zh": OUTCOME_ZH.get(review.outcome, review.outcome),
        "decision": task.decision,
        "reason": task.reason,
        "decided_by": task.decided_by,
        "decided_at": task.decided_at.isoformat() if task.decided_at else None,
        "doctor_answer": task.doctor_answer,
        "doctor_reason": task.doctor_reason,
        "next_review_id": task.next_review_id,
    }


def build_review_record(
    review: Review,
    *,
    rx: dict[str, Any],
    task: Task | None,
    institution_code: str | None,
    findings: tuple[Finding, ...],
    history: tuple[HistoryEntry, ...],
    facts: dict[str, Any] | None,
    next_review_id: str | None = None,
) -> ReviewRecord:
    """A ReviewRecord from a review row (attached or detached) and what goes with it."""
    return ReviewRecord(
        id=review.id,
        prescription_id=rx["id"],
        prescription_identifier=rx["identifier"],
        institution_id=review.institution_id,
        institution_code=institution_code,
        verdict=review.verdict,
        outcome=review.outcome,
        decided=review.outcome in DECIDED_OUTCOMES,
        findings=findings,
        max_level=review.max_level,
        unchecked=review.unchecked,
        emergency=review.emergency,
        items=tuple(review.items),
        rulebase_version=review.rulebase_version,
        policy=dict(review.policy),
        fail_mode=review.fail_mode,
        engine_failed=review.engine_failed,
        engine_error=review.engine_error,
        timings_ms=dict(review.timings_ms),
        received_at=rx["received_at"],
        created_at=review.created_at,
        decided_at=review.decided_at,
        retention_class=rx["retention_class"],
        previous_review_id=review.previous_review_id,
        task=TaskRecord.of(task, institution_code=institution_code) if task else None,
        decision=decision_of(review, task),
        history=history,
        facts=facts,
        next_review_id=next_review_id,
    )
