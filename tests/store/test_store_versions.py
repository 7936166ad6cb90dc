"""Idempotency by prescription number *and* content, on SQLite and PostgreSQL: a replay needs the
same clinical content; new content with the same number is a new version that supersedes the
earlier one's open task; concurrent submissions of both contents give one review per content."""

from __future__ import annotations

import threading

import sqlalchemy as sa
from store_support import FakePipeline, World, medication_bundle

from audit_engine import feedback, queue, submission
from audit_engine.store import reviews
from audit_engine.store.db import session_scope
from audit_engine.store.models import Prescription, Review, Task


def submit(engine: sa.Engine, principal: object, payload: dict, **kw: object):
    with session_scope(engine) as s:
        return submission.submit_review(s, principal=principal, payload=payload, kind="bundle", engine=None,  # type: ignore[arg-type]
                                     review_fn=FakePipeline(), **kw)


def tasks(engine: sa.Engine) -> dict[str, str]:
    with session_scope(engine) as s:
        return {t.review_id: t.status for t in s.scalars(sa.select(Task))}


def test_the_same_number_with_new_content_is_a_new_version_that_supersedes_the_open_task(engine, world: World) -> None:
    v1 = submit(engine, world.his_m1, medication_bundle("RX-V", drugs=("阿莫西林胶囊",), levels=(6,)))
    v2 = submit(engine, world.his_m1, medication_bundle("RX-V", drugs=("头孢克肟胶囊",), levels=(6,)))
    assert v2.id != v1.id and not v2.replayed
    assert v2.previous_review_id == v1.id and v2.prescription_identifier == v1.prescription_identifier
    assert tasks(engine) == {v1.id: "superseded", v2.id: "pending"}
    with session_scope(engine) as s:
        old = reviews.get_review(s, review_id=v1.id, principal=world.ph_c1)
        assert old is not None and old.outcome == "superseded" and old.decided
        assert old.next_review_id == v2.id and old.task is not None and old.task.next_review_id == v2.id
        assert old.decision is not None and old.decision["outcome"] == "superseded"
        assert "task.supersede" in [h.action for h in old.history]
        # the queue holds only the current version
        assert [t.review_id for t in queue.list_tasks(s, principal=world.ph_c1)] == [v2.id]


def test_a_claimed_task_of_an_earlier_version_can_no_longer_be_decided(engine, world: World) -> None:
    import pytest

    from audit_engine.errors import TransitionError

    v1 = submit(engine, world.his_m1, medication_bundle("RX-HELD", drugs=("阿莫西林胶囊",), levels=(6,)))
    with session_scope(engine) as s:
        held = queue.claim_next(s, principal=world.ph_c1)
    assert held is not None and held.review_id == v1.id
    submit(engine, world.his_m1, medication_bundle("RX-HELD", drugs=("阿莫西林胶囊", "布洛芬片"), levels=(6,)))
    with pytest.raises(TransitionError, match="superseded"), session_scope(engine) as s:
        queue.decide(s, task_id=held.id, principal=world.ph_c1, decision="approve")


def test_resending_a_version_replays_it_and_an_envelope_change_is_no_new_content(engine, world: World) -> None:
    payload = medication_bundle("RX-SAME", levels=(6,))
    first = submit(engine, world.his_m1, payload)
    resent = medication_bundle("RX-SAME", levels=(6,))
    resent["meta"]["lastUpdated"] = "2026-11-23T09:31:00+08:00"  # envelope only
    resent["timestamp"] = "2026-11-23T09:31:00+08:00"
    resent["entry"].reverse()
    again = submit(engine, world.his_m1, resent)
    assert again.id == first.id and again.replayed
    with session_scope(engine) as s:
        assert s.scalar(sa.select(sa.func.count()).select_from(Prescription)) == 1
    assert tasks(engine) == {first.id: "pending"}


def test_a_decided_earlier_version_keeps_its_decision_and_names_the_new_one(engine, world: World) -> None:
    v1 = submit(engine, world.his_m1, medication_bundle("RX-DONE", drugs=("阿莫西林胶囊",)))  # system pass
    v2 = submit(engine, world.his_m1, medication_bundle("RX-DONE", drugs=("阿莫西林胶囊", "克拉霉素片"), levels=(9,)))
    assert (v1.verdict, v2.verdict, v2.previous_review_id) == ("pass", "block", v1.id)
    with session_scope(engine) as s:
        old = reviews.get_review(s, review_id=v1.id, principal=world.his_m1)
    assert old is not None and old.outcome == "system_pass" and old.next_review_id == v2.id
    assert "review.new_version" in [h.action for h in old.history]


def test_an_explain_verdict_answered_by_a_new_version_counts_as_modified(engine, world: World) -> None:
    v1 = submit(engine, world.his_m1, medication_bundle("RX-EXPLAIN", drugs=("阿莫西林胶囊",), levels=(3,)))
    submit(engine, world.his_m1, medication_bundle("RX-EXPLAIN", drugs=("头孢克肟胶囊",)))
    with session_scope(engine) as s:
        old = reviews.get_review(s, review_id=v1.id, principal=world.his_m1)
    assert old is not None and old.outcome == "modified"


