"""Submitting and reading reviews: one transaction per review, idempotent per prescription version.

``submit_review`` runs the pipeline (``audit_engine.review.review_payload``) *before* it
touches the database, so the write lock (SQLite) or row locks (PostgreSQL) are held only
for the inserts. It then writes the prescription as received, the review with its
findings and the policy snapshot, the pharmacist task when the verdict is ``recheck``, and
the audit entries — all in the caller's transaction (``session_scope``): either all of it
is committed or none of it.

Idempotency is by prescription number *and* clinical content (``intake.content``): the
same number with the same content replays the stored review; the same number with new
content is a new version, reviewed afresh and linked to the latest earlier version, whose
open task is superseded (``queue.supersede_version``). Submissions of one number are
serialised (a transaction-scoped advisory lock on PostgreSQL; SQLite has one writer), so
concurrent versions form one chain, and the unique index on (institution, number,
content) makes concurrent twins of one version store one review.

Reads are not changes: they go to ``review_access``, never to the review's history.
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
from sqlalchemy.orm import Session, aliased

from audit_engine import audit_log
from audit_engine.auth import Principal, authorize, can_see, visible_institution_ids
from audit_engine.errors import (
    AccessDeniedError,
    IntakeError,
    InvalidRequestError,
    NotFoundError,
    TransitionError,
)
from audit_engine.findings import Finding
from audit_engine.intake.content import content_hash
from audit_engine.policy import decide_verdict, failure_verdict, policy_for
from audit_engine.stats.recording import record_review_statistics
from audit_engine.store.db import utcnow
from audit_engine.store.models import (
    CdsCard,
    Feedback,
    FindingRow,
    Institution,
    Prescription,
    Review,
    ReviewAccess,
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

# How ``intake.selection.prescription_identifier`` marks a key derived from the orders' ids.
DERIVED_KEY_PREFIX = "sha256:"
# Namespace (first key) of the advisory locks that serialise submissions of one prescription number.
PRESCRIPTION_LOCK_NAMESPACE = 0x52580001
# Audit actions that were reads before reads moved to review_access (migration 0002): old
# entries stay in the chain but are not shown as history.
READ_ACTIONS = frozenset({"prescription.read", "prescription.read_raw", "prescription.list", "review.replayed"})

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

    Idempotent by number and content: when the institution already sent this prescription
    identifier with the same clinical content, the stored review comes back
    (``replayed=True``) and nothing is written besides the access record — also under
    concurrent submits (the unique index decides). The same identifier with different
    content is a new version: reviewed afresh, linked to the latest earlier version
    (``previous_review_id``), whose open task is superseded (``queue.supersede_version``).
    ``raw`` is the exact request body, stored as received (else ``payload`` re-serialised).
    ``replaces_review_id`` links a doctor's modified prescription to the returned review it
    answers. IntakeError from the pipeline propagates untouched, before anything is written.
    A CDS submission (``kind="cds"``) also records the cards it issues (``cds_cards``).
    An internal failure of the pipeline does not raise: the institution's fail mode decides
    (open → pass, closed → pharmacist) and the review records it.
    """
    authorize(principal, "review.submit")
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
        "content_hash": content_hash(payload),
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
    # One submission of a number at a time (PostgreSQL; SQLite has a single writer anyway),
    # so that versions form one chain. Idempotency itself is decided by the unique
    # (institution, identifier, content) index, in one statement: a concurrent twin's insert
    # makes ours do nothing, and we replay its review.
    if identifier is not None:
        _lock_prescription_number(s, institution_id, identifier)
    if not _insert_prescription(s, rx):
        existing = _find_version(s, institution_id, identifier or "", str(rx["content_hash"]))
        if existing is None:  # cannot happen: the conflicting row is committed and visible
            raise InvalidRequestError(f"Prescription/{identifier}", "处方标识冲突，请重试")
        if previous is not None and existing.id == previous.id:
            raise InvalidRequestError(f"Review/{previous.id}", "修改后的处方与原处方内容相同，请修改后再提交")
        return _replay(s, existing, principal, kind=kind, now=at)
    # The latest earlier version of this number, if any: the new review is linked to it. A key
    # the intake derived from the orders' ids (no number sent) names no prescription: HIS that
    # number draft orders 1, 2, 3 give every prescription of a patient that key, so a new content
    # is another prescription, not a version, and must not close the earlier one's task.
    earlier = (
        _latest_version(s, institution_id, identifier, exclude=str(rx["id"]))
        if identifier is not None and not identifier.startswith(DERIVED_KEY_PREFIX)
        else None
    )

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
        "previous_review_id": previous.id if previous else earlier.id if earlier else None,
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
    if earlier is not None and (previous is None or earlier.id != previous.id):
        from audit_engine.queue import supersede_version

        supersede_version(s, earlier=earlier, new_review=review, principal=principal, now=at)
    if kind == "cds" and findings:
        _issue_cards(s, review_id=review.id, institution_id=institution_id, findings=findings, at=at)
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
                "content_hash": rx["content_hash"],
                "previous_review": review.previous_review_id,
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


