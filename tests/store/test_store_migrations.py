"""Migrations build exactly the models' schema, on both databases, and re-running is harmless."""

from __future__ import annotations

import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext

from audit_engine.store import (
    quality_models,  # noqa: F401  (so are the quality workspace tables)
    stats_models,  # noqa: F401  (its tables are part of the schema)
)
from audit_engine.store.db import MIGRATIONS_DIR, make_engine, upgrade_schema
from audit_engine.store.models import Base


def _head() -> str:
    from alembic.config import Config
    from alembic.script import ScriptDirectory

    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
    head = ScriptDirectory.from_config(cfg).get_current_head()
    assert head is not None
    return head


def test_migrations_create_exactly_the_models_schema(engine: sa.Engine) -> None:
    with engine.connect() as conn:
        diffs = compare_metadata(MigrationContext.configure(conn), Base.metadata)
    assert diffs == []


def test_upgrading_twice_is_harmless_and_reaches_head(db_url: str) -> None:
    upgrade_schema(db_url)
    upgrade_schema(db_url)
    eng = make_engine(db_url)
    try:
        with eng.connect() as conn:
            assert conn.execute(sa.text("SELECT version_num FROM alembic_version")).scalar_one() == _head()
            assert conn.execute(sa.text("SELECT last_seq FROM audit_head")).scalar_one() == 0
    finally:
        eng.dispose()


def test_sqlite_runs_in_wal_mode_with_foreign_keys_on(tmp_path) -> None:
    url = f"sqlite:///{tmp_path}/a.sqlite"
    upgrade_schema(url)
    eng = make_engine(url)
    try:
        with eng.connect() as conn:
            assert conn.exec_driver_sql("PRAGMA journal_mode").scalar_one() == "wal"
            assert conn.exec_driver_sql("PRAGMA foreign_keys").scalar_one() == 1
            assert conn.exec_driver_sql("PRAGMA busy_timeout").scalar_one() >= 1000
    finally:
        eng.dispose()


def test_the_default_url_is_a_sqlite_file_under_data(monkeypatch) -> None:
    from audit_engine.settings import load_settings

    monkeypatch.delenv("AUDIT_DATABASE_URL", raising=False)
    assert load_settings().database_url == "sqlite:///data/audit.sqlite"
    monkeypatch.setenv("AUDIT_DATABASE_URL", "postgresql+psycopg://u@h/db")
    assert load_settings().database_url == "postgresql+psycopg://u@h/db"


def test_processes_starting_together_migrate_once(db_url: str) -> None:
    import threading

    errors: list[BaseException] = []

    def start() -> None:
        try:
            upgrade_schema(db_url)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=start) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    eng = make_engine(db_url)
    try:
        with eng.connect() as conn:
            assert conn.execute(sa.text("SELECT count(*) FROM audit_head")).scalar_one() == 1
    finally:
        eng.dispose()


def test_a_read_scope_does_not_wait_for_a_writer_on_sqlite(tmp_path) -> None:
    from audit_engine.store.db import read_scope, session_scope

    url = f"sqlite:///{tmp_path}/r.sqlite"
    upgrade_schema(url)
    eng = make_engine(url, connect_args={"timeout": 0.0, "check_same_thread": False})  # fail fast instead of waiting
    try:
        with session_scope(eng) as writer:
            writer.execute(sa.text("UPDATE audit_head SET last_seq = last_seq"))  # holds the write lock
            with read_scope(eng) as reader:
                assert reader.execute(sa.text("SELECT last_seq FROM audit_head")).scalar_one() == 0
    finally:
        eng.dispose()


def test_the_database_refuses_a_task_status_outside_the_state_machine(engine: sa.Engine) -> None:
    import pytest
    from store_support import FakePipeline, build_world, medication_bundle

    world = build_world(engine)
    from audit_engine import submission
    from audit_engine.store.db import session_scope

    with session_scope(engine) as s:
        rec = submission.submit_review(s, principal=world.his_m1, payload=medication_bundle("RX-CK", levels=(6,)),
                                    kind="bundle", engine=None, review_fn=FakePipeline())
    assert rec.task is not None
    with pytest.raises(sa.exc.IntegrityError), engine.begin() as conn:
        conn.execute(sa.text("UPDATE tasks SET status = 'aproved' WHERE id = :id"), {"id": rec.task.id})
    with pytest.raises(sa.exc.IntegrityError), engine.begin() as conn:
        conn.execute(sa.text("UPDATE institutions SET level = '省级医院' WHERE code = 'M1'"))


def test_the_sqlite_writer_lock_is_released_after_commit_rollback_and_errors(tmp_path) -> None:
    import pytest

    from audit_engine.store.db import WRITE_LOCKS, read_scope, session_scope

    url = f"sqlite:///{tmp_path}/w.sqlite"
    upgrade_schema(url)
    eng = make_engine(url)
    lock = WRITE_LOCKS[eng]
    try:
        with session_scope(eng) as s:
            s.execute(sa.text("UPDATE audit_head SET last_seq = last_seq"))
            assert lock.locked()
        assert not lock.locked()
        with pytest.raises(ZeroDivisionError), session_scope(eng) as s:
            s.execute(sa.text("UPDATE audit_head SET last_seq = last_seq"))
            raise ZeroDivisionError
        assert not lock.locked()
        with pytest.raises(sa.exc.IntegrityError), session_scope(eng) as s:
            s.execute(sa.text("INSERT INTO audit_head (id, last_seq, last_hash) VALUES (1, 0, 'x')"))
        assert not lock.locked()
        with eng.begin() as conn:
            conn.execute(sa.text("SELECT 1"))
        assert not lock.locked()
        with read_scope(eng) as r:
            r.execute(sa.text("SELECT 1"))
            assert not lock.locked()  # readers never take it
    finally:
        eng.dispose()