def test_a_modification_with_unchanged_content_is_refused_before_anything_is_written(engine, world: World) -> None:
    import pytest

    from audit_engine.errors import InvalidRequestError

    v1 = submit(engine, world.his_m1, medication_bundle("RX-NOCHANGE", levels=(9,)))
    with pytest.raises(InvalidRequestError, match="内容相同"):
        submit(engine, world.his_m1, medication_bundle("RX-NOCHANGE", levels=(9,)), replaces_review_id=v1.id)


def test_concurrent_submissions_of_two_contents_give_one_review_per_content_in_one_chain(engine, world: World) -> None:
    contents = {
        "A": medication_bundle("RX-RACE-2", drugs=("阿莫西林胶囊",), levels=(6,)),
        "B": medication_bundle("RX-RACE-2", drugs=("阿莫西林胶囊", "克拉霉素片"), levels=(6,)),
    }
    barrier = threading.Barrier(8)
    results: list[tuple[str, str, bool]] = []
    errors: list[BaseException] = []

    def worker(name: str) -> None:
        try:
            barrier.wait()
            rec = submit(engine, world.his_m1, contents[name])
            results.append((name, rec.id, rec.replayed))
        except BaseException as exc:  # surfaced by the assert below
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(name,)) for name in "AAAABBBB"]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    by_content = {name: {rid for n, rid, _ in results if n == name} for name in "AB"}
    assert all(len(ids) == 1 for ids in by_content.values()), by_content
    assert sum(not replayed for _, _, replayed in results) == 2
    with session_scope(engine) as s:
        rows = s.execute(sa.select(Review.id, Review.previous_review_id)).all()
    assert len(rows) == 2
    links = {rid: prev for rid, prev in rows}
    first = next(rid for rid, prev in links.items() if prev is None)
    second = next(rid for rid, prev in links.items() if prev is not None)
    assert links[second] == first  # one chain, whichever content was stored first
    assert tasks(engine) == {first: "superseded", second: "pending"}


def test_the_same_derived_key_with_other_content_is_another_prescription_not_a_version(engine, world: World) -> None:
    first = medication_bundle(None, drugs=("阿莫西林胶囊",), levels=(6,))
    second = medication_bundle(None, drugs=("布洛芬片",), levels=(6,))
    for bundle in (first, second):  # orders numbered alike, no prescription number
        for e in bundle["entry"]:
            if e["resource"]["resourceType"] == "MedicationRequest":
                e["resource"]["identifier"] = [{"system": "urn:his:draft-order", "value": "1"}]
    # The fake pipeline derives no key; this is the shape the real intake derives from the orders' ids.
    key = "sha256:0123456789abcdef0123456789abcdef"

    class Keyed(FakePipeline):
        def __call__(self, payload, **kw):  # type: ignore[no-untyped-def]
            import dataclasses

            result = super().__call__(payload, **kw)
            return dataclasses.replace(result, prescription_id=key)

    with session_scope(engine) as s:
        a = submission.submit_review(s, principal=world.his_m1, payload=first, kind="bundle", engine=None, review_fn=Keyed())
    with session_scope(engine) as s:
        b = submission.submit_review(s, principal=world.his_m1, payload=second, kind="bundle", engine=None, review_fn=Keyed())
    with session_scope(engine) as s:
        c = submission.submit_review(s, principal=world.his_m1, payload=first, kind="bundle", engine=None, review_fn=Keyed())
    assert b.id != a.id and b.previous_review_id is None and c.id == a.id and c.replayed
    assert tasks(engine) == {a.id: "pending", b.id: "pending"}


def test_the_same_card_feedback_sent_concurrently_is_recorded_once(engine, world: World) -> None:
    from audit_engine.store.models import Feedback

    payload = medication_bundle("RX-CARD", levels=(3,))
    with session_scope(engine) as s:
        rec = submission.submit_review(s, principal=world.his_m1, payload=payload, kind="cds", engine=None,
                                    review_fn=FakePipeline())
    from audit_engine.fhir_out import card_id

    card = card_id(rec.id, rec.findings[0], 0)
    barrier = threading.Barrier(6)
    outcomes: list[bool] = []
    errors: list[BaseException] = []

    def send() -> None:
        try:
            barrier.wait()
            with session_scope(engine) as s:
                outcomes.append(feedback.record_card_feedback(s, card_id=card, principal=world.his_m1,
                                                             outcome="overridden", reason="患者耐受"))
        except BaseException as exc:  # surfaced below
            errors.append(exc)

    threads = [threading.Thread(target=send) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == [] and sorted(outcomes) == [False] * 5 + [True]
    with session_scope(engine) as s:
        assert s.scalar(sa.select(sa.func.count()).select_from(Feedback)) == 1
        got = reviews.get_review(s, review_id=rec.id, principal=world.his_m1)
    assert got is not None and got.outcome == "explained"
    assert [h.action for h in got.history].count("feedback.overridden") == 1
