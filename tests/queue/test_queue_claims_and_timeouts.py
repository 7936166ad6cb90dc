"""Claim order, leases, visibility, timeouts (working hours respected) and the long-poll helper."""

from __future__ import annotations

import threading
from datetime import datetime, timedelta

import pytest
import sqlalchemy as sa
import store_support as testing
from store_support import FakePipeline, medication_bundle

from audit_engine import queue, submission, webhooks
from audit_engine.errors import TransitionError
from audit_engine.policy import Policy
from audit_engine.store import reviews
from audit_engine.store.db import session_scope, utcnow
from audit_engine.store.models import AuditEntry, Task, WebhookDelivery
from audit_engine.store.policies import set_policy

T0 = datetime(2026, 11, 23, 1, 0)  # Monday 09:00 in Beijing


def submit(engine, principal, identifier: str, *, level: int = 6, emergency: bool = False, at: datetime = T0):
    with session_scope(engine) as s:
        rec = submission.submit_review(
            s, principal=principal, kind="bundle", engine=None, review_fn=FakePipeline(), now=at,
            payload=medication_bundle(identifier, levels=(level,), encounter_class="EMER" if emergency else "AMB"),
        )
    assert rec.task is not None
    return rec.task.id


def claim(engine, principal, at: datetime, lease: int = 300) -> str | None:
    with session_scope(engine) as s:
        t = queue.claim_next(s, principal=principal, now=at, lease_seconds=lease)
        return t.id if t else None


def status(engine, task_id: str) -> str:
    with session_scope(engine) as s:
        t = s.get(Task, task_id)
        assert t is not None
        return t.status


def test_claims_come_emergency_first_then_severity_then_waiting_time(engine, world) -> None:
    old_mild = submit(engine, world.his_m1, "RX-1", level=5, at=T0)
    severe = submit(engine, world.his_m1, "RX-2", level=7, at=T0 + timedelta(minutes=1))
    emergency_mild = submit(engine, world.his_m1, "RX-3", level=5, emergency=True, at=T0 + timedelta(minutes=2))
    severe_later = submit(engine, world.his_m1, "RX-4", level=7, at=T0 + timedelta(minutes=3))
    at = T0 + timedelta(minutes=5)
    order = [claim(engine, world.ph_c1, at) for _ in range(5)]
    assert order == [emergency_mild, severe, severe_later, old_mild, None]


def test_escalated_tasks_jump_the_queue(engine, world) -> None:
    with session_scope(engine) as s:
        set_policy(s, institution_id=world.ids["M1"], policy=Policy(timeout_minutes=10, timeout_action="escalate"))
    waited = submit(engine, world.his_m1, "RX-ESC", level=5, at=T0)
    fresh = submit(engine, world.his_m1, "RX-NEW", level=7, emergency=True, at=T0 + timedelta(minutes=9))
    with session_scope(engine) as s:
        assert queue.apply_timeouts(s, now=T0 + timedelta(minutes=10)) == 1
    assert status(engine, waited) == "escalated"
    at = T0 + timedelta(minutes=11)
    assert [claim(engine, world.ph_c1, at), claim(engine, world.ph_c1, at)] == [waited, fresh]
    with session_scope(engine) as s:  # an escalated task is not timed out a second time (only `fresh` is)
        assert queue.apply_timeouts(s, now=T0 + timedelta(days=2)) == 1
        escalations = s.scalars(sa.select(AuditEntry.object_id).where(AuditEntry.action == "task.escalate")).all()
    assert sorted(escalations) == sorted([waited, fresh])


