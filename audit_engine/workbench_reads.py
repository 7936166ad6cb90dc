"""What the pharmacist workbench reads: the queue with a summary per task, and a task's history.

Read-only use cases behind ``GET /api/v1/queue`` and ``GET /api/v1/tasks/{id}/history``:

* :func:`queue_page` — one page of the open queue in claim order, each row carrying what a
  pharmacist triages on (drugs, the most severe finding, institution, 门诊/急诊, level,
  deadline, who holds it), the filters applied, the total and the institutions present.
* :func:`task_history` — every version of the prescription (reviews linked by
  ``previous_review_id``), each with its verdict, findings and decision, the doctor's
  answers, the patient identifier as the HIS sent it, and what changed from the version
  before (:func:`diff_items`, pure).

Nothing here writes; the routes only parse the query and answer these records.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Session

from audit_engine.auth import Principal, can_see, visible_institution_ids
from audit_engine.fhir_out import VERDICT_ZH
from audit_engine.store.db import utcnow
from audit_engine.store.models import FindingRow, Institution, Prescription, Review, Task
from audit_engine.store.records import CLAIMED, ESCALATED, OUTCOME_ZH, PENDING, RETURNED

# The statuses a pharmacist works on (returned tasks wait for the doctor, not the pharmacist).
WORK_STATUSES = (PENDING, ESCALATED, CLAIMED)
QUEUE_STATUSES = (PENDING, ESCALATED, CLAIMED, RETURNED)
MAX_PAGE = 200
MAX_VERSIONS = 50  # a runaway chain is cut here rather than walked forever


# --------------------------------------------------------------------------- display helpers
def identifier_value(identifier: str | None) -> str | None:
    """The prescription number as the HIS shows it: ``system|value`` → ``value``."""
    if not identifier:
        return None
    if identifier.startswith("sha256:"):  # no number was sent: the engine's own key
        return None
    return identifier.rsplit("|", 1)[-1] or identifier


def item_label(item: dict[str, Any]) -> str:
    """A drug's name for people: the dictionary name, else the name as written (未识别)."""
    name = item.get("name")
    if name:
        return str(name)
    written = item.get("written_name")
    return f"{written}（未识别）" if written else "未识别药品"


def drugs_summary(names: Sequence[str]) -> str:
    """First two drug names, then 等 N 种 for the whole count (N ≥ 3)."""
    if not names:
        return ""
    shown = "、".join(names[:2])
    return f"{shown} 等 {len(names)} 种" if len(names) > 2 else shown


# --------------------------------------------------------------------------- the queue
@dataclass(frozen=True, slots=True)
class QueueFilters:
    """What the pharmacist narrowed the queue to; None means no restriction."""

    institution: str | None = None  # institution code
    min_level: int | None = None  # highest finding level at least this
    rx_type: str | None = None  # 门诊 | 急诊
    waited_minutes: int | None = None  # waiting at least this long
    statuses: tuple[str, ...] = WORK_STATUSES


@dataclass(frozen=True, slots=True)
class QueueRow:
    task_id: str
    review_id: str
    status: str
    emergency: bool
    escalated: bool
    max_level: int
    institution_code: str
    institution_name: str
    rx_type: str | None
    prescription_number: str | None
    drugs: tuple[str, ...]
    drug_count: int
    drugs_text: str
    top_finding: str | None
    top_finding_level: int | None
    finding_count: int
    created_at: datetime
    deadline_at: datetime | None
    claimed_by: str | None
    lease_expires_at: datetime | None
    version: int


@dataclass(frozen=True, slots=True)
class InstitutionCount:
    code: str
    name: str
    count: int


@dataclass(frozen=True, slots=True)
class QueuePage:
    now: datetime
    total: int
    offset: int
    limit: int
    rows: tuple[QueueRow, ...]
    institutions: tuple[InstitutionCount, ...]


def _queue_where(s: Session, principal: Principal, filters: QueueFilters, now: datetime) -> list[Any]:
    where: list[Any] = [Task.status.in_(filters.statuses or WORK_STATUSES)]
    visible = visible_institution_ids(s, principal)
    if visible is not None:
        where.append(Task.institution_id.in_(visible))
    if filters.institution:
        where.append(Institution.code == filters.institution)
    if filters.min_level is not None:
        where.append(Task.max_level >= filters.min_level)
    if filters.rx_type == "急诊":
        where.append(Task.emergency.is_(True))
    elif filters.rx_type == "门诊":
        where.append(Task.emergency.is_(False))
    if filters.waited_minutes:
        where.append(Task.created_at <= now - timedelta(minutes=filters.waited_minutes))
    return where


