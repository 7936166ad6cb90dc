"""``serve --demo``: a queue that stays workable for an hour, never passes a task silently,
says how to start afresh on a second run, and keeps prescriptions arriving."""

from __future__ import annotations

import io
from datetime import timedelta
from pathlib import Path

import pytest
import sqlalchemy as sa
from dbutil import fresh_database
from fake_engine import FakeEngine

from audit_engine import queue
from audit_engine.demo import DEMO_TIMEOUT_MINUTES, DemoFeed, load_demo, reset_demo
from audit_engine.stats.demo_history import PREFIX as HISTORY_PREFIX
from audit_engine.store.db import make_engine, session_scope, upgrade_schema, utcnow
from audit_engine.store.models import Prescription, Review, Task


def demo_db(tmp_path: Path) -> str:
    url = f"sqlite:///{tmp_path / 'demo.sqlite'}"
    upgrade_schema(url)
    return url


def test_demo_tasks_wait_an_hour_then_escalate_and_none_is_passed_silently(tmp_path: Path) -> None:
    url = demo_db(tmp_path)
    load_demo(url, out=io.StringIO(), engine=FakeEngine())
    db = make_engine(url)
    try:
        with session_scope(db) as s:
            open_tasks = s.scalars(sa.select(Task).where(Task.status == "pending")).all()
            assert open_tasks
            open_ids = [t.id for t in open_tasks]
            assert all(t.deadline_at is not None and t.deadline_at - t.created_at >= timedelta(minutes=60)
                       for t in open_tasks)
            assert queue.apply_timeouts(s, now=utcnow() + timedelta(minutes=59)) == 0
        with session_scope(db) as s:
            fired = queue.apply_timeouts(s, now=utcnow() + timedelta(minutes=DEMO_TIMEOUT_MINUTES + 1))
        with session_scope(db) as s:
            statuses = dict(s.execute(sa.select(Task.status, sa.func.count())
                                      .where(Task.id.in_(open_ids)).group_by(Task.status)).all())
        assert fired == len(open_tasks)
        assert statuses.get("escalated") == len(open_tasks) and "timeout_passed" not in statuses
    finally:
        db.dispose()


def test_a_second_demo_run_lists_the_users_and_says_how_to_reset(tmp_path: Path) -> None:
    url = demo_db(tmp_path)
    load_demo(url, out=io.StringIO(), engine=FakeEngine())
    out = io.StringIO()
    second = load_demo(url, out=out, engine=FakeEngine())
    text = out.getvalue()
    assert not second["created"] and "ak_" not in text and "密码:" not in text
    for user in ("yaoshi1", "yaoshi2", "zhikong", "guanli"):
        assert user in text
    assert "audit-engine serve --demo --reset-demo" in text and "audit-engine user add" in text


@pytest.mark.parametrize("kind", ["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def test_reset_demo_recreates_the_demo_with_new_keys(kind: str, tmp_path: Path) -> None:
    for url in fresh_database(kind, tmp_path):
        upgrade_schema(url)
        reset_and_reload(url)


def reset_and_reload(url: str) -> None:
    first = load_demo(url, out=io.StringIO(), engine=FakeEngine())
    assert reset_demo(url, out=io.StringIO())
    out = io.StringIO()
    again = load_demo(url, out=out, engine=FakeEngine())
    assert again["created"] and again["keys"]["LEAD001"] != first["keys"]["LEAD001"]
    assert again["keys"]["LEAD001"] in out.getvalue()
    db = make_engine(url)
    with db.connect() as c:
        assert c.scalar(sa.select(sa.func.count()).select_from(Review)) == again["reviews"] + 2 + again["history"]
    db.dispose()


def test_reset_demo_refuses_a_database_with_other_institutions(tmp_path: Path) -> None:
    from audit_engine import auth

    url = demo_db(tmp_path)
    load_demo(url, out=io.StringIO(), engine=FakeEngine())
    db = make_engine(url)
    with session_scope(db) as s:
        auth.create_institution(s, code="REAL-HOSP", name="某县中医院", level="县级医院")
    db.dispose()
    out = io.StringIO()
    assert not reset_demo(url, out=out)
    assert "拒绝重置" in out.getvalue() and "REAL-HOSP" in out.getvalue()
    assert not load_demo(url, out=io.StringIO(), engine=FakeEngine())["created"]  # nothing was dropped


def test_the_demo_has_a_returned_prescription_that_came_back_modified(tmp_path: Path) -> None:
    url = demo_db(tmp_path)
    load_demo(url, out=io.StringIO(), engine=FakeEngine())
    db = make_engine(url)
    with db.connect() as c:
        # The day's own pair; the statistics history (HIST- numbers) has many more.
        linked = c.execute(sa.select(Review.id, Review.previous_review_id)
                           .join(Prescription, Prescription.id == Review.prescription_id)
                           .where(Review.previous_review_id.is_not(None),
                                  ~Prescription.identifier.startswith(HISTORY_PREFIX))).all()
        assert len(linked) == 1
        new_id, old_id = linked[0]
        old_task = c.execute(sa.select(Task.status, Task.reason, Task.decided_by).where(Task.review_id == old_id)).one()
        new_status = c.scalar(sa.select(Task.status).where(Task.review_id == new_id))
    db.dispose()
    assert old_task.status == "modified" and old_task.decided_by == "yaoshi2" and "华法林" in old_task.reason
    assert new_status == "pending"


def test_the_demo_feed_sends_fresh_prescriptions_while_serving(tmp_path: Path) -> None:
    url = demo_db(tmp_path)
    engine = FakeEngine()
    load_demo(url, out=io.StringIO(), engine=engine)
    db = make_engine(url)
    with db.connect() as c:
        before = c.scalar(sa.select(sa.func.count()).select_from(Review))
    feed = DemoFeed(url, engine, out=io.StringIO())
    verdicts = [feed.send_one() for _ in range(3)]
    with db.connect() as c:
        after = c.scalar(sa.select(sa.func.count()).select_from(Review))
    db.dispose()
    assert None not in verdicts and after == before + 3  # new numbers: never replayed
