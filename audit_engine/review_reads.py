"""Reading one review as the HIS and the workbench see it: the read is recorded (``review_access``)
in the same transaction, and the long-poll for a pharmacist's decision is ``queue.await_decision``."""

from __future__ import annotations

from audit_engine.auth import Principal
from audit_engine.store.records import ReviewRecord
from audit_engine.store.reviews import get_review
from audit_engine.unit_of_work import UnitOfWork


def read_review(uow: UnitOfWork, *, review_id: str, principal: Principal) -> ReviewRecord | None:
    """The review with its decision, history and facts, or None when absent or not visible."""
    with uow as s:
        return get_review(s, review_id=review_id, principal=principal, with_facts=True)