def queue_page(
    s: Session,
    *,
    principal: Principal,
    filters: QueueFilters = QueueFilters(),
    offset: int = 0,
    limit: int = 50,
    now: datetime | None = None,
) -> QueuePage:
    """One page of the queue in claim order (escalated, 急诊, level, waiting time)."""
    at = now or utcnow()
    limit = max(1, min(limit, MAX_PAGE))
    offset = max(0, offset)
    where = _queue_where(s, principal, filters, at)
    joined = sa.select(Task).join(Institution, Institution.id == Task.institution_id)
    total = int(s.scalar(joined.with_only_columns(sa.func.count(Task.id)).where(*where)) or 0)
    rows = s.execute(
        sa.select(Task, Institution.code, Institution.name, Review.facts, Prescription.identifier)
        .join(Institution, Institution.id == Task.institution_id)
        .join(Review, Review.id == Task.review_id)
        .join(Prescription, Prescription.id == Review.prescription_id)
        .where(*where)
        .order_by(Task.escalated.desc(), Task.emergency.desc(), Task.max_level.desc(), Task.created_at, Task.id)
        .offset(offset)
        .limit(limit)
    ).all()
    review_ids = [t.review_id for t, *_ in rows]
    top: dict[str, tuple[str | None, int | None]] = {}
    counts: dict[str, int] = {}
    if review_ids:
        for rid, first_title, first_level in s.execute(
            sa.select(FindingRow.review_id, FindingRow.title, FindingRow.level).where(
                FindingRow.review_id.in_(review_ids), FindingRow.position == 0
            )
        ):
            top[rid] = (first_title, first_level)
        for rid, n in s.execute(
            sa.select(FindingRow.review_id, sa.func.count(FindingRow.id))
            .where(FindingRow.review_id.in_(review_ids))
            .group_by(FindingRow.review_id)
        ):
            counts[rid] = int(n)
    out = []
    for task, code, name, facts, identifier in rows:
        facts = facts or {}
        names = [item_label(i) for i in facts.get("items") or [] if isinstance(i, dict)]
        rx_type = (facts.get("prescription") or {}).get("type")
        title, level = top.get(task.review_id) or (None, None)
        out.append(QueueRow(
            task_id=task.id, review_id=task.review_id, status=task.status, emergency=task.emergency,
            escalated=task.escalated, max_level=task.max_level, institution_code=code, institution_name=name,
            rx_type=rx_type, prescription_number=identifier_value(identifier), drugs=tuple(names[:2]),
            drug_count=len(names), drugs_text=drugs_summary(names), top_finding=title, top_finding_level=level,
            finding_count=counts.get(task.review_id, 0), created_at=task.created_at, deadline_at=task.deadline_at,
            claimed_by=task.claimed_by, lease_expires_at=task.lease_expires_at, version=task.version,
        ))
    # The institutions present in the unfiltered open queue, for the filter's choices.
    base = _queue_where(s, principal, QueueFilters(statuses=filters.statuses), at)
    facet = s.execute(
        sa.select(Institution.code, Institution.name, sa.func.count(Task.id))
        .join(Task, Task.institution_id == Institution.id)
        .where(*base)
        .group_by(Institution.code, Institution.name)
        .order_by(Institution.code)
    ).all()
    return QueuePage(
        now=at, total=total, offset=offset, limit=limit, rows=tuple(out),
        institutions=tuple(InstitutionCount(c, n, int(k)) for c, n, k in facet),
    )


# --------------------------------------------------------------------------- what changed
CHANGE_FIELDS = ("dose", "frequency", "days", "route")


@dataclass(frozen=True, slots=True)
class FieldChange:
    field: str
    before: str | None
    after: str | None


@dataclass(frozen=True, slots=True)
class ItemChange:
    """One drug's change between two versions: ``added``, ``removed`` or ``changed``."""

    kind: str
    name: str
    changes: tuple[FieldChange, ...] = ()


def _num(v: Any) -> str:
    f = float(v)
    return str(int(f)) if f.is_integer() else f"{f:g}"


