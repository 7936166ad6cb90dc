"""Submitting and reading reviews: one transaction, idempotency, immutability, fail modes, retention."""

from __future__ import annotations

import threading
from datetime import datetime

import pytest
import sqlalchemy as sa
from store_support import FakePipeline, World, medication_bundle

from audit_engine import audit_log, feedback, submission
from audit_engine.errors import InputIssue, IntakeError
from audit_engine.policy import Policy
from audit_engine.store import retention, reviews
from audit_engine.store.db import session_scope
from audit_engine.store.models import (
    AuditEntry,
    FindingRow,
    ImmutableRecordError,
    Prescription,
    Review,
    ReviewAccess,
    Task,
)
from audit_engine.store.policies import set_policy


def submit(engine: sa.Engine, principal: object, payload: dict, pipeline: FakePipeline, **kw: object):
    with session_scope(engine) as s:
        return submission.submit_review(
            s, principal=principal, payload=payload, kind="bundle", engine=None, review_fn=pipeline, **kw  # type: ignore[arg-type]
        )


def count(engine: sa.Engine, model: type) -> int:
    with session_scope(engine) as s:
        return int(s.scalar(sa.select(sa.func.count()).select_from(model)) or 0)


def test_recheck_verdict_stores_everything_and_opens_one_task(engine, world: World, pipeline) -> None:
    payload = medication_bundle("RX-0001", levels=(6, 2))
    rec = submit(engine, world.his_m1, payload, pipeline)
    assert rec.verdict == "recheck" and rec.outcome == "pending" and not rec.decided
    assert [f.level for f in rec.findings] == [6, 2]
    assert rec.task is not None and rec.task.status == "pending" and rec.task.deadline_at is not None
    assert rec.policy == Policy().snapshot()
    assert rec.rulebase_version == pipeline.version
    with session_scope(engine) as s:
        rx = s.get(Prescription, rec.prescription_id)
        assert rx is not None and rx.identifier == "RX-0001" and rx.institution_id == world.ids["M1"]
        assert '"RX-0001"' in rx.raw
        assert s.scalar(sa.select(sa.func.count()).select_from(FindingRow).where(FindingRow.review_id == rec.id)) == 2


@pytest.mark.parametrize(
    ("levels", "verdict", "outcome"),
    [((), "pass", "system_pass"), ((3,), "explain", "awaiting_reason"), ((9,), "block", "auto_return")],
)
def test_verdicts_without_a_pharmacist_open_no_task(engine, world, pipeline, levels, verdict, outcome) -> None:
    rec = submit(engine, world.his_m1, medication_bundle(f"RX-{verdict}", levels=levels), pipeline)
    assert (rec.verdict, rec.outcome, rec.task) == (verdict, outcome, None)
    assert rec.decided
    assert count(engine, Task) == 0


def test_same_identifier_returns_the_same_review_and_no_second_task(engine, world, pipeline) -> None:
    first = submit(engine, world.his_m1, medication_bundle("RX-IDEM", levels=(6,)), pipeline)
    again = submit(engine, world.his_m1, medication_bundle("RX-IDEM", levels=(6,)), pipeline)
    assert again.id == first.id and again.replayed and not first.replayed
    assert count(engine, Task) == 1 and count(engine, Review) == 1 and count(engine, Prescription) == 1


def test_same_identifier_from_another_institution_is_a_different_prescription(engine, world, pipeline) -> None:
    a = submit(engine, world.his_m1, medication_bundle("RX-SHARED", levels=(6,)), pipeline)
    b = submit(engine, world.his_m2, medication_bundle("RX-SHARED", levels=(6,)), pipeline)
    assert a.id != b.id and count(engine, Task) == 2


def test_without_identifier_every_submit_is_a_new_review(engine, world, pipeline) -> None:
    a = submit(engine, world.his_m1, medication_bundle(None), pipeline)
    b = submit(engine, world.his_m1, medication_bundle(None), pipeline)
    assert a.id != b.id


