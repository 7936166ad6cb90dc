"""The audit log is append-only and hash-chained: tampering shows, and names the row."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import sqlalchemy as sa

from audit_engine import audit_log
from audit_engine.store.db import is_postgres, session_scope


def fill(engine: sa.Engine, n: int) -> None:
    with session_scope(engine) as s:
        for i in range(n):
            audit_log.append(
                s, actor=audit_log.SYSTEM, action="test.event", object_type="review", object_id=f"r{i}",
                detail={"n": i, "text": "药师审核"},
            )
    with session_scope(engine) as s:  # what the worker does on PostgreSQL (SQLite sealed already)
        audit_log.seal(s)


def drop_guard(engine: sa.Engine, what: str) -> None:
    """What a tamperer with DBA rights would do first."""
    name = f"audit_log_no_{what}"
    with engine.begin() as conn:
        conn.exec_driver_sql(f"DROP TRIGGER {name}" + (" ON audit_log" if is_postgres(engine) else ""))


def verify(engine: sa.Engine) -> audit_log.ChainReport:
    with session_scope(engine) as s:
        return audit_log.verify_chain(s)


def test_an_untouched_chain_verifies(engine) -> None:
    fill(engine, 5)
    assert verify(engine) == audit_log.ChainReport(True, 5)


def test_an_empty_chain_verifies(engine) -> None:
    assert verify(engine).ok


def test_each_entry_hashes_the_previous_hash_and_its_canonical_json(engine) -> None:
    fill(engine, 2)
    with session_scope(engine) as s:
        rows = s.scalars(sa.select(audit_log.AuditEntry).order_by(audit_log.AuditEntry.id)).all()
        assert rows[0].prev_hash == audit_log.GENESIS_HASH and rows[1].prev_hash == rows[0].hash
        assert len({r.hash for r in rows}) == 2


def test_the_database_refuses_to_update_or_delete_audit_rows(engine) -> None:
    fill(engine, 1)
    for statement in ("UPDATE audit_log SET action = 'x'", "DELETE FROM audit_log"):
        with pytest.raises(sa.exc.DatabaseError, match="immutable"), engine.begin() as conn:
            conn.exec_driver_sql(statement)
    assert verify(engine).ok


def test_editing_a_row_via_sql_is_found_and_the_row_named(engine) -> None:
    fill(engine, 6)
    drop_guard(engine, "update")
    with engine.begin() as conn:
        conn.execute(sa.text("UPDATE audit_log SET actor_name = 'mallory' WHERE id = 4"))
    report = verify(engine)
    assert not report.ok and report.bad_id == 4 and report.location == "audit_log/4"
    assert report.checked == 3 and "audit_log/4" in (report.problem or "")


def test_editing_the_detail_json_is_found(engine) -> None:
    fill(engine, 3)
    drop_guard(engine, "update")
    with engine.begin() as conn:
        conn.execute(sa.text("UPDATE audit_log SET detail = :d WHERE id = 2"), {"d": '{"n": 99, "text": "药师审核"}'})
    assert verify(engine).bad_id == 2


def test_deleting_a_row_shows_as_a_gap(engine) -> None:
    fill(engine, 5)
    drop_guard(engine, "delete")
    with engine.begin() as conn:
        conn.execute(sa.text("DELETE FROM audit_log WHERE id = 3"))
    report = verify(engine)
    assert not report.ok and report.bad_id == 4 and "3" in (report.problem or "")


def test_truncating_the_tail_shows_at_the_head(engine) -> None:
    fill(engine, 5)
    drop_guard(engine, "delete")
    with engine.begin() as conn:
        conn.execute(sa.text("DELETE FROM audit_log WHERE id = 5"))
    report = verify(engine)
    assert not report.ok and report.checked == 4 and "截断" in (report.problem or "")


def test_rewriting_a_row_and_its_hash_breaks_the_next_link(engine) -> None:
    fill(engine, 4)
    drop_guard(engine, "update")
    with session_scope(engine) as s:
        row = s.execute(sa.select(audit_log.AuditEntry.__table__).where(audit_log.AuditEntry.id == 2)).one()
        forged_row = SimpleNamespace(**{**row._mapping, "actor_name": "mallory"})
        forged = audit_log.entry_hash(row.prev_hash, audit_log._content(forged_row))
    with engine.begin() as conn:
        conn.execute(sa.text("UPDATE audit_log SET actor_name = 'mallory', hash = :h WHERE id = 2"), {"h": forged})
    report = verify(engine)
    assert not report.ok and report.bad_id == 3


def test_sealing_is_idempotent_and_every_entry_ends_sealed(engine) -> None:
    fill(engine, 3)
    with session_scope(engine) as s:
        assert audit_log.seal(s) == 0
        report = audit_log.verify_chain(s)
    assert report.ok and report.checked == 3 and report.unsealed == 0


def test_unsealed_entries_are_counted_not_judged(engine) -> None:
    with session_scope(engine) as s:
        audit_log.append(s, actor=audit_log.SYSTEM, action="test.event", object_type="review", object_id="x")
    report = verify(engine)
    expected_unsealed = 0 if engine.dialect.name == "sqlite" else 1
    assert report.ok and report.unsealed == expected_unsealed and report.checked == 1 - expected_unsealed


def test_an_unsealed_entry_cannot_be_edited_either(engine) -> None:
    with session_scope(engine) as s:
        audit_log.append(s, actor=audit_log.SYSTEM, action="test.event", object_type="review", object_id="x")
    with pytest.raises(sa.exc.DatabaseError, match="immutable"), engine.begin() as conn:
        conn.exec_driver_sql("UPDATE audit_log SET object_id = 'y'")