def item_fields(item: dict[str, Any]) -> dict[str, str | None]:
    """The comparable, human-readable fields of one item's facts."""
    doses = [f"{_num(item[k])} {u}" for k, u in (("dose_mg", "mg"), ("dose_ml", "mL"), ("dose_iu", "IU"))
             if isinstance(item.get(k), (int, float))]
    freq = item.get("frequency")
    days = item.get("days")
    return {
        "dose": " / ".join(doses) or None,
        "frequency": f"每日 {_num(freq)} 次" if isinstance(freq, (int, float)) else None,
        "days": f"{_num(days)} 天" if isinstance(days, (int, float)) else None,
        "route": str(item["route"]) if item.get("route") else None,
    }


def _key(item: dict[str, Any]) -> str:
    """Which drug an item is: the dictionary id, else its name, else the name as written."""
    for k in ("drug_id", "name", "written_name", "reference"):
        if item.get(k):
            return f"{k}:{item[k]}"
    return "?"


def diff_items(before: Iterable[dict[str, Any]], after: Iterable[dict[str, Any]]) -> tuple[ItemChange, ...]:
    """What changed from ``before`` to ``after`` (the items of two versions' facts).

    Drugs are matched by identity (dictionary id, else name), not by position or order id:
    a modified prescription often renumbers its orders. A drug present in both is
    ``changed`` when its dose, frequency, days or route differ. Output order: removed,
    added, changed, each in the order of the version they come from.
    """
    old: dict[str, dict[str, Any]] = {}
    for i in before:
        old.setdefault(_key(i), i)
    new: dict[str, dict[str, Any]] = {}
    for i in after:
        new.setdefault(_key(i), i)
    out: list[ItemChange] = [ItemChange("removed", item_label(i)) for k, i in old.items() if k not in new]
    out += [ItemChange("added", item_label(i)) for k, i in new.items() if k not in old]
    for k, i in new.items():
        if k not in old:
            continue
        a, b = item_fields(old[k]), item_fields(i)
        changes = tuple(FieldChange(f, a[f], b[f]) for f in CHANGE_FIELDS if a[f] != b[f])
        if changes:
            out.append(ItemChange("changed", item_label(i), changes))
    return tuple(out)


# --------------------------------------------------------------------------- history
@dataclass(frozen=True, slots=True)
class FindingBrief:
    rule_id: str
    title: str
    level: int


@dataclass(frozen=True, slots=True)
class VersionEntry:
    """One version of the prescription: its review, and what pharmacist and doctor did with it."""

    review_id: str
    prescription_number: str | None
    created_at: datetime
    verdict: str
    verdict_zh: str
    outcome: str
    outcome_zh: str
    max_level: int
    drugs: tuple[str, ...]
    findings: tuple[FindingBrief, ...]
    task_id: str | None
    task_status: str | None
    decision: str | None
    reason: str | None
    decided_by: str | None
    decided_at: datetime | None
    doctor_answer: str | None
    doctor_reason: str | None
    closed_at: datetime | None
    current: bool


@dataclass(frozen=True, slots=True)
class PatientIdentifier:
    system: str | None
    value: str


@dataclass(frozen=True, slots=True)
class TaskHistory:
    task_id: str
    review_id: str
    now: datetime
    deadline_at: datetime | None
    prescription_number: str | None
    patient_identifiers: tuple[PatientIdentifier, ...]
    versions: tuple[VersionEntry, ...]  # oldest first
    previous_review_id: str | None
    changes: tuple[ItemChange, ...] = field(default=())


def _chain(s: Session, review: Review) -> list[Review]:
    """Every version linked to ``review`` by ``previous_review_id``, oldest first."""
    back: list[Review] = []
    seen = {review.id}
    cur = review
    while cur.previous_review_id and len(back) < MAX_VERSIONS:
        prev = s.get(Review, cur.previous_review_id)
        if prev is None or prev.id in seen:
            break
        seen.add(prev.id)
        back.append(prev)
        cur = prev
    forward: list[Review] = []
    cur = review
    while len(forward) < MAX_VERSIONS:
        nxt = s.scalars(
            sa.select(Review).where(Review.previous_review_id == cur.id).order_by(Review.created_at.desc()).limit(1)
        ).first()
        if nxt is None or nxt.id in seen:
            break
        seen.add(nxt.id)
        forward.append(nxt)
        cur = nxt
    return [*reversed(back), review, *forward]


