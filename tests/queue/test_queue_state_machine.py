"""The recheck state machine: legal paths end in a final status; illegal moves change nothing."""

from __future__ import annotations

from datetime import timedelta

import pytest
import sqlalchemy as sa
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from store_support import FakePipeline, medication_bundle

from audit_engine import queue, submission
from audit_engine.errors import InvalidRequestError, TransitionError
from audit_engine.store import reviews
from audit_engine.store.db import session_scope, utcnow
from audit_engine.store.models import AuditEntry, Task
from audit_engine.store.records import FINAL_STATUSES


def new_task(engine, world, identifier: str, **bundle: object) -> str:
    with session_scope(engine) as s:
        rec = submission.submit_review(
            s, principal=world.his_m1, payload=medication_bundle(identifier, levels=(6,), **bundle),  # type: ignore[arg-type]
            kind="bundle", engine=None, review_fn=FakePipeline(),
        )
    assert rec.task is not None
    return rec.task.id


def snapshot(engine, task_id: str) -> tuple[object, ...]:
    with session_scope(engine) as s:
        t = s.get(Task, task_id)
        assert t is not None
        audit = s.scalar(sa.select(sa.func.count()).select_from(AuditEntry))
        return (t.status, t.version, t.claimed_by, t.decision, t.lease_expires_at, t.next_review_id, audit)


def claim(engine, principal) -> str:
    with session_scope(engine) as s:
        t = queue.claim_next(s, principal=principal)
        assert t is not None
        return t.id


def review_of(engine, world, task_id: str):
    with session_scope(engine) as s:
        t = s.get(Task, task_id)
        assert t is not None
        return reviews.get_review(s, review_id=t.review_id, principal=world.ph_c1)


def test_claim_then_approve_is_a_pharmacist_pass(engine, world) -> None:
    tid = new_task(engine, world, "RX-A")
    assert claim(engine, world.ph_c1) == tid
    with session_scope(engine) as s:
        t = queue.decide(s, task_id=tid, principal=world.ph_c1, decision="approve")
    assert t.status == "approved" and t.final and t.decided_by == "ph_c1"
    rec = review_of(engine, world, tid)
    assert rec.outcome == "pharmacist_pass" and rec.decided and rec.decision["decision"] == "approve"
    assert [h.action for h in rec.history][:4] == ["review.created", "task.created", "task.claim", "task.approve"]


def test_return_then_insist_is_double_signed(engine, world) -> None:
    tid = new_task(engine, world, "RX-B")
    claim(engine, world.ph_c1)
    with session_scope(engine) as s:
        t = queue.decide(s, task_id=tid, principal=world.ph_c1, decision="return", reason="剂量超说明书")
    assert t.status == "returned" and not t.final and t.answer_due_at is not None
    with session_scope(engine) as s:
        t = queue.doctor_answer(s, task_id=tid, principal=world.his_m1, kind="insist", reason="病情需要，已告知患者")
    assert t.status == "double_signed" and t.final
    assert review_of(engine, world, tid).outcome == "double_signed"


def test_return_then_modified_prescription_links_a_new_review(engine, world) -> None:
    tid = new_task(engine, world, "RX-C")
    claim(engine, world.ph_c1)
    with session_scope(engine) as s:
        queue.decide(s, task_id=tid, principal=world.ph_c1, decision="return", reason="请调整剂量")
    old = review_of(engine, world, tid)
    with session_scope(engine) as s:
        new = submission.submit_review(
            s, principal=world.his_m1, payload=medication_bundle("RX-C-2", levels=(1,)), kind="bundle",
            engine=None, review_fn=FakePipeline(), replaces_review_id=old.id,
        )
    assert new.previous_review_id == old.id and new.verdict == "pass"
    after = review_of(engine, world, tid)
    assert after.outcome == "modified" and after.task.status == "modified" and after.task.next_review_id == new.id


def test_reject_needs_a_reason_and_unknown_decisions_are_refused(engine, world) -> None:
    tid = new_task(engine, world, "RX-D")
    claim(engine, world.ph_c1)
    before = snapshot(engine, tid)
    with session_scope(engine) as s:
        with pytest.raises(InvalidRequestError, match="理由"):
            queue.decide(s, task_id=tid, principal=world.ph_c1, decision="reject", reason="  ")
        with pytest.raises(InvalidRequestError, match="approve"):
            queue.decide(s, task_id=tid, principal=world.ph_c1, decision="approved")  # type: ignore[arg-type]
    assert snapshot(engine, tid) == before


@pytest.mark.parametrize(
    "illegal",
    [
        lambda s, w, tid: queue.decide(s, task_id=tid, principal=w.ph_c1, decision="approve"),  # not claimed
        lambda s, w, tid: queue.doctor_answer(s, task_id=tid, principal=w.his_m1, kind="insist", reason="x"),
        lambda s, w, tid: queue.release(s, task_id=tid, principal=w.ph_c1),
        lambda s, w, tid: queue.renew_lease(s, task_id=tid, principal=w.ph_c1),
    ],
)
def test_illegal_moves_on_a_pending_task_raise_with_its_location_and_change_nothing(engine, world, illegal) -> None:
    tid = new_task(engine, world, "RX-E")
    before = snapshot(engine, tid)
    with session_scope(engine) as s:  # even a caller that catches the error and commits keeps nothing
        with pytest.raises(TransitionError) as caught:
            illegal(s, world, tid)
    assert caught.value.location == f"Task/{tid}" and caught.value.status == 409
    assert snapshot(engine, tid) == before


