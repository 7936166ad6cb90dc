"""Reviews in the database: inserts, version lookups, locks, and reads with their access record.

Persistence only: the workflow that decides what to write is ``audit_engine.submission``
(submitting a review) and ``audit_engine.feedback`` (the doctor's response to findings).
Submissions of one prescription number are serialised by a transaction-scoped advisory lock
on PostgreSQL (SQLite has one writer), and the unique index on (institution, number,
content) makes concurrent twins of one version store one review.

Reads are not changes: they go to ``review_access``, never to the review's history.
"""

from __future__ import annotations

import hashlib
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, aliased

from audit_engine import audit_log
from audit_engine.auth import Principal, can_see, visible_institution_ids
from audit_engine.findings import Finding
from audit_engine.store.db import utcnow
from audit_engine.store.models import (
    CdsCard,
    FindingRow,
    Institution,
    Prescription,
    Review,
    ReviewAccess,
    Task,
)
from audit_engine.store.records import DECIDED_OUTCOMES, ReviewRecord, build_review_record, finding_of

# Namespace (first key) of the advisory locks that serialise submissions of one prescription number.
PRESCRIPTION_LOCK_NAMESPACE = 0x52580001
# Audit actions that were reads before reads moved to review_access (migration 0002): old
# entries stay in the chain but are not shown as history.
READ_ACTIONS = frozenset({"prescription.read", "prescription.read_raw", "prescription.list", "review.replayed"})


def _table(model: type[Any]) -> sa.Table:
    table: sa.Table = model.__table__
    return table


_INSERT_REVIEW = _table(Review).insert()
_INSERT_FINDINGS = _table(FindingRow).insert()
_INSERT_TASK = _table(Task).insert()
_UPSERTS: dict[str, Any] = {}


def insert_review(s: Session, review_row: dict[str, Any], findings: tuple[Finding, ...]) -> None:
    """The review row and its findings. Core inserts: this is the hot path of every review, and
    the ORM unit of work costs more Python time here than the database does."""
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


def insert_task(s: Session, task_row: dict[str, Any]) -> None:
    """The pharmacist task of a review (a Core insert, for the same reason)."""
    s.execute(_INSERT_TASK, task_row)



def insert_ignoring_conflicts(s: Session, model: type[Any], values: Any, index_elements: list[str]) -> bool:
    """INSERT … ON CONFLICT (index_elements) DO NOTHING; False when nothing was inserted
    (for a list of rows: when none was)."""
    dialect = s.get_bind().dialect.name
    key = f"{dialect}:{_table(model).name}"
    stmt = _UPSERTS.get(key)
    if stmt is None:
        dialect_insert: Any
        if dialect == "postgresql":
            from sqlalchemy.dialects.postgresql import insert as dialect_insert
        elif dialect == "sqlite":
            from sqlalchemy.dialects.sqlite import insert as dialect_insert
        else:  # any other backend: a savepoint around a plain insert
            try:
                with s.begin_nested():
                    s.execute(_table(model).insert(), values)
                return True
            except IntegrityError:
                return False
        table = _table(model)
        stmt = _UPSERTS[key] = dialect_insert(table).on_conflict_do_nothing(index_elements=index_elements)
    if isinstance(values, list):
        result: Any = s.execute(stmt, values)
        return bool(result.rowcount)
    return bool(s.execute(stmt.returning(_table(model).c[index_elements[0]]), values).first() is not None)


def insert_prescription(s: Session, values: dict[str, Any]) -> bool:
    """INSERT … ON CONFLICT DO NOTHING; False when this version (number and content) is stored."""
    return insert_ignoring_conflicts(s, Prescription, values, ["institution_id", "identifier", "content_hash"])


def lock_prescription_number(s: Session, institution_id: int, identifier: str) -> None:
    """Serialise submissions of one prescription number until commit (PostgreSQL advisory lock;
    on SQLite every writer already holds the database's single write lock)."""
    if s.get_bind().dialect.name != "postgresql":
        return
    digest = hashlib.sha256(f"{institution_id}|{identifier}".encode()).digest()
    key = int.from_bytes(digest[:4], "big", signed=True)
    s.execute(sa.text("SELECT pg_advisory_xact_lock(:ns, :key)"), {"ns": PRESCRIPTION_LOCK_NAMESPACE, "key": key})


def find_version(s: Session, institution_id: int, identifier: str, content: str) -> Review | None:
    """The review of the stored version (number and content) of a prescription."""
    return s.scalar(
        sa.select(Review)
        .join(Prescription, Review.prescription_id == Prescription.id)
        .where(
            Prescription.institution_id == institution_id,
            Prescription.identifier == identifier,
            Prescription.content_hash == content,
        )
        .order_by(Review.created_at)
        .limit(1)
    )


