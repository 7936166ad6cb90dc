"""Store records → API JSON (the API's schemas stay separate from the ORM models).

Also the one call every submitting route makes, :func:`submit`, so that CDS Hooks and the
native API review in exactly the same way.
"""

from __future__ import annotations

import dataclasses
from datetime import date, datetime
from typing import TYPE_CHECKING, Any

from fastapi.concurrency import run_in_threadpool
from sqlalchemy.orm import Session

from audit_engine.fhir_out import VERDICT_ZH
from audit_engine.findings import Finding
from audit_engine.review import PayloadKind, finding_json

if TYPE_CHECKING:
    from api.runtime import Runtime
    from audit_engine.auth import Principal

Kind = PayloadKind


def jsonable(value: Any) -> Any:
    """Dataclasses, datetimes, tuples and frozensets → plain JSON values."""
    if isinstance(value, Finding):
        return finding_json(value)
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: jsonable(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, datetime):
        return value.isoformat(timespec="seconds") + ("Z" if value.tzinfo is None else "")
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, set, frozenset)):
        return [jsonable(v) for v in value]
    return value


def thresholds(record: Any) -> tuple[int, int]:
    """(explain_at, recheck_at) of the policy that decided ``record``."""
    policy = getattr(record, "policy", None) or {}
    if not isinstance(policy, dict):
        policy = jsonable(policy)
    return int(policy.get("explain_at", 3)), int(policy.get("recheck_at", 5))


def review_json(record: Any) -> dict[str, Any]:
    """The native review body: id, verdict, findings, rulebase_version, then status and history."""
    body: dict[str, Any] = {
        "id": record.id,
        "verdict": record.verdict,
        "verdict_zh": VERDICT_ZH.get(record.verdict, record.verdict),
        "findings": [finding_json(f) for f in record.findings],
        "rulebase_version": record.rulebase_version,
    }
    for name in (
        "outcome", "status", "prescription_identifier", "institution_code", "max_level", "unchecked",
        "emergency", "fail_mode", "engine_failed", "previous_review_id", "next_review_id", "created_at",
        "decided_at", "policy", "task", "decision", "history", "items", "timings_ms", "replayed",
    ):
        if hasattr(record, name):
            body[name] = jsonable(getattr(record, name))
    return body


async def submit(
    runtime: Runtime,
    session: Session,
    *,
    principal: Principal | None = None,
    secret: str | None = None,
    payload: dict[str, Any],
    kind: Kind,
    raw: bytes | None = None,
    replaces_review_id: str | None = None,
) -> Any:
    """Review and store one submission in one transaction (idempotent per prescription identifier).

    Authentication (when only the bearer ``secret`` is given), the pipeline and the DB work
    run in one trip to the thread pool; the event loop only parses JSON.
    """
    from api.deps import resolve_principal
    from audit_engine.store.reviews import submit_review

    def work() -> Any:
        engine = runtime.review_engine()  # may poll the DB for the active version: before our transaction
        try:
            # On SQLite every transaction holds the write lock: release it before the pipeline runs.
            caller = principal if principal is not None else resolve_principal(
                runtime, session, secret, end_txn=runtime.is_sqlite)
            record = submit_review(session, principal=caller, payload=payload, kind=kind,
                                   engine=engine, raw=raw, replaces_review_id=replaces_review_id)
            session.commit()
        except BaseException:
            session.rollback()
            raise
        return record

    return await run_in_threadpool(work)


def review_id_for_card(session: Session, card: str) -> tuple[str, int] | None:
    """(review id, finding position) of a card uuid this service issued, or None."""
    import sqlalchemy as sa

    from audit_engine.fhir_out import parse_card_id
    from audit_engine.store.models import Review

    parsed = parse_card_id(card)
    if parsed is None:
        return None
    prefix, position = parsed
    ids = session.scalars(
        sa.select(Review.id).where(Review.id >= prefix, Review.id < prefix + "g").limit(2)
    ).all()
    return (ids[0], position) if len(ids) == 1 else None
