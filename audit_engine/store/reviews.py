"""Submitting and reading reviews: one transaction per review, idempotent per prescription.

``submit_review`` runs the pipeline (``audit_engine.review.review_payload``) *before* it
touches the database, so the write lock (SQLite) or row locks (PostgreSQL) are held only
for the inserts. It then writes the prescription as received, the review with its
findings and the policy snapshot, the pharmacist task when the verdict is ``recheck``, and
the audit entries — all in the caller's transaction (``session_scope``): either all of it
is committed or none of it.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import time
from collections.abc import Callable
from datetime import date, datetime
from typing import Any, Literal

import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from audit_engine import audit_log
from audit_engine.auth import Principal, can_see, visible_institution_ids
from audit_engine.errors import AccessDeniedError, IntakeError, InvalidRequestError, NotFoundError
from audit_engine.findings import Finding
from audit_engine.policy import decide_verdict, failure_verdict, policy_for
from audit_engine.stats.recording import record_review_statistics
from audit_engine.store.db import utcnow
from audit_engine.store.models import (
    Feedback,
    FindingRow,
    Institution,
    Prescription,
    Review,
    Task,
    new_id,
)
from audit_engine.store.records import (
    DECIDED_OUTCOMES,
    PENDING,
    ReviewRecord,
    build_review_record,
    finding_of,
)
from audit_engine.store.retention import retain_until, retention_class

Kind = Literal["bundle", "cds", "medication_request"]
ReviewFn = Callable[..., Any]  # review_payload's signature; returns a ReviewResult

OUTCOME_FOR_VERDICT = {
    "pass": "system_pass",
    "explain": "awaiting_reason",
    "recheck": PENDING,
    "block": "auto_return",
}


def _facts_json(facts: Any) -> dict[str, Any]:
    """The normalised facts as plain JSON values (what ``dataclasses.asdict`` then a JSON round
    trip with ``default=str`` gives, in one walk: this runs on every review)."""
    data = _plain(facts) if dataclasses.is_dataclass(facts) and not isinstance(facts, type) else {}
    return data if isinstance(data, dict) else {}


def _plain(value: Any) -> Any:
    if value is None or isinstance(value, str | bool | int | float):
        return value
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: _plain(getattr(value, f.name)) for f in dataclasses.fields(value)}
    return str(value)


def _default_review_fn() -> ReviewFn:
    from audit_engine.review import review_payload

    return review_payload


def submit_review(
    s: Session,
    *,
    principal: Principal,
    payload: dict[str, Any],
    kind: Kind,
    engine: Any,
    today: date | None = None,
    raw: bytes | str | None = None,
    replaces_review_id: str | None = None,
    review_fn: ReviewFn | None = None,
    now: datetime | None = None,
) -> ReviewRecord:
    """Review a submission and store it, all in the caller's transaction; returns the review.

    Idempotent: when the institution already sent this prescription identifier, the stored
    review comes back (``replayed=True``) and nothing new is written besides the audit
    entry of the read — also under concurrent submits (the unique constraint decides).
    ``raw`` is the exact request body, stored as received (else ``payload`` re-serialised).
    ``replaces_review_id`` links a doctor's modified prescription to the returned review it
    answers. IntakeError from the pipeline propagates untouched, before anything is written.
    An internal failure of the pipeline does not raise: the institution's fail mode decides
    (open → pass, closed → pharmacist) and the review records it.
    """
    if principal.institution_id is None:
        raise AccessDeniedError(f"Principal/{principal.actor}", "只有机构（HIS）可以提交处方")
    review_fn = review_fn or _default_review_fn()
    client_institution = {"code": principal.institution_code, "level": principal.institution_level}
    t0 = time.perf_counter()
    result: Any = None
    failure: str | None = None
    try:
        result = review_fn(
            payload, kind=kind, engine=engine, client_institution=client_institution, today=today
        )
    except IntakeError:
        raise
    except Exception as exc:  # the fail mode exists for exactly this; it is recorded on the review
        failure = f"{type(exc).__name__}: {exc}"
    pipeline_ms = (time.perf_counter() - t0) * 1000

    institution_id = principal.institution_id
    identifier: str | None = result.prescription_id if result is not None else None
    at = now or utcnow()
    items = list(result.facts.items) if result is not None else None
    ret_class = retention_class(items)
    raw_text = raw.decode("utf-8", "replace") if isinstance(raw, bytes) else raw
    if raw_text is None:
        raw_text = json.dumps(payload, ensure_ascii=False, separators=(",", ":"))
    rx = {
        "id": new_id(),
        "institution_id": institution_id,
        "identifier": identifier,
        "kind": kind,
        "raw": raw_text,
        "raw_sha256": hashlib.sha256(raw_text.encode()).hexdigest(),
        "received_at": at,
        "retention_class": ret_class,
        "retain_until": retain_until(at, ret_class),
    }
    # Everything that can refuse the request is checked before the first write, so even a
    # caller that catches the error and commits keeps no half-written record.
    previous: Review | None = None
    if replaces_review_id is not None:
        previous = s.get(Review, replaces_review_id)
        if previous is None or previous.institution_id != institution_id:
            raise NotFoundError(f"Review/{replaces_review_id}", "被修改的原审核不存在")
    policy = principal.policy if principal.policy is not None else policy_for(s, institution_id=institution_id)
    deadline = policy.deadline(at)
    # Idempotency is decided by the unique (institution, identifier) constraint, in one
    # statement: a concurrent twin's insert makes ours do nothing, and we replay its review.
    if not _insert_prescription(s, rx):
        existing = _find_by_identifier(s, institution_id, identifier or "")
        if existing is None:  # cannot happen: the conflicting row is committed and visible
            raise InvalidRequestError(f"Prescription/{identifier}", "处方标识冲突，请重试")
        return _replay(s, existing, principal)

    findings: tuple[Finding, ...] = tuple(result.findings) if result is not None else ()
    unchecked = bool(result.unchecked) if result is not None else True
    verdict = (
        decide_verdict(findings, unchecked=unchecked, policy=policy)
        if failure is None
        else failure_verdict(policy)
    )
    facts = result.facts if result is not None else None
    emergency = bool(facts is not None and facts.prescription.get("type") == "急诊")
    outcome = OUTCOME_FOR_VERDICT[verdict]
    timings = dict(result.timings_ms) if result is not None else {}
    timings["pipeline"] = pipeline_ms
    review_row: dict[str, Any] = {
        "id": new_id(),
        "prescription_id": rx["id"],
        "institution_id": institution_id,
        "previous_review_id": previous.id if previous else None,
        "rulebase_version": result.rulebase_version
        if result is not None
        else str(getattr(engine, "version", "")),
        "verdict": verdict,
        "outcome": outcome,
        "max_level": max((f.level for f in findings), default=0),
        "unchecked": unchecked,
        "emergency": emergency,
        "items": list(result.items) if result is not None else [],
        "facts": _facts_json(facts),
        "policy": policy.snapshot(),
        "fail_mode": policy.fail_mode,
        "engine_failed": failure is not None,
        "engine_error": failure,
        "timings_ms": timings,
        "created_at": at,
        "decided_at": None if verdict == "recheck" else at,
    }
    # Core inserts: this is the hot path of every review, and the ORM unit of work costs
    # more Python time here than the database does.
    s.execute(_INSERT_REVIEW, review_row)
    if findings:
        s.execute(
            _INSERT_FINDINGS,
            [
                {
                    "review_id": review_row["id"],
                    "position": n,
                    "rule_id": f.rule_id,
                    "title": f.title,
                    "category": f.category,
                    "subtype": f.subtype,
                    "level": f.level,
                    "message": f.message,
                    "evidence": f.evidence,
                    "implicated": list(f.implicated),
                    "suggestion": f.suggestion,
                    "source": f.source,
                }
                for n, f in enumerate(findings)
            ],
        )
    record_review_statistics(s, review_row=review_row, findings=findings, payload=payload)
    task: Task | None = None
    if verdict == "recheck":
        task_row: dict[str, Any] = {
            "id": new_id(),
            "review_id": review_row["id"],
            "institution_id": institution_id,
            "status": PENDING,
            "emergency": emergency,
            "escalated": False,
            "max_level": review_row["max_level"],
            "created_at": at,
            "deadline_at": deadline,
            "version": 1,
        }
        s.execute(_INSERT_TASK, task_row)
        task = Task(**task_row)  # a detached view for the record; the row is written above
    review = Review(**review_row)

    if previous is not None:
        # Lock order everywhere is task → review → audit head, so this comes before our own audit entries.
        from audit_engine.queue import link_modified_review

        link_modified_review(s, previous=previous, new_review=review, principal=principal, now=at)
    actor = audit_log.Actor.of(principal)
    entries = [
        audit_log.NewEntry(
            actor,
            "review.created",
            "review",
            review.id,
            institution_id,
            {
                "prescription": rx["id"],
                "identifier": identifier,
                "verdict": verdict,
                "outcome": outcome,
                "max_level": review.max_level,
                "rulebase_version": review.rulebase_version,
                "engine_failed": failure is not None,
                "fail_mode": policy.fail_mode,
                "raw_sha256": rx["raw_sha256"],
            },
            at,
        )
    ]
    if task is not None:
        entries.append(
            audit_log.NewEntry(
                actor,
                "task.created",
                "task",
                task.id,
                institution_id,
                {"review": review.id, "deadline_at": str(task.deadline_at)},
                at,
            )
        )
    audit_log.append_many(s, entries)
    return build_review_record(
        review,
        rx=rx,
        task=task,
        institution_code=principal.institution_code,
        findings=findings,
        history=(),
        facts=None,
    )


def _table(model: type[Any]) -> sa.Table:
    table: sa.Table = model.__table__
    return table


_INSERT_REVIEW = _table(Review).insert()
_INSERT_FINDINGS = _table(FindingRow).insert()
_INSERT_TASK = _table(Task).insert()
_UPSERTS: dict[str, Any] = {}


def _insert_prescription(s: Session, values: dict[str, Any]) -> bool:
    """INSERT … ON CONFLICT DO NOTHING; False when the identifier was already taken."""
    dialect = s.get_bind().dialect.name
    stmt = _UPSERTS.get(dialect)
    if stmt is None:
        dialect_insert: Any
        if dialect == "postgresql":
            from sqlalchemy.dialects.postgresql import insert as dialect_insert
        elif dialect == "sqlite":
            from sqlalchemy.dialects.sqlite import insert as dialect_insert
        else:  # any other backend: a savepoint around a plain insert
            try:
                with s.begin_nested():
                    s.execute(_table(Prescription).insert(), values)
                return True
            except IntegrityError:
                return False
        table = _table(Prescription)
        stmt = _UPSERTS[dialect] = (
            dialect_insert(table)
            .on_conflict_do_nothing(index_elements=["institution_id", "identifier"])
            .returning(table.c.id)
        )
    return s.execute(stmt, values).first() is not None


def _find_by_identifier(s: Session, institution_id: int, identifier: str) -> Review | None:
    return s.scalar(
        sa.select(Review)
        .join(Prescription, Review.prescription_id == Prescription.id)
        .where(Prescription.institution_id == institution_id, Prescription.identifier == identifier)
        .order_by(Review.created_at)
        .limit(1)
    )


def _replay(s: Session, review: Review, principal: Principal) -> ReviewRecord:
    audit_log.append(
        s,
        actor=audit_log.Actor.of(principal),
        action="review.replayed",
        object_type="review",
        object_id=review.id,
        institution_id=review.institution_id,
    )
    return dataclasses.replace(_record(s, review, with_history=False), replayed=True)


def _record(s: Session, review: Review, *, with_history: bool, with_facts: bool = False) -> ReviewRecord:
    rx = s.get(Prescription, review.prescription_id)
    assert rx is not None  # a review always has its prescription (foreign key)
    task = s.scalar(sa.select(Task).where(Task.review_id == review.id))
    code = s.scalar(sa.select(Institution.code).where(Institution.id == review.institution_id))
    rows = s.scalars(
        sa.select(FindingRow).where(FindingRow.review_id == review.id).order_by(FindingRow.position)
    )
    history = audit_log.history(s, object_ids=[review.id, task.id if task else ""]) if with_history else []
    return build_review_record(
        review,
        rx={
            "id": rx.id,
            "identifier": rx.identifier,
            "received_at": rx.received_at,
            "retention_class": rx.retention_class,
        },
        task=task,
        institution_code=code,
        findings=tuple(finding_of(r) for r in rows),
        history=tuple(history),
        facts=dict(review.facts) if with_facts else None,
    )


def get_review(
    s: Session, *, review_id: str, principal: Principal, with_facts: bool = False
) -> ReviewRecord | None:
    """The review with its decision and history, or None when absent or not visible to
    ``principal``. Every read is logged (``prescription.read``)."""
    review = s.get(Review, review_id)
    if review is None or not can_see(s, principal, review.institution_id):
        return None
    record = _record(s, review, with_history=True, with_facts=with_facts)
    # Logged last: the append locks the chain head until commit, so keep that window short.
    audit_log.append(
        s,
        actor=audit_log.Actor.of(principal),
        action="prescription.read",
        object_type="review",
        object_id=review.id,
        institution_id=review.institution_id,
    )
    return record


def get_prescription_raw(s: Session, *, review_id: str, principal: Principal) -> str | None:
    """The prescription exactly as received (JSON text), or None; the read is logged."""
    review = s.get(Review, review_id)
    if review is None or not can_see(s, principal, review.institution_id):
        return None
    rx = s.get(Prescription, review.prescription_id)
    assert rx is not None
    audit_log.append(
        s,
        actor=audit_log.Actor.of(principal),
        action="prescription.read_raw",
        object_type="review",
        object_id=review.id,
        institution_id=review.institution_id,
    )
    return rx.raw


def list_reviews(
    s: Session,
    *,
    principal: Principal,
    limit: int = 50,
    outcome: str | None = None,
    institution_id: int | None = None,
    since: datetime | None = None,
) -> list[ReviewRecord]:
    """Recent reviews the principal may see, newest first (one audit entry lists the ids read)."""
    q = sa.select(Review).order_by(Review.created_at.desc(), Review.id).limit(max(1, min(limit, 500)))
    visible = visible_institution_ids(s, principal)
    if visible is not None:
        q = q.where(Review.institution_id.in_(visible))
    if institution_id is not None:
        q = q.where(Review.institution_id == institution_id)
    if outcome is not None:
        q = q.where(Review.outcome == outcome)
    if since is not None:
        q = q.where(Review.created_at >= since)
    reviews = s.scalars(q).all()
    records = [_record(s, r, with_history=False) for r in reviews]
    if reviews:
        audit_log.append(
            s,
            actor=audit_log.Actor.of(principal),
            action="prescription.list",
            object_type="review",
            object_id=reviews[0].id,
            detail={"ids": [r.id for r in reviews]},
        )
    return records


def record_feedback(
    s: Session,
    *,
    review_id: str,
    principal: Principal,
    outcome: Literal["accepted", "overridden"],
    rule_id: str | None = None,
    card_id: str | None = None,
    reason: str | None = None,
    now: datetime | None = None,
) -> None:
    """Record a doctor's response to a finding (CDS Hooks feedback). An ``overridden`` answer
    with a reason to an ``explain`` verdict is the doctor's explanation: the review becomes
    ``explained``."""
    if outcome not in ("accepted", "overridden"):
        raise InvalidRequestError(
            f"Review/{review_id}", f"未知反馈结果 {outcome!r}（应为 accepted 或 overridden）"
        )
    review = s.get(Review, review_id)
    if review is None or not can_see(s, principal, review.institution_id):
        raise NotFoundError(f"Review/{review_id}", "没有这个审核")
    at = now or utcnow()
    # Lock order everywhere is task → review → audit head (see queue): take the task first.
    s.execute(sa.select(Task.id).where(Task.review_id == review.id).with_for_update())
    s.refresh(review)
    s.add(
        Feedback(
            review_id=review.id,
            rule_id=rule_id,
            card_id=card_id,
            outcome=outcome,
            reason=reason,
            created_at=at,
        )
    )
    if outcome == "overridden" and reason and review.outcome == "awaiting_reason":
        review.outcome = "explained"
        review.decided_at = at
    s.flush()
    audit_log.append(
        s,
        actor=audit_log.Actor.of(principal),
        action=f"feedback.{outcome}",
        object_type="review",
        object_id=review.id,
        institution_id=review.institution_id,
        detail={"rule_id": rule_id, "card_id": card_id, "reason": reason},
        at=at,
    )


def review_status(s: Session, *, review_id: str) -> tuple[str, bool] | None:
    """(outcome, decided) of a review without logging a read: for long-poll loops."""
    outcome = s.scalar(sa.select(Review.outcome).where(Review.id == review_id))
    return None if outcome is None else (outcome, outcome in DECIDED_OUTCOMES)