def latest_version(s: Session, institution_id: int, identifier: str, *, exclude: str) -> Review | None:
    """The latest stored version of a prescription number other than prescription ``exclude``:
    the review no other version of the number names as its previous one (the chain's head)."""
    newer = aliased(Review)
    newer_rx = aliased(Prescription)
    successor = (
        sa.select(newer.id)
        .join(newer_rx, newer.prescription_id == newer_rx.id)
        .where(
            newer.previous_review_id == Review.id,
            newer_rx.institution_id == institution_id,
            newer_rx.identifier == identifier,
            newer_rx.id != exclude,
        )
        .exists()
    )
    return s.scalar(
        sa.select(Review)
        .join(Prescription, Review.prescription_id == Prescription.id)
        .where(
            Prescription.institution_id == institution_id,
            Prescription.identifier == identifier,
            Prescription.id != exclude,
            ~successor,
        )
        .order_by(Review.created_at.desc(), Review.id.desc())
        .limit(1)
    )


def issue_cards(s: Session, *, review_id: str, institution_id: int, findings: tuple[Finding, ...], at: datetime) -> None:
    """Record the CDS cards of a review (one per finding, ids from ``fhir_out.card_id``);
    idempotent, so a replayed review's cards are recorded once."""
    from audit_engine.fhir_out import card_id

    rows = [
        {
            "id": card_id(review_id, f, n),
            "review_id": review_id,
            "institution_id": institution_id,
            "position": n,
            "rule_id": f.rule_id,
            "issued_at": at,
        }
        for n, f in enumerate(findings)
    ]
    if rows:
        insert_ignoring_conflicts(s, CdsCard, rows, ["id"])


_INSERT_ACCESS = _table(ReviewAccess).insert()


def log_access(s: Session, principal: Principal, reviews: list[tuple[str, int | None]], action: str,
                at: datetime | None = None) -> None:
    """Record reads (who, when, which reviews, how): the access record, not the history."""
    if not reviews:
        return
    actor = audit_log.Actor.of(principal)
    when = at or utcnow()
    s.execute(
        _INSERT_ACCESS,
        [
            {
                "review_id": review_id,
                "institution_id": institution_id,
                "actor_kind": actor.kind,
                "actor_id": actor.id,
                "actor_name": actor.name,
                "action": action,
                "at": when,
            }
            for review_id, institution_id in reviews
        ],
    )


def review_record(s: Session, review: Review, *, with_history: bool, with_facts: bool = False) -> ReviewRecord:
    rx = s.get(Prescription, review.prescription_id)
    assert rx is not None  # a review always has its prescription (foreign key)
    task = s.scalar(sa.select(Task).where(Task.review_id == review.id))
    code = s.scalar(sa.select(Institution.code).where(Institution.id == review.institution_id))
    rows = s.scalars(
        sa.select(FindingRow).where(FindingRow.review_id == review.id).order_by(FindingRow.position)
    )
    history = (
        [h for h in audit_log.history(s, object_ids=[review.id, task.id if task else ""]) if h.action not in READ_ACTIONS]
        if with_history
        else []
    )
    next_review_id = s.scalar(
        sa.select(Review.id).where(Review.previous_review_id == review.id).order_by(Review.created_at).limit(1)
    )
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
        next_review_id=next_review_id,
    )


def get_review(
    s: Session, *, review_id: str, principal: Principal, with_facts: bool = False
) -> ReviewRecord | None:
    """The review with its decision and history (its changes), or None when absent or not
    visible to ``principal``. Every read is recorded in ``review_access`` (``read``), never
    in the history."""
    review = s.get(Review, review_id)
    if review is None or not can_see(s, principal, review.institution_id):
        return None
    record = review_record(s, review, with_history=True, with_facts=with_facts)
    log_access(s, principal, [(review.id, review.institution_id)], "read")
    return record


def get_prescription_raw(s: Session, *, review_id: str, principal: Principal) -> str | None:
    """The prescription exactly as received (JSON text), or None; the read is recorded
    (``review_access``, ``read_raw``)."""
    review = s.get(Review, review_id)
    if review is None or not can_see(s, principal, review.institution_id):
        return None
    rx = s.get(Prescription, review.prescription_id)
    assert rx is not None
    log_access(s, principal, [(review.id, review.institution_id)], "read_raw")
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
    """Recent reviews the principal may see, newest first (each one read is recorded in
    ``review_access`` as ``list``)."""
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
    records = [review_record(s, r, with_history=False) for r in reviews]
    log_access(s, principal, [(r.id, r.institution_id) for r in reviews], "list")
    return records


def review_status(s: Session, *, review_id: str) -> tuple[str, bool] | None:
    """(outcome, decided) of a review without logging a read: for long-poll loops."""
    outcome = s.scalar(sa.select(Review.outcome).where(Review.id == review_id))
    return None if outcome is None else (outcome, outcome in DECIDED_OUTCOMES)