def test_the_fair_lock_serves_waiters_in_arrival_order() -> None:
    import threading

    from audit_engine.store.db import FairLock

    lock = FairLock()
    assert lock.acquire()
    order: list[int] = []
    arrived = [threading.Event() for _ in range(4)]

    def waiter(n: int) -> None:
        arrived[n].set()
        assert lock.acquire(timeout=30)
        order.append(n)
        lock.release()

    threads = []
    for n in range(4):  # start them one by one so the arrival order is known
        t = threading.Thread(target=waiter, args=(n,))
        t.start()
        arrived[n].wait()
        while len(lock._waiters) < n + 1:
            threading.Event().wait(0.001)
        threads.append(t)
    assert not lock.acquire(timeout=0)  # held, and a timed-out request leaves the queue intact
    lock.release()
    for t in threads:
        t.join()
    assert order == [0, 1, 2, 3] and not lock.locked()


def test_0002_upgrades_a_populated_0001_database_keeping_every_row(db_url: str) -> None:
    """Rows written under 0001 survive 0002: legacy content hashes, the task still pending, the
    policy given the safe default, the issued CDS cards backfilled, duplicate feedback merged,
    and the prescriptions still immutable."""
    import pytest
    from alembic import command
    from alembic.config import Config

    from audit_engine.store.db import MIGRATIONS_DIR

    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
    eng = make_engine(db_url)
    rx, rv = "a" * 32, "b" * 32
    try:
        with eng.begin() as conn:
            cfg.attributes["connection"] = conn
            command.upgrade(cfg, "0001")
        now = {"n": "2026-11-23 08:00:00"}
        with eng.begin() as c:
            c.execute(sa.text("INSERT INTO institutions (id, code, name, level, is_centre, created_at) "
                              "VALUES (1, 'C1', '一县人民医院', '县级医院', true, :n)"), now)
            c.execute(sa.text("INSERT INTO policies (institution_id, explain_at, recheck_at, block_at, fail_mode, "
                              "work_start, work_end, work_days, timezone, timeout_minutes, timeout_action, answer_hours, "
                              "updated_at) VALUES (1, 3, 5, 8, 'closed', '00:00', '24:00', '[1,2,3,4,5,6,7]', "
                              "'Asia/Shanghai', 15, 'pass', 24, :n)"), now)
            c.execute(sa.text("INSERT INTO prescriptions (id, institution_id, identifier, kind, raw, raw_sha256, "
                              "received_at, retention_class, retain_until) VALUES "
                              f"('{rx}', 1, 'urn:his|P-0001', 'cds', '{{}}', 'abc', :n, 'ordinary', '2027-11-23')"), now)
            c.execute(sa.text("INSERT INTO reviews (id, prescription_id, institution_id, rulebase_version, verdict, "
                              "outcome, max_level, unchecked, emergency, items, facts, policy, fail_mode, engine_failed, "
                              f"timings_ms, created_at) VALUES ('{rv}', '{rx}', 1, 'v1', 'recheck', 'pending', 6, false, "
                              "false, '[]', '{}', '{}', 'closed', false, '{}', :n)"), now)
            c.execute(sa.text("INSERT INTO findings (review_id, position, rule_id, title, category, subtype, level, "
                              f"message, evidence, implicated) VALUES ('{rv}', 0, 'DDI-TABLE', 't', '适宜性', 's', 6, "
                              "'m', 'e', '[]')"))
            c.execute(sa.text("INSERT INTO tasks (id, review_id, institution_id, status, emergency, escalated, "
                              f"max_level, created_at, version) VALUES ('t1', '{rv}', 1, 'pending', false, false, 6, :n, 1)"),
                      now)
            for _ in range(2):
                c.execute(sa.text("INSERT INTO feedback (review_id, card_id, outcome, created_at) "
                                  f"VALUES ('{rv}', 'bbbbbbbb-bbbb-bbbb-bbbb-bbbb00000000', 'accepted', :n)"), now)
        upgrade_schema(db_url)
        with eng.begin() as c:
            assert c.execute(sa.text("SELECT identifier, content_hash FROM prescriptions")).all() == [
                ("urn:his|P-0001", "legacy:abc")]
            assert c.execute(sa.text("SELECT status FROM tasks")).scalar_one() == "pending"
            assert c.execute(sa.text("SELECT timeout_pass_max_level FROM policies")).scalar_one() == 7
            assert c.execute(sa.text("SELECT id, review_id, position, rule_id FROM cds_cards")).all() == [
                ("bbbbbbbb-bbbb-bbbb-bbbb-bbbb00000000", rv, 0, "DDI-TABLE")]
            assert c.execute(sa.text("SELECT COUNT(*) FROM feedback")).scalar_one() == 1
            if eng.dialect.name == "sqlite":
                assert c.exec_driver_sql("PRAGMA foreign_key_check").all() == []
        with pytest.raises(sa.exc.DatabaseError, match="immutable"), eng.begin() as c:
            c.execute(sa.text("UPDATE prescriptions SET raw = 'x'"))
        with eng.begin() as c:  # the task may now be superseded
            c.execute(sa.text("UPDATE tasks SET status = 'superseded'"))
    finally:
        eng.dispose()
