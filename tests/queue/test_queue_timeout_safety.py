"""A timeout passes only what the policy lets it pass: never a 禁用-level prescription, never an
unchecked one under fail mode closed; the rest is escalated, and the policy in force is on the review."""

from __future__ import annotations

from datetime import datetime, timedelta

import pytest
import sqlalchemy as sa
from store_support import FakePipeline, medication_bundle

from audit_engine import queue, submission
from audit_engine.errors import InvalidRequestError
from audit_engine.policy import Policy, timeout_passes
from audit_engine.store import reviews
from audit_engine.store.db import session_scope
from audit_engine.store.models import AuditEntry, Task
from audit_engine.store.policies import policy_for, set_policy

T0 = datetime(2026, 11, 23, 1, 0)  # Monday 09:00 in Beijing
LATER = T0 + timedelta(minutes=16)


def submit(engine, principal, identifier: str, *, level: int | None, review_fn=None) -> tuple[str, dict]:
    levels = () if level is None else (level,)
    with session_scope(engine) as s:
        rec = submission.submit_review(s, principal=principal, kind="bundle", engine=None, now=T0,
                                    review_fn=review_fn or FakePipeline(),
                                    payload=medication_bundle(identifier, drugs=(f"药品-{identifier}",), levels=levels))
    assert rec.task is not None
    return rec.task.id, rec.policy


def status(engine, task_id: str) -> str:
    with session_scope(engine) as s:
        task = s.get(Task, task_id)
        assert task is not None
        return task.status


def test_by_default_a_timeout_passes_level_7_but_escalates_a_level_8_prescription(engine, world) -> None:
    with session_scope(engine) as s:  # everything up to 9 goes to a pharmacist, nothing is blocked
        set_policy(s, institution_id=world.ids["M1"], policy=Policy(block_at=10))
    severe, policy = submit(engine, world.his_m1, "RX-L7", level=7)
    forbidden, _ = submit(engine, world.his_m1, "RX-L8", level=8)
    absolute, _ = submit(engine, world.his_m1, "RX-L9", level=9)
    assert policy["timeout_action"] == "pass" and policy["timeout_pass_max_level"] == 7
    with session_scope(engine) as s:
        assert queue.apply_timeouts(s, now=LATER) == 3
    assert [status(engine, t) for t in (severe, forbidden, absolute)] == ["timeout_passed", "escalated", "escalated"]
    with session_scope(engine) as s:
        detail = s.scalar(sa.select(AuditEntry.detail).where(AuditEntry.object_id == forbidden,
                                                             AuditEntry.action == "task.escalate"))
        rec = reviews.get_review(s, review_id=s.get(Task, forbidden).review_id, principal=world.his_m1)
    assert detail["because"] == "max_level" and detail["max_level"] == 8
    assert rec is not None and rec.outcome == "escalated" and not rec.decided


def test_an_institution_can_lower_what_a_timeout_may_pass(engine, world) -> None:
    with session_scope(engine) as s:
        set_policy(s, institution_id=world.ids["M1"], policy=Policy(timeout_pass_max_level=5))
    mild, policy = submit(engine, world.his_m1, "RX-L5", level=5)
    serious, _ = submit(engine, world.his_m1, "RX-L6", level=6)
    assert policy["timeout_pass_max_level"] == 5
    with session_scope(engine) as s:
        assert queue.apply_timeouts(s, now=LATER) == 2
    assert (status(engine, mild), status(engine, serious)) == ("timeout_passed", "escalated")


def test_the_policy_recorded_on_the_review_decides_not_a_later_change(engine, world) -> None:
    task, _ = submit(engine, world.his_m1, "RX-SNAP", level=7)
    with session_scope(engine) as s:  # changed after the review: it applies to later reviews only
        set_policy(s, institution_id=world.ids["M1"], policy=Policy(timeout_pass_max_level=4))
        assert policy_for(s, institution_id=world.ids["M1"]).timeout_pass_max_level == 4
    with session_scope(engine) as s:
        assert queue.apply_timeouts(s, now=LATER) == 1
    assert status(engine, task) == "timeout_passed"


def test_an_engine_failure_sent_to_a_pharmacist_is_never_passed_by_a_timeout(engine, world) -> None:
    with session_scope(engine) as s:
        set_policy(s, institution_id=world.ids["M1"], policy=Policy(fail_mode="closed"))
    task, _ = submit(engine, world.his_m1, "RX-FAILED", level=None, review_fn=FakePipeline(fail_with=MemoryError("x")))
    with session_scope(engine) as s:
        assert queue.apply_timeouts(s, now=LATER) == 1
        detail = s.scalar(sa.select(AuditEntry.detail).where(AuditEntry.object_id == task,
                                                             AuditEntry.action == "task.escalate"))
    assert status(engine, task) == "escalated" and detail["because"] == "engine_failed"


def test_timeout_action_escalate_escalates_every_level(engine, world) -> None:
    with session_scope(engine) as s:
        set_policy(s, institution_id=world.ids["M1"], policy=Policy(timeout_action="escalate"))
    task, _ = submit(engine, world.his_m1, "RX-ESC-ALL", level=5)
    with session_scope(engine) as s:
        assert queue.apply_timeouts(s, now=LATER) == 1
    assert status(engine, task) == "escalated"


def test_timeout_pass_is_monotone_in_the_level_and_bounded_by_the_policy() -> None:
    for limit in range(11):
        policy = Policy(timeout_pass_max_level=limit)
        passed = [timeout_passes(policy, max_level=level) for level in range(10)]
        assert passed == [level <= limit for level in range(10)]
        assert not any(timeout_passes(Policy(timeout_pass_max_level=limit, timeout_action="escalate"), max_level=lv)
                       for lv in range(10))
    with pytest.raises(InvalidRequestError, match="timeout_pass_max_level"):
        Policy(timeout_pass_max_level=11)
