"""Store records → API JSON (the API's schemas stay separate from the ORM models).

Also the one call every submitting route makes, :func:`submit`, so that CDS Hooks and the
native API review in exactly the same way.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from datetime import date, datetime
from typing import TYPE_CHECKING, Any

from fastapi.concurrency import run_in_threadpool
from sqlalchemy.orm import Session

from api.errors import ApiError
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
    """The native review body: id, verdict, findings, rulebase_version, then status and history;
    ``context`` (see :func:`context_json`) when the record was read with its facts."""
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
    if getattr(record, "engine_failed", False):
        # Why the fail mode decided, without the internal error text: the time budget ran out,
        # or the engine failed.
        error = str(getattr(record, "engine_error", "") or "")
        body["engine_failure"] = "time-budget" if error.startswith("BudgetExceededError") else "engine-error"
    if getattr(record, "facts", None) is not None:  # read with with_facts=True: the workbench's view
        body["context"] = context_json(record.facts, record.findings,
                                       institution_code=getattr(record, "institution_code", None))
    return body


# The patient / prescription facts the workbench shows; None means "the engine could not establish it".
_PATIENT_KEYS = ("sex", "age_years", "age_months", "age_days", "population", "weight", "egfr", "pregnant",
                 "lactating", "hepatic_impairment", "allergies")
_DOSE_UNITS = (("dose_mg", "mg"), ("dose_ml", "mL"), ("dose_iu", "IU"))


def context_json(facts: dict[str, Any] | None, findings: Sequence[Finding] = (), *,
                 institution_code: str | None = None) -> dict[str, Any]:
    """``context``: who the patient is and what was prescribed, from the stored normalised facts.

    ``patient`` holds the facts named in ``_PATIENT_KEYS`` plus ``diagnoses`` (ICD-10 code and
    name); ``prescription`` holds type (门诊/急诊), department, date, long_term, prescriber_title,
    institution_code and institution_level; ``items`` has one entry per order under review with
    reference, name, dose (a list of {value, unit}, one per unit dimension), frequency (per day),
    route, days, prn, ``implicated_by`` (rule ids of the findings naming this order), ``max_level``
    and ``issues`` (what the normaliser could not read in it). Every key is always present: null
    means the fact could not be established (shown as 未知), never that it was left out. The
    prescription's own institution code wins over ``institution_code`` (the submitting client's).
    """
    facts = facts or {}
    patient_facts: dict[str, Any] = facts.get("patient") or {}
    patient = {k: patient_facts.get(k) for k in _PATIENT_KEYS}
    diagnoses = [{"code": d.get("code"), "name": d.get("name")} for d in facts.get("diagnoses") or []]
    # An empty list is "none recorded" only when a diagnosis list was supplied (then `chronic` is set).
    patient["diagnoses"] = diagnoses if diagnoses or "chronic" in patient_facts else None
    rx: dict[str, Any] = facts.get("prescription") or {}
    prescriber: dict[str, Any] = facts.get("prescriber") or {}
    institution: dict[str, Any] = facts.get("institution") or {}
    prescription = {
        "type": rx.get("type"), "department": rx.get("department"), "date": rx.get("date"),
        "long_term": rx.get("long_term"), "prescriber_title": prescriber.get("title"),
        "institution_code": institution.get("code") or institution_code, "institution_level": institution.get("level"),
    }
    issues: list[dict[str, Any]] = [i for i in facts.get("issues") or [] if isinstance(i, dict)]
    items = []
    for item in facts.get("items") or []:
        ref = str(item.get("reference") or f"MedicationRequest/{item.get('id')}")
        hits = [f for f in findings if ref in f.implicated]
        items.append({
            "reference": ref,
            "name": item.get("name"),
            "written_name": item.get("written_name"),  # as the HIS wrote it, when the dictionary did not know it
            "dose": [{"value": item[key], "unit": unit} for key, unit in _DOSE_UNITS if key in item],
            "frequency": item.get("frequency"),
            "route": item.get("route"),
            "days": item.get("days"),
            "prn": item.get("prn"),
            "implicated_by": sorted({f.rule_id for f in hits}),
            "max_level": max((f.level for f in hits), default=0),
            "issues": [str(i.get("message")) for i in issues if i.get("item") == item.get("id")],
        })
    return {"patient": patient, "prescription": prescription, "items": items}


async def submit(
    runtime: Runtime,
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
    run in one trip to the thread pool, on a session of their own; the event loop only
    parses JSON.
    """
    from functools import partial

    from api.deps import resolve_principal
    from audit_engine.review import review_payload
    from audit_engine.submission import submit_review
    from audit_engine.unit_of_work import UnitOfWork

    if runtime.db is None:
        raise ApiError(503, "服务尚未就绪", code="transient")
    db = runtime.db
    # Past the budget the pipeline raises, and submit_review applies the institution's fail mode.
    review_fn = partial(review_payload, budget_ms=runtime.settings.review_budget_ms)

    def work() -> Any:
        engine = runtime.review_engine()  # may poll the DB for the active version: before our transaction
        with Session(db, expire_on_commit=False) as session, UnitOfWork(session):
            caller = principal if principal is not None else resolve_principal(runtime, session, secret,
                                                                               end_txn=False)
            return submit_review(session, principal=caller, payload=payload, kind=kind, engine=engine, raw=raw,
                                 replaces_review_id=replaces_review_id, review_fn=review_fn)

    return await run_in_threadpool(work)