def _insert_ignoring_conflicts(s: Session, model: type[Any], values: Any, index_elements: list[str]) -> bool:
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


def _insert_prescription(s: Session, values: dict[str, Any]) -> bool:
    """INSERT … ON CONFLICT DO NOTHING; False when this version (number and content) is stored."""
    return _insert_ignoring_conflicts(s, Prescription, values, ["institution_id", "identifier", "content_hash"])


def _lock_prescription_number(s: Session, institution_id: int, identifier: str) -> None:
    """Serialise submissions of one prescription number until commit (PostgreSQL advisory lock;
    on SQLite every writer already holds the database's single write lock)."""
    if s.get_bind().dialect.name != "postgresql":
        return
    digest = hashlib.sha256(f"{institution_id}|{identifier}".encode()).digest()
    key = int.from_bytes(digest[:4], "big", signed=True)
    s.execute(sa.text("SELECT pg_advisory_xact_lock(:ns, :key)"), {"ns": PRESCRIPTION_LOCK_NAMESPACE, "key": key})


def _find_version(s: Session, institution_id: int, identifier: str, content: str) -> Review | None:
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


def _latest_version(s: Session, institution_id: int, identifier: str, *, exclude: str) -> Review | None:
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


def _issue_cards(s: Session, *, review_id: str, institution_id: int, findings: tuple[Finding, ...], at: datetime) -> None:
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
        _insert_ignoring_conflicts(s, CdsCard, rows, ["id"])


_INSERT_ACCESS = _table(ReviewAccess).insert()