def test_an_expired_lease_lets_another_pharmacist_take_the_task(engine, world) -> None:
    tid = submit(engine, world.his_m1, "RX-LEASE")
    assert claim(engine, world.ph_c1, T0, lease=60) == tid
    assert claim(engine, world.ph2_c1, T0 + timedelta(seconds=59)) is None
    assert claim(engine, world.ph2_c1, T0 + timedelta(seconds=61)) == tid
    with pytest.raises(TransitionError, match="ph2_c1"), session_scope(engine) as s:  # the walker-away is out
        queue.decide(s, task_id=tid, principal=world.ph_c1, decision="approve", now=T0 + timedelta(seconds=62))
    with session_scope(engine) as s:
        t = queue.decide(s, task_id=tid, principal=world.ph2_c1, decision="approve", now=T0 + timedelta(seconds=63))
    assert t.status == "approved"


def test_the_worker_releases_expired_leases_back_to_pending(engine, world) -> None:
    tid = submit(engine, world.his_m1, "RX-REL")
    claim(engine, world.ph_c1, T0, lease=60)
    with session_scope(engine) as s:
        assert queue.release_expired_leases(s, now=T0 + timedelta(seconds=30)) == 0
        assert queue.release_expired_leases(s, now=T0 + timedelta(seconds=61)) == 1
    assert status(engine, tid) == "pending"


def test_renewing_a_lease_keeps_the_task(engine, world) -> None:
    tid = submit(engine, world.his_m1, "RX-RENEW")
    claim(engine, world.ph_c1, T0, lease=60)
    with session_scope(engine) as s:
        t = queue.renew_lease(s, task_id=tid, principal=world.ph_c1, lease_seconds=60, now=T0 + timedelta(seconds=50))
    assert t.lease_expires_at == T0 + timedelta(seconds=110)
    assert claim(engine, world.ph2_c1, T0 + timedelta(seconds=100)) is None


def test_pharmacists_claim_only_what_they_may_see(engine, world) -> None:
    m1_task = submit(engine, world.his_m1, "RX-M1")
    m2_task = submit(engine, world.his_m2, "RX-M2")
    assert claim(engine, world.ph_c2, T0) == m2_task  # the other county's centre: its own member only
    assert claim(engine, world.ph_c2, T0) is None
    assert claim(engine, world.ph_m1, T0) == m1_task  # a member's pharmacist: own institution
    with session_scope(engine) as s:
        assert [t.id for t in queue.list_tasks(s, principal=world.ph_c1)] == [m1_task]
        assert queue.get_task(s, task_id=m2_task, principal=world.ph_c1) is None


def test_timeout_pass_fires_once_and_tells_the_his(engine, world) -> None:
    with session_scope(engine) as s:
        testing.allow_webhook_host(s, institution_id=world.ids["M1"], host="his.example")
        webhooks.create_subscription(s, institution_id=world.ids["M1"], url="https://his.example/hook")
    tid = submit(engine, world.his_m1, "RX-TO")
    with session_scope(engine) as s:
        assert queue.apply_timeouts(s, now=T0 + timedelta(minutes=14)) == 0
        assert queue.apply_timeouts(s, now=T0 + timedelta(minutes=15)) == 1
    with session_scope(engine) as s:
        assert queue.apply_timeouts(s, now=T0 + timedelta(minutes=16)) == 0
        t = s.get(Task, tid)
        assert t is not None and (t.status, t.decision, t.decided_by) == ("timeout_passed", "timeout_pass", "system")
        rec = reviews.get_review(s, review_id=t.review_id, principal=world.his_m1)
        assert rec is not None and rec.outcome == "timeout_pass" and rec.decided
        hooks = s.scalars(sa.select(WebhookDelivery)).all()
        assert [h.payload["outcome"] for h in hooks] == ["timeout_pass"]


def test_timeouts_count_only_working_hours(engine, world) -> None:
    policy = Policy(work_start="08:00", work_end="17:00", work_days=(1, 2, 3, 4, 5), timeout_minutes=30)
    with session_scope(engine) as s:
        set_policy(s, institution_id=world.ids["M1"], policy=policy)
    friday_1650 = datetime(2026, 11, 27, 8, 50)  # Beijing 16:50
    tid = submit(engine, world.his_m1, "RX-WEEKEND", at=friday_1650)
    with session_scope(engine) as s:
        assert queue.apply_timeouts(s, now=datetime(2026, 11, 29, 12, 0)) == 0  # Sunday: nobody is on duty
        assert queue.apply_timeouts(s, now=datetime(2026, 11, 30, 0, 19)) == 0  # Monday 08:19
        assert queue.apply_timeouts(s, now=datetime(2026, 11, 30, 0, 20)) == 1  # Monday 08:20
    assert status(engine, tid) == "timeout_passed"


