"""Submitting a prescription for review: the use case behind POST /api/v1/reviews and CDS order-sign.

``submit_review`` runs the pipeline (``audit_engine.review.review_payload``) *before* it
touches the database, so the write lock (SQLite) or row locks (PostgreSQL) are held only
for the inserts. An internal failure of the pipeline does not raise: the institution's fail
mode decides (``policy.failure_verdict``). It then writes, through the store
(``store/reviews.py``), the prescription as received, the review with its findings and the
policy snapshot, the pharmacist task when the verdict is ``recheck``, and the audit entries,
all in the caller's unit of work (``session_scope``): either all of it is committed or none.

Idempotency is by prescription number *and* clinical content (``intake.content``): the
same number with the same content replays the stored review; the same number with new
content is a new version, reviewed afresh and linked to the latest earlier version, whose
open task is superseded (``queue.supersede_version``). Submissions of one number are
serialised (``reviews.lock_prescription_number``), so concurrent versions form one chain,
and the unique index on (institution, number, content) makes concurrent twins of one
version store one review.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import time
from collections.abc import Callable
from datetime import date, datetime
from typing import Any, Literal

from sqlalchemy.orm import Session

from audit_engine import audit_log, queue
from audit_engine.auth import Principal, authorize
from audit_engine.errors import AccessDeniedError, IntakeError, InvalidRequestError, NotFoundError
from audit_engine.findings import Finding
from audit_engine.intake.content import content_hash
from audit_engine.policy import decide_verdict, failure_verdict
from audit_engine.stats.recording import record_review_statistics
from audit_engine.store import reviews
from audit_engine.store.db import utcnow
from audit_engine.store.models import Review, Task, new_id
from audit_engine.store.policies import policy_for
from audit_engine.store.records import PENDING, ReviewRecord, build_review_record
from audit_engine.store.retention import retain_until, retention_class

Kind = Literal["bundle", "cds", "medication_request"]
ReviewFn = Callable[..., Any]  # review_payload's signature; returns a ReviewResult

# How ``intake.selection.prescription_identifier`` marks a key derived from the orders' ids.
DERIVED_KEY_PREFIX = "sha256:"

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
        reviews.lock_prescription_number(s, institution_id, identifier)
    if not reviews.insert_prescription(s, rx):
        existing = reviews.find_version(s, institution_id, identifier or "", str(rx["content_hash"]))
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
        reviews.latest_version(s, institution_id, identifier, exclude=str(rx["id"]))
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
    reviews.insert_review(s, review_row, findings)
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
        reviews.insert_task(s, task_row)
        task = Task(**task_row)  # a detached view for the record; the row is written above
    review = Review(**review_row)

    if previous is not None:
        # Lock order everywhere is task → review → audit head, so this comes before our own audit entries.
        queue.link_modified_review(s, previous=previous, new_review=review, principal=principal, now=at)
    if earlier is not None and (previous is None or earlier.id != previous.id):
        queue.supersede_version(s, earlier=earlier, new_review=review, principal=principal, now=at)
    if kind == "cds" and findings:
        reviews.issue_cards(s, review_id=review.id, institution_id=institution_id, findings=findings, at=at)
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


def _replay(s: Session, review: Review, principal: Principal, *, kind: str, now: datetime) -> ReviewRecord:
    """The stored review of this version again: its cards (a version first sent natively gets
    them now) and the access record, nothing else."""
    record = reviews.review_record(s, review, with_history=False)
    if kind == "cds":
        reviews.issue_cards(s, review_id=review.id, institution_id=review.institution_id, findings=record.findings,
                            at=now)
    reviews.log_access(s, principal, [(review.id, review.institution_id)], "replay", now)
    return dataclasses.replace(record, replayed=True)

