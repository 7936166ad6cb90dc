"""The doctor's response to a review's findings: the native explanation and CDS Hooks card feedback.

An ``overridden`` answer with a reason to an ``explain`` verdict is the doctor's
explanation: the review becomes ``explained``. Each response is stored (``feedback``) and
written to the audit log, in the caller's unit of work.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Literal

import sqlalchemy as sa
from sqlalchemy.orm import Session

from audit_engine import audit_log
from audit_engine.auth import Principal, authorize, can_see
from audit_engine.errors import InvalidRequestError, NotFoundError, TransitionError
from audit_engine.queue import require_reason
from audit_engine.store.db import utcnow
from audit_engine.store.models import CdsCard, Feedback, FindingRow, Review, Task
from audit_engine.store.records import ReviewRecord
from audit_engine.store.reviews import get_review, insert_ignoring_conflicts
from audit_engine.unit_of_work import UnitOfWork


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
    if not insert_ignoring_conflicts(s, Feedback, row, ["card_id"]):
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


# --------------------------------------------------------------------------- use cases (own their transaction)
class CardNotFoundError(NotFoundError):
    """Feedback names a card this service never issued to the caller (404, at that card)."""

    issue_code = "not-found"

    def __init__(self, err: NotFoundError, card: str, position: int) -> None:
        super().__init__(err.location, f"{err.message}：{card}")
        self.field = f"feedback[{position}].card"


def explain(uow: UnitOfWork, *, review_id: str, principal: Principal, reason: str,
            rule_id: str | None = None) -> ReviewRecord | None:
    """The doctor's reason for an ``explain`` verdict (the native twin of a CDS override):
    recorded, then the review as it stands now."""
    require_reason(reason, f"Review/{review_id}", "理由不能为空")
    with uow as s:
        record_feedback(s, review_id=review_id, principal=principal, outcome="overridden", rule_id=rule_id,
                        reason=reason.strip())
        return get_review(s, review_id=review_id, principal=principal)


def record_cards_feedback(
    uow: UnitOfWork, *, principal: Principal,
    items: Sequence[tuple[str, Literal["accepted", "overridden"], str | None, datetime | None]],
) -> tuple[int, int]:
    """CDS Hooks feedback on several cards, all or none: (recorded, already recorded).
    Each item is (card id, outcome, override reason, outcome time)."""
    recorded = 0
    with uow as s:
        for i, (card, outcome, reason, at) in enumerate(items):
            try:
                new = record_card_feedback(s, card_id=card, principal=principal, outcome=outcome, reason=reason,
                                           outcome_at=at)
            except NotFoundError as err:
                raise CardNotFoundError(err, card, i) from None
            recorded += int(new)
    return recorded, len(items) - recorded