def test_concurrent_submits_of_one_identifier_create_one_review(engine, world, pipeline) -> None:
    payload = medication_bundle("RX-RACE", levels=(6,))
    barrier = threading.Barrier(6)
    results: list[str] = []
    errors: list[BaseException] = []

    def worker() -> None:
        try:
            barrier.wait()
            results.append(submit(engine, world.his_m1, payload, FakePipeline()).id)
        except BaseException as exc:  # surfaced by the assert below
            errors.append(exc)

    threads = [threading.Thread(target=worker) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert len(set(results)) == 1
    assert count(engine, Review) == 1 and count(engine, Task) == 1


def test_a_failure_midway_leaves_no_half_written_review(engine, world, pipeline, monkeypatch) -> None:
    def boom(*args: object, **kwargs: object) -> int:
        raise RuntimeError("disk full while writing the audit entry")

    monkeypatch.setattr(audit_log, "append_many", boom)
    with pytest.raises(RuntimeError):
        submit(engine, world.his_m1, medication_bundle("RX-HALF", levels=(6,)), pipeline)
    monkeypatch.undo()
    for model in (Prescription, Review, FindingRow, Task, AuditEntry):
        assert count(engine, model) == 0, model.__tablename__
    # and the identifier is still free: a retry succeeds normally
    assert not submit(engine, world.his_m1, medication_bundle("RX-HALF", levels=(6,)), pipeline).replayed


def test_bad_input_raises_intake_error_and_writes_nothing(engine, world) -> None:
    def reject(payload: dict, **kw: object) -> None:
        raise IntakeError([InputIssue("required", "缺少 MedicationRequest", "Bundle.entry")], status=422)

    with pytest.raises(IntakeError) as caught:
        submit(engine, world.his_m1, medication_bundle("RX-BAD"), reject)  # type: ignore[arg-type]
    assert caught.value.issues[0].expression == "Bundle.entry"
    assert count(engine, Prescription) == 0 and count(engine, AuditEntry) == 0


@pytest.mark.parametrize(("fail_mode", "verdict"), [("closed", "recheck"), ("open", "pass")])
def test_an_engine_failure_follows_the_fail_mode_and_is_recorded(engine, world, fail_mode, verdict) -> None:
    with session_scope(engine) as s:
        set_policy(s, institution_id=world.ids["M1"], policy=Policy(fail_mode=fail_mode))
    rec = submit(engine, world.his_m1, medication_bundle("RX-FAIL"), FakePipeline(fail_with=MemoryError("boom")))
    assert rec.verdict == verdict
    assert rec.engine_failed and rec.fail_mode == fail_mode and "MemoryError" in (rec.engine_error or "")
    assert rec.policy["fail_mode"] == fail_mode
    assert (rec.task is not None) == (verdict == "recheck")


def test_prescriptions_refuse_updates_through_the_orm(engine, world, pipeline) -> None:
    rec = submit(engine, world.his_m1, medication_bundle("RX-IMM"), pipeline)
    with pytest.raises(ImmutableRecordError) as caught, session_scope(engine) as s:
        rx = s.get(Prescription, rec.prescription_id)
        assert rx is not None
        rx.raw = "{}"
        s.flush()
    assert caught.value.location == f"prescriptions/{rec.prescription_id}"


def test_prescriptions_refuse_updates_through_raw_sql(engine, world, pipeline) -> None:
    rec = submit(engine, world.his_m1, medication_bundle("RX-IMM-SQL"), pipeline)
    with pytest.raises(sa.exc.DatabaseError, match="immutable"), engine.begin() as conn:
        conn.execute(sa.text("UPDATE prescriptions SET raw = '{}' WHERE id = :id"), {"id": rec.prescription_id})
    with session_scope(engine) as s:
        rx = s.get(Prescription, rec.prescription_id)
        assert rx is not None and rx.raw != "{}"


@pytest.mark.parametrize(
    ("control", "unknown", "cls", "years"),
    [
        (None, False, "ordinary", 1),
        ("精二", False, "toxic_psy2", 2),
        ("毒性", False, "toxic_psy2", 2),
        ("精一", False, "narcotic_psy1", 3),
        ("麻醉", False, "narcotic_psy1", 3),
        (None, True, "narcotic_psy1", 3),  # an unidentified drug might be controlled: keep longest
    ],
)
def test_retention_class_follows_the_strictest_control_class(engine, world, pipeline, control, unknown, cls, years) -> None:
    rec = submit(engine, world.his_m1, medication_bundle("RX-RET", control=control, unknown_drug=unknown), pipeline)
    assert rec.retention_class == cls
    with session_scope(engine) as s:
        rx = s.get(Prescription, rec.prescription_id)
        assert rx is not None
        assert rx.retain_until.year - rx.received_at.year == years
        assert (rx.retain_until.month, rx.retain_until.day) == (rx.received_at.month, rx.received_at.day)


def test_retention_of_a_leap_day_prescription_ends_on_28_february() -> None:
    assert str(retention.retain_until(datetime(2028, 2, 29, 9), "ordinary")) == "2029-02-28"


def test_unchecked_facts_go_to_a_pharmacist_even_without_findings(engine, world, pipeline) -> None:
    rec = submit(engine, world.his_m1, medication_bundle("RX-UNK", unknown_drug=True), pipeline)
    assert rec.unchecked and rec.verdict == "recheck" and rec.task is not None


def test_emergency_prescriptions_are_marked(engine, world, pipeline) -> None:
    rec = submit(engine, world.his_m1, medication_bundle("RX-EMER", encounter_class="EMER", levels=(6,)), pipeline)
    assert rec.emergency and rec.task is not None and rec.task.emergency


def test_every_read_of_a_prescription_is_recorded_in_the_access_record_not_the_history(engine, world, pipeline) -> None:
    rec = submit(engine, world.his_m1, medication_bundle("RX-READ", levels=(6,)), pipeline)
    with session_scope(engine) as s:
        got = reviews.get_review(s, review_id=rec.id, principal=world.ph_c1)
        assert got is not None and got.id == rec.id
        raw = reviews.get_prescription_raw(s, review_id=rec.id, principal=world.ph_c1)
        assert raw is not None and "RX-READ" in raw
        listed = reviews.list_reviews(s, principal=world.quality)
        assert [r.id for r in listed] == [rec.id]
    with session_scope(engine) as s:
        reads = s.scalars(sa.select(ReviewAccess).where(ReviewAccess.review_id == rec.id).order_by(ReviewAccess.id)).all()
        assert [(a.action, a.actor_name, a.institution_id) for a in reads] == [
            ("read", "ph_c1", world.ids["M1"]),
            ("read_raw", "ph_c1", world.ids["M1"]),
            ("list", "quality", world.ids["M1"]),
        ]
        assert s.scalar(sa.select(sa.func.count()).select_from(AuditEntry).where(AuditEntry.action.like("prescription.%"))) == 0
        history = reviews.get_review(s, review_id=rec.id, principal=world.his_m1)
        assert history is not None
        assert [h.action for h in history.history] == ["review.created", "task.created"]


def test_the_access_record_refuses_updates_and_deletes(engine, world, pipeline) -> None:
    rec = submit(engine, world.his_m1, medication_bundle("RX-READ-IMM", levels=(6,)), pipeline)
    with session_scope(engine) as s:
        reviews.get_review(s, review_id=rec.id, principal=world.ph_c1)
    for sql in ("UPDATE review_access SET actor_name = 'nobody'", "DELETE FROM review_access"):
        with pytest.raises(sa.exc.DatabaseError, match="immutable"), engine.begin() as conn:
            conn.execute(sa.text(sql))
    assert count(engine, ReviewAccess) == 1


def test_an_institution_sees_only_its_own_and_a_centres_users_see_its_members(engine, world, pipeline) -> None:
    rec = submit(engine, world.his_m1, medication_bundle("RX-VIS", levels=(6,)), pipeline)
    with session_scope(engine) as s:
        assert reviews.get_review(s, review_id=rec.id, principal=world.his_m1) is not None
        # The centre's HIS is one institution's software: members' prescriptions are not its own.
        assert reviews.get_review(s, review_id=rec.id, principal=world.his_c1) is None
        assert reviews.get_review(s, review_id=rec.id, principal=world.ph_c1) is not None
        assert reviews.get_review(s, review_id=rec.id, principal=world.quality) is not None  # alliance-wide
        assert reviews.get_review(s, review_id=rec.id, principal=world.his_m2) is None
        assert reviews.get_review(s, review_id=rec.id, principal=world.his_c2) is None
        assert reviews.get_review(s, review_id=rec.id, principal=world.ph_c2) is None
        assert [r.id for r in reviews.list_reviews(s, principal=world.ph_c2)] == []
        assert [r.id for r in reviews.list_reviews(s, principal=world.ph_c1)] == [rec.id]


def test_an_overridden_explain_card_with_a_reason_is_the_doctors_explanation(engine, world, pipeline) -> None:
    rec = submit(engine, world.his_m1, medication_bundle("RX-EXPL", levels=(3,)), pipeline)
    with session_scope(engine) as s:
        feedback.record_feedback(
            s, review_id=rec.id, principal=world.his_m1, outcome="overridden", rule_id="TEST-001", reason="患者耐受良好"
        )
    with session_scope(engine) as s:
        got = reviews.get_review(s, review_id=rec.id, principal=world.his_m1)
        assert got is not None and got.outcome == "explained"
        assert "feedback.overridden" in [h.action for h in got.history]


def test_an_unknown_replaced_review_is_refused_before_anything_is_written(engine, world, pipeline) -> None:
    from audit_engine.errors import NotFoundError

    with session_scope(engine) as s:  # the caller catches the error and commits anyway
        with pytest.raises(NotFoundError) as caught:
            submission.submit_review(s, principal=world.his_m1, payload=medication_bundle("RX-ORPHAN"), kind="bundle",
                                  engine=None, review_fn=pipeline, replaces_review_id="no-such-review")
    assert caught.value.location == "Review/no-such-review"
    assert count(engine, Prescription) == 0 and count(engine, AuditEntry) == 0