def test_another_pharmacist_cannot_decide_a_task_they_do_not_hold(engine, world) -> None:
    tid = new_task(engine, world, "RX-F")
    claim(engine, world.ph_c1)
    before = snapshot(engine, tid)
    with pytest.raises(TransitionError, match="ph_c1"), session_scope(engine) as s:
        queue.decide(s, task_id=tid, principal=world.ph2_c1, decision="approve")
    assert snapshot(engine, tid) == before


def test_a_decided_task_cannot_be_decided_again(engine, world) -> None:
    tid = new_task(engine, world, "RX-G")
    claim(engine, world.ph_c1)
    with session_scope(engine) as s:
        queue.decide(s, task_id=tid, principal=world.ph_c1, decision="reject", reason="禁忌")
    before = snapshot(engine, tid)
    with pytest.raises(TransitionError, match="rejected"), session_scope(engine) as s:
        queue.decide(s, task_id=tid, principal=world.ph_c1, decision="approve")
    assert snapshot(engine, tid) == before


def test_a_pharmacist_cannot_answer_for_the_doctor(engine, world) -> None:
    from audit_engine.errors import AccessDeniedError

    tid = new_task(engine, world, "RX-DOC")
    claim(engine, world.ph_c1)
    with session_scope(engine) as s:
        queue.decide(s, task_id=tid, principal=world.ph_c1, decision="return", reason="请修改")
    before = snapshot(engine, tid)
    with pytest.raises(AccessDeniedError), session_scope(engine) as s:
        queue.doctor_answer(s, task_id=tid, principal=world.ph_c1, kind="insist", reason="我来双签")
    assert snapshot(engine, tid) == before


def test_a_his_without_the_pharmacist_role_cannot_claim(engine, world) -> None:
    new_task(engine, world, "RX-H")
    from audit_engine.errors import AccessDeniedError

    with pytest.raises(AccessDeniedError), session_scope(engine) as s:
        queue.claim_next(s, principal=world.his_m1)


# ----------------------------------------------------------------------------- random walks
EVENTS = ("claim", "claim_other", "approve", "reject", "return", "release", "insist", "modify", "timeout")


def apply_event(s, world, tid: str, event: str, now) -> None:
    if event == "claim":
        if queue.claim_next(s, principal=world.ph_c1, now=now) is None:
            raise TransitionError(f"Task/{tid}", "nothing to claim")
    elif event == "claim_other":
        if queue.claim_next(s, principal=world.ph2_c1, now=now) is None:
            raise TransitionError(f"Task/{tid}", "nothing to claim")
    elif event in ("approve", "reject", "return"):
        queue.decide(s, task_id=tid, principal=world.ph_c1, decision=event, reason="理由", now=now)  # type: ignore[arg-type]
    elif event == "release":
        queue.release(s, task_id=tid, principal=world.ph_c1, now=now)
    elif event == "insist":
        queue.doctor_answer(s, task_id=tid, principal=world.his_m1, kind="insist", reason="坚持", now=now)
    elif event == "modify":
        rec = submission.submit_review(s, principal=world.his_m1, payload=medication_bundle(None), kind="bundle",
                                    engine=None, review_fn=FakePipeline(), now=now)
        queue.doctor_answer(s, task_id=tid, principal=world.his_m1, kind="modify", new_review_id=rec.id, now=now)
    elif event == "timeout":
        if queue.apply_timeouts(s, now=now + timedelta(days=3)) == 0:
            raise TransitionError(f"Task/{tid}", "nothing due")


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(events=st.lists(st.sampled_from(EVENTS), max_size=8))
def test_any_event_sequence_follows_the_transition_table(engine, world, events: list[str]) -> None:
    with engine.begin() as conn:  # a clean queue per example (the world stays)
        conn.execute(sa.update(Task).values(status="approved"))
    tid = new_task(engine, world, None)  # type: ignore[arg-type]
    now = utcnow()
    for event in events:
        before = snapshot(engine, tid)
        try:
            with session_scope(engine) as s:
                apply_event(s, world, tid, event, now)
        except TransitionError:
            assert snapshot(engine, tid) == before, event  # refused: nothing changed
            continue
        status = snapshot(engine, tid)[0]
        assert status in {*queue.TRANSITIONS.get(str(before[0]), {}).values(), "escalated", "pending"}
        if before[0] in FINAL_STATUSES:
            pytest.fail(f"{event} moved a task out of final status {before[0]}")


def test_modifying_a_blocked_prescription_marks_the_old_review_modified(engine, world) -> None:
    with session_scope(engine) as s:
        blocked = submission.submit_review(s, principal=world.his_m1, payload=medication_bundle("RX-BLK", levels=(9,)),
                                        kind="bundle", engine=None, review_fn=FakePipeline())
    assert blocked.outcome == "auto_return"
    with session_scope(engine) as s:
        new = submission.submit_review(s, principal=world.his_m1, payload=medication_bundle("RX-BLK-2", levels=(0,)),
                                    kind="bundle", engine=None, review_fn=FakePipeline(), replaces_review_id=blocked.id)
    with session_scope(engine) as s:
        old = reviews.get_review(s, review_id=blocked.id, principal=world.his_m1)
    assert new.previous_review_id == blocked.id and old is not None and old.outcome == "modified"
    assert "review.modified" in [h.action for h in old.history]