def patient_identifiers(raw: str | None, kind: str | None = None) -> tuple[PatientIdentifier, ...]:
    """The patient's identifiers exactly as the HIS sent them in the stored prescription."""
    try:
        doc = json.loads(raw or "")
    except ValueError:
        return ()
    if not isinstance(doc, dict):
        return ()
    candidates: list[dict[str, Any]] = []
    if doc.get("resourceType") == "Patient":
        candidates.append(doc)
    for entry in doc.get("entry") or []:
        res = entry.get("resource") if isinstance(entry, dict) else None
        if isinstance(res, dict) and res.get("resourceType") == "Patient":
            candidates.append(res)
    prefetch = doc.get("prefetch")
    if isinstance(prefetch, dict) and isinstance(prefetch.get("patient"), dict):
        candidates.append(prefetch["patient"])
    idents: list[dict[str, Any]] = []
    for p in candidates:
        idents += [i for i in p.get("identifier") or [] if isinstance(i, dict)]
    if not idents:  # a lone MedicationRequest may name its patient by identifier
        subject = doc.get("subject")
        if isinstance(subject, dict) and isinstance(subject.get("identifier"), dict):
            idents.append(subject["identifier"])
    out: list[PatientIdentifier] = []
    for i in idents:
        value = i.get("value")
        if isinstance(value, str) and value:
            system = i.get("system")
            out.append(PatientIdentifier(system if isinstance(system, str) else None, value))
    return tuple(dict.fromkeys(out))


def task_history(s: Session, *, task_id: str, principal: Principal, now: datetime | None = None) -> TaskHistory | None:
    """The task's prescription across its versions, or None when absent or not visible."""
    task = s.get(Task, task_id)
    if task is None or not can_see(s, principal, task.institution_id):
        return None
    review = s.get(Review, task.review_id)
    assert review is not None  # foreign key
    chain = [r for r in _chain(s, review) if can_see(s, principal, r.institution_id)]
    ids = [r.id for r in chain]
    tasks = {t.review_id: t for t in s.scalars(sa.select(Task).where(Task.review_id.in_(ids)))}
    rxs = {p.id: p for p in s.scalars(sa.select(Prescription).where(
        Prescription.id.in_([r.prescription_id for r in chain])))}
    findings: dict[str, list[FindingBrief]] = {}
    for row in s.scalars(sa.select(FindingRow).where(FindingRow.review_id.in_(ids)).order_by(FindingRow.position)):
        findings.setdefault(row.review_id, []).append(FindingBrief(row.rule_id, row.title, row.level))
    versions = []
    for r in chain:
        t = tasks.get(r.id)
        rx = rxs.get(r.prescription_id)
        items = [i for i in (r.facts or {}).get("items") or [] if isinstance(i, dict)]
        versions.append(VersionEntry(
            review_id=r.id, prescription_number=identifier_value(rx.identifier if rx else None),
            created_at=r.created_at, verdict=r.verdict, verdict_zh=VERDICT_ZH.get(r.verdict, r.verdict),
            outcome=r.outcome, outcome_zh=OUTCOME_ZH.get(r.outcome, r.outcome), max_level=r.max_level,
            drugs=tuple(item_label(i) for i in items), findings=tuple(findings.get(r.id, ())),
            task_id=t.id if t else None, task_status=t.status if t else None,
            decision=t.decision if t else None, reason=t.reason if t else None,
            decided_by=t.decided_by if t else None, decided_at=t.decided_at if t else None,
            doctor_answer=t.doctor_answer if t else None, doctor_reason=t.doctor_reason if t else None,
            closed_at=t.closed_at if t else None, current=r.id == review.id,
        ))
    changes: tuple[ItemChange, ...] = ()
    previous = next((r for r in chain if r.id == review.previous_review_id), None)
    if previous is not None:
        changes = diff_items(
            [i for i in (previous.facts or {}).get("items") or [] if isinstance(i, dict)],
            [i for i in (review.facts or {}).get("items") or [] if isinstance(i, dict)],
        )
    rx = rxs.get(review.prescription_id)
    return TaskHistory(
        task_id=task.id, review_id=review.id, now=now or utcnow(), deadline_at=task.deadline_at,
        prescription_number=identifier_value(rx.identifier if rx else None),
        patient_identifiers=patient_identifiers(rx.raw if rx else None),
        versions=tuple(versions), previous_review_id=review.previous_review_id, changes=changes,
    )
