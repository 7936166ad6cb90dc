"""Destroying prescriptions after their retention period: only when due, only with approval, on record."""

from __future__ import annotations

from datetime import date, datetime

import pytest
import sqlalchemy as sa
from store_support import FakePipeline, medication_bundle

from audit_engine import audit_log, feedback, queue, submission
from audit_engine.auth import Principal
from audit_engine.errors import AccessDeniedError, InvalidRequestError
from audit_engine.store import retention, reviews
from audit_engine.store.db import session_scope
from audit_engine.store.models import AuditEntry, FindingRow, Prescription, Review, Task

RECEIVED = datetime(2024, 3, 1, 2, 0)


def admin_of(world) -> Principal:
    return Principal(kind="user", id=9001, username="admin_c1", roles=frozenset({"admin"}),
                     institution_id=world.ids["C1"], institution_code="C1", institution_level="县级医院", is_centre=True)


def store(engine, world, identifier: str, *, control: str | None = None, level: int = 6) -> reviews.ReviewRecord:
    with session_scope(engine) as s:
        return submission.submit_review(
            s, principal=world.his_m1, payload=medication_bundle(identifier, levels=(level,), control=control),
            kind="bundle", engine=None, review_fn=FakePipeline(), now=RECEIVED,
        )


def test_only_prescriptions_past_their_period_are_due(engine, world) -> None:
    ordinary = store(engine, world, "RX-ORD")
    psy2 = store(engine, world, "RX-PSY2", control="精二")
    narcotic = store(engine, world, "RX-NARC", control="麻醉")
    with session_scope(engine) as s:
        def due(day: date) -> set[str]:
            return {i.prescription_id for i in retention.due_for_destruction(s, principal=admin_of(world), today=day)}

        assert due(date(2025, 3, 1)) == set()
        assert due(date(2025, 3, 2)) == {ordinary.prescription_id}
        assert due(date(2026, 3, 2)) == {ordinary.prescription_id, psy2.prescription_id}
        assert due(date(2027, 3, 2)) == {ordinary.prescription_id, psy2.prescription_id, narcotic.prescription_id}


def test_destruction_removes_everything_derived_and_leaves_a_record(engine, world) -> None:
    rec = store(engine, world, "RX-OLD")
    with session_scope(engine) as s:
        task = queue.claim_next(s, principal=world.ph_c1, now=RECEIVED)
        assert task is not None
        queue.decide(s, task_id=task.id, principal=world.ph_c1, decision="approve", now=RECEIVED)
    keep = store(engine, world, "RX-KEEP", control="麻醉")
    with session_scope(engine) as s:
        n = retention.destroy(s, prescription_ids=[rec.prescription_id], principal=admin_of(world),
                              approval="院长批准 2025-07 第3号", today=date(2025, 7, 1))
    assert n == 1
    with session_scope(engine) as s:
        assert s.get(Prescription, rec.prescription_id) is None and s.get(Review, rec.id) is None
        assert s.scalar(sa.select(sa.func.count()).select_from(Task).where(Task.review_id == rec.id)) == 0
        assert s.scalar(sa.select(sa.func.count()).select_from(FindingRow).where(FindingRow.review_id == rec.id)) == 0
        assert s.get(Review, keep.id) is not None
        entry = s.scalar(sa.select(AuditEntry).where(AuditEntry.action == "prescription.destroyed"))
        assert entry is not None and entry.object_id == rec.prescription_id
        assert entry.detail["approval"] == "院长批准 2025-07 第3号" and entry.detail["reviews"] == [rec.id]
        assert len(entry.detail["raw_sha256"]) == 64
        audit_log.seal(s)
        assert audit_log.verify_chain(s) == audit_log.ChainReport(True, audit_log.verify_chain(s).checked)


def test_a_prescription_not_yet_due_refuses_the_whole_request(engine, world) -> None:
    old = store(engine, world, "RX-A")
    young = store(engine, world, "RX-B", control="精一")
    with pytest.raises(InvalidRequestError) as caught, session_scope(engine) as s:
        retention.destroy(s, prescription_ids=[old.prescription_id, young.prescription_id],
                          principal=admin_of(world), approval="批准", today=date(2025, 7, 1))
    assert caught.value.location == f"Prescription/{young.prescription_id}"
    with session_scope(engine) as s:
        assert s.get(Prescription, old.prescription_id) is not None


def test_destruction_needs_an_admin_and_an_approval(engine, world) -> None:
    old = store(engine, world, "RX-C")
    with session_scope(engine) as s:
        with pytest.raises(AccessDeniedError):
            retention.destroy(s, prescription_ids=[old.prescription_id], principal=world.ph_c1,
                              approval="批准", today=date(2026, 1, 1))
        with pytest.raises(InvalidRequestError, match="批准"):
            retention.destroy(s, prescription_ids=[old.prescription_id], principal=admin_of(world),
                              approval="  ", today=date(2026, 1, 1))


def test_destroying_a_cds_prescription_removes_its_issued_cards_and_feedback(engine, world) -> None:
    from audit_engine.fhir_out import card_id
    from audit_engine.store.models import CdsCard, Feedback

    with session_scope(engine) as s:
        rec = submission.submit_review(s, principal=world.his_m1, payload=medication_bundle("RX-CDS-OLD", levels=(3,)),
                                    kind="cds", engine=None, review_fn=FakePipeline(), now=RECEIVED)
    with session_scope(engine) as s:
        assert feedback.record_card_feedback(s, card_id=card_id(rec.id, rec.findings[0], 0), principal=world.his_m1,
                                            outcome="accepted")
    with session_scope(engine) as s:
        assert retention.destroy(s, prescription_ids=[rec.prescription_id], principal=admin_of(world),
                                 approval="院长批准 2025-07 第4号", today=date(2025, 7, 1)) == 1
    with session_scope(engine) as s:
        assert s.scalar(sa.select(sa.func.count()).select_from(CdsCard)) == 0
        assert s.scalar(sa.select(sa.func.count()).select_from(Feedback)) == 0