def test_a_pharmacist_holding_a_live_lease_is_not_overtaken_by_the_timeout(engine, world) -> None:
    tid = submit(engine, world.his_m1, "RX-BUSY")
    claim(engine, world.ph_c1, T0 + timedelta(minutes=14), lease=300)
    with session_scope(engine) as s:
        assert queue.apply_timeouts(s, now=T0 + timedelta(minutes=16)) == 0
        assert queue.apply_timeouts(s, now=T0 + timedelta(minutes=20)) == 1  # lease gone: the policy applies
    assert status(engine, tid) == "timeout_passed"


def test_a_returned_prescription_nobody_answers_is_abandoned(engine, world) -> None:
    tid = submit(engine, world.his_m1, "RX-NOANSWER")
    claim(engine, world.ph_c1, T0)
    with session_scope(engine) as s:
        queue.decide(s, task_id=tid, principal=world.ph_c1, decision="return", reason="请补充诊断", now=T0)
        assert queue.apply_timeouts(s, now=T0 + timedelta(hours=23)) == 0
    with session_scope(engine) as s:
        assert queue.apply_timeouts(s, now=T0 + timedelta(hours=24)) == 1
    assert status(engine, tid) == "abandoned"


def test_wait_for_decision_returns_at_once_when_decided_or_unknown(engine, world) -> None:
    tid = submit(engine, world.his_m1, "RX-POLL")
    with session_scope(engine) as s:
        review_id = s.get(Task, tid).review_id  # type: ignore[union-attr]
    assert queue.wait_for_decision(engine, review_id=review_id, timeout_s=0) == ("pending", False)
    assert queue.wait_for_decision(engine, review_id="no-such-review", timeout_s=5) is None


def test_wait_for_decision_sees_a_decision_made_elsewhere(engine, world) -> None:
    tid = submit(engine, world.his_m1, "RX-POLL2")
    with session_scope(engine) as s:
        review_id = s.get(Task, tid).review_id  # type: ignore[union-attr]
    got: list[object] = []
    waiter = threading.Thread(
        target=lambda: got.append(queue.wait_for_decision(engine, review_id=review_id, timeout_s=60, poll_s=0.05))
    )
    waiter.start()
    claim(engine, world.ph_c1, utcnow())
    with session_scope(engine) as s:
        queue.decide(s, task_id=tid, principal=world.ph_c1, decision="approve")
    waiter.join()
    assert got == [("pharmacist_pass", True)]


def test_every_transition_is_in_the_audit_log(engine, world) -> None:
    tid = submit(engine, world.his_m1, "RX-AUDIT")
    claim(engine, world.ph_c1, T0, lease=60)
    with session_scope(engine) as s:
        queue.release_expired_leases(s, now=T0 + timedelta(minutes=2))
    claim(engine, world.ph2_c1, T0 + timedelta(minutes=3))
    with session_scope(engine) as s:
        queue.decide(s, task_id=tid, principal=world.ph2_c1, decision="approve", now=T0 + timedelta(minutes=4))
        actions = s.execute(
            sa.select(AuditEntry.action, AuditEntry.actor_name).where(AuditEntry.object_id == tid).order_by(AuditEntry.id)
        ).all()
    assert [tuple(a) for a in actions] == [
        ("task.created", "institution:M1"),
        ("task.claim", "ph_c1"),
        ("task.release", "system"),
        ("task.claim", "ph2_c1"),
        ("task.approve", "ph2_c1"),
    ]
