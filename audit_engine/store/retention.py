"""Retention (处方管理办法 第五十条): what may be destroyed, and destroying it on approval.

Prescriptions are kept 1 year (ordinary), 2 years (毒性, 精二) or 3 years (麻醉, 精一) from
receipt (``Prescription.retain_until``, set when stored). After that the law allows
destruction only with the approval of the institution's head, on record: ``destroy`` needs
an admin and an approval reference, refuses anything not yet due, and leaves an audit entry
per prescription carrying the SHA-256 of what was destroyed, so the chain still proves
what existed.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Session

from audit_engine import audit_log
from audit_engine.auth import Principal, authorize, visible_institution_ids
from audit_engine.errors import InvalidRequestError
from audit_engine.store.db import utcnow
from audit_engine.store.models import (
    CdsCard,
    Feedback,
    FindingRow,
    Prescription,
    Review,
    Task,
    WebhookDelivery,
)

# 处方管理办法 第五十条: ordinary 1 year; 毒性 and 精二 2 years; 麻醉 and 精一 3 years.
RETENTION_YEARS = {"ordinary": 1, "toxic_psy2": 2, "narcotic_psy1": 3}


def retention_class(items: list[dict[str, Any]] | None) -> str:
    """The 处方管理办法 retention class of a prescription from its items' control classes.

    When the items are unknown (the engine failed) or an item's drug could not be
    identified, its control class is unknown too, so the longest period is kept.
    """
    if items is None or any("drug_id" not in i for i in items):
        return "narcotic_psy1"
    controls = {i.get("control") for i in items}
    if controls & {"麻醉", "精一"}:
        return "narcotic_psy1"
    if controls & {"毒性", "精二"}:
        return "toxic_psy2"
    return "ordinary"


def retain_until(received: datetime, cls: str) -> date:
    d = received.date()
    years = d.year + RETENTION_YEARS[cls]
    try:
        return d.replace(year=years)
    except ValueError:  # 29 February
        return d.replace(year=years, day=28)


@dataclass(frozen=True, slots=True)
class RetentionItem:
    prescription_id: str
    institution_id: int
    identifier: str | None
    retention_class: str
    received_at: datetime
    retain_until: date


def due_for_destruction(
    s: Session, *, principal: Principal, today: date, limit: int = 1000
) -> list[RetentionItem]:
    """Prescriptions the principal may see whose retention period ended before ``today``."""
    q = (
        sa.select(Prescription)
        .where(Prescription.retain_until < today)
        .order_by(Prescription.retain_until, Prescription.id)
        .limit(limit)
    )
    visible = visible_institution_ids(s, principal)
    if visible is not None:
        q = q.where(Prescription.institution_id.in_(visible))
    return [
        RetentionItem(p.id, p.institution_id, p.identifier, p.retention_class, p.received_at, p.retain_until)
        for p in s.scalars(q)
    ]


def destroy(
    s: Session,
    *,
    prescription_ids: list[str],
    principal: Principal,
    approval: str,
    today: date,
    now: datetime | None = None,
) -> int:
    """Destroy prescriptions past retention with everything derived from them; returns how many.

    All or nothing: one id not yet due (or not visible) refuses the whole request.
    """
    authorize(principal, "retention.destroy")
    if not approval.strip():
        raise InvalidRequestError("Retention", "销毁处方须登记负责人批准（approval）")
    due = {
        item.prescription_id: item
        for item in due_for_destruction(s, principal=principal, today=today, limit=1_000_000)
    }
    for pid in prescription_ids:
        if pid not in due:
            raise InvalidRequestError(f"Prescription/{pid}", "未到保存期限或无权处理，不能销毁")
    if not prescription_ids:
        return 0
    at = now or utcnow()
    rows = s.execute(
        sa.select(Prescription.id, Prescription.raw_sha256).where(Prescription.id.in_(prescription_ids))
    ).all()
    reviews_of: dict[str, list[str]] = {}
    for rid, pid in s.execute(
        sa.select(Review.id, Review.prescription_id).where(Review.prescription_id.in_(prescription_ids))
    ):
        reviews_of.setdefault(pid, []).append(rid)
    review_ids = [rid for rids in reviews_of.values() for rid in rids]
    # Cut links from records that stay (a later, still-retained review of a modified prescription).
    s.execute(
        sa.update(Review).where(Review.previous_review_id.in_(review_ids)).values(previous_review_id=None)
    )
    s.execute(
        sa.update(Task)
        .where(Task.next_review_id.in_(review_ids))
        .values(next_review_id=None)
        .execution_options(synchronize_session=False)
    )
    from audit_engine.store.stats_models import ReviewStat, ReviewStatItem, ReviewStatRule

    # The statistics rows recorded from the prescription go with it (issue 12).
    for model in (WebhookDelivery, Feedback, CdsCard, FindingRow, Task, ReviewStatRule, ReviewStatItem, ReviewStat):
        s.execute(sa.delete(model).where(model.review_id.in_(review_ids)))
    s.execute(sa.delete(Review).where(Review.id.in_(review_ids)))
    s.execute(sa.delete(Prescription).where(Prescription.id.in_(prescription_ids)))
    audit_log.append_many(
        s,
        [
            audit_log.NewEntry(
                audit_log.Actor.of(principal),
                "prescription.destroyed",
                "prescription",
                row.id,
                due[row.id].institution_id,
                {
                    "approval": approval,
                    "raw_sha256": row.raw_sha256,
                    "retention_class": due[row.id].retention_class,
                    "retain_until": due[row.id].retain_until.isoformat(),
                    "reviews": sorted(reviews_of.get(row.id, [])),
                },
                at,
            )
            for row in rows
        ],
    )
    return len(rows)