def _log_access(s: Session, principal: Principal, reviews: list[tuple[str, int | None]], action: str,
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


def _replay(s: Session, review: Review, principal: Principal, *, kind: str, now: datetime) -> ReviewRecord:
    record = _record(s, review, with_history=False)
    if kind == "cds":  # the same version first sent natively gets its cards now
        _issue_cards(s, review_id=review.id, institution_id=review.institution_id, findings=record.findings, at=now)
    _log_access(s, principal, [(review.id, review.institution_id)], "replay", now)
    return dataclasses.replace(record, replayed=True)


def _record(s: Session, review: Review, *, with_history: bool, with_facts: bool = False) -> ReviewRecord:
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
    record = _record(s, review, with_history=True, with_facts=with_facts)
    _log_access(s, principal, [(review.id, review.institution_id)], "read")
    return record


def get_prescription_raw(s: Session, *, review_id: str, principal: Principal) -> str | None:
    """The prescription exactly as received (JSON text), or None; the read is recorded
    (``review_access``, ``read_raw``)."""
    review = s.get(Review, review_id)
    if review is None or not can_see(s, principal, review.institution_id):
        return None
    rx = s.get(Prescription, review.prescription_id)
    assert rx is not None
    _log_access(s, principal, [(review.id, review.institution_id)], "read_raw")
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
    records = [_record(s, r, with_history=False) for r in reviews]
    _log_access(s, principal, [(r.id, r.institution_id) for r in reviews], "list")
    return records


class UnknownRuleError(InvalidRequestError):
    """Feedback or an explanation names a rule that is not among the review's findings (422)."""

    field = "rule_id"


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
    """Record a doctor's response to a review's findings (the native explanation). An
    ``overridden`` answer with a reason to an ``explain`` verdict is the doctor's
    explanation: the review becomes ``explained``. ``rule_id``, when given, must be one of
    the review's findings (UnknownRuleError otherwise). CDS cards go through
    :func:`record_card_feedback`."""
    authorize(principal, "review.answer")
    _check_outcome(outcome, f"Review/{review_id}")
    review = s.get(Review, review_id)
    if review is None or not can_see(s, principal, review.institution_id):
        raise NotFoundError(f"Review/{review_id}", "没有这个审核")
    if rule_id is not None:
        rules = set(s.scalars(sa.select(FindingRow.rule_id).where(FindingRow.review_id == review.id)))
        if rule_id not in rules:
            known = "、".join(sorted(rules)) or "无"
            raise UnknownRuleError(f"Review/{review_id}", f"规则 {rule_id!r} 不在本审核的问题中（本审核的规则：{known}）")
    _apply_feedback(s, review=review, principal=principal, outcome=outcome, rule_id=rule_id, card_id=card_id,
                    reason=reason, outcome_at=None, at=now or utcnow())


def record_card_feedback(
    s: Session,
    *,
    card_id: str,
    principal: Principal,
    outcome: Literal["accepted", "overridden"],
    reason: str | None = None,
    outcome_at: datetime | None = None,
    now: datetime | None = None,
) -> bool:
    """Record CDS Hooks feedback on a card this service issued to the caller's institution.

    Returns True when recorded, False when the card already has this outcome (a resent
    feedback: recorded once, even when both copies arrive at once: the unique index on
    ``card_id`` decides). Raises NotFoundError for a card never issued, or issued to another
    institution, and TransitionError (409) when the card already has the other outcome.
    """
    authorize(principal, "review.answer")
    _check_outcome(outcome, f"Card/{card_id}")
    card = s.get(CdsCard, card_id)
    if card is None or principal.institution_id is None or card.institution_id != principal.institution_id:
        raise NotFoundError(f"Card/{card_id}", "没有这张卡片（不是本服务发给本机构的卡片）")
    review = s.get(Review, card.review_id)
    assert review is not None  # foreign key
    at = now or utcnow()
    # Lock order everywhere is task → review → audit head (see queue): take the task first.
    s.execute(sa.select(Task.id).where(Task.review_id == review.id).with_for_update())
    row = {
        "review_id": review.id,
        "rule_id": card.rule_id,
        "card_id": card.id,
        "outcome": outcome,
        "reason": reason,
        "created_at": at,
        "outcome_at": outcome_at,
    }
    if not _insert_ignoring_conflicts(s, Feedback, row, ["card_id"]):
        earlier = s.scalar(sa.select(Feedback.outcome).where(Feedback.card_id == card.id))
        if earlier != outcome:
            raise TransitionError(f"Card/{card_id}", f"这张卡片已反馈为 {earlier}，不能再反馈为 {outcome}")
        return False
    _apply_feedback(s, review=review, principal=principal, outcome=outcome, rule_id=card.rule_id, card_id=card.id,
                    reason=reason, outcome_at=outcome_at, at=at, stored=True)
    return True


def _check_outcome(outcome: str, location: str) -> None:
    if outcome not in ("accepted", "overridden"):
        raise InvalidRequestError(location, f"未知反馈结果 {outcome!r}（应为 accepted 或 overridden）")


def _apply_feedback(
    s: Session,
    *,
    review: Review,
    principal: Principal,
    outcome: str,
    rule_id: str | None,
    card_id: str | None,
    reason: str | None,
    outcome_at: datetime | None,
    at: datetime,
    stored: bool = False,
) -> None:
    """Store the feedback row (unless ``stored``), turn an explain verdict's reasoned override
    into ``explained``, and write the audit entry."""
    if not stored:
        # Lock order everywhere is task → review → audit head (see queue): take the task first.
        s.execute(sa.select(Task.id).where(Task.review_id == review.id).with_for_update())
        s.add(Feedback(review_id=review.id, rule_id=rule_id, card_id=card_id, outcome=outcome, reason=reason,
                       created_at=at, outcome_at=outcome_at))
    s.refresh(review)
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
        detail={"rule_id": rule_id, "card_id": card_id, "reason": reason,
                "outcome_at": outcome_at.isoformat() if outcome_at else None},
        at=at,
    )


def review_status(s: Session, *, review_id: str) -> tuple[str, bool] | None:
    """(outcome, decided) of a review without logging a read: for long-poll loops."""
    outcome = s.scalar(sa.select(Review.outcome).where(Review.id == review_id))
    return None if outcome is None else (outcome, outcome in DECIDED_OUTCOMES)
