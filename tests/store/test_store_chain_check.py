"""The audit chain is verified: ``audit-engine audit verify``, and the worker's incremental check.

Tampering is done as the issue found it possible: with the immutability trigger dropped
(what someone with database rights does first), a ``review.created`` entry's verdict is
changed from recheck to pass. Every test runs on SQLite and PostgreSQL.
"""

from __future__ import annotations

import logging
from typing import Any

import pytest
import sqlalchemy as sa
from store_support import FakePipeline, World, medication_bundle

from audit_engine import audit_log, chain_check, submission, worker
from audit_engine.cli import main
from audit_engine.store.db import is_postgres, session_scope
from audit_engine.store.models import AuditEntry


def submit_reviews(engine: sa.Engine, world: World, n: int) -> None:
    """``n`` prescriptions that need a pharmacist (a level-6 finding each), sealed."""
    for k in range(n):
        with session_scope(engine) as s:
            submission.submit_review(s, principal=world.his_m1, payload=medication_bundle(f"RX-{k:04d}", levels=(6,)),
                                  kind="bundle", engine=None, review_fn=FakePipeline())
    with session_scope(engine) as s:  # what the worker does on PostgreSQL (SQLite sealed already)
        audit_log.seal(s)


def turn_recheck_into_pass(engine: sa.Engine, nth: int) -> int:
    """Bypass the trigger and rewrite the ``nth`` review.created entry's verdict; its chain seq."""
    with engine.begin() as conn:
        conn.exec_driver_sql("DROP TRIGGER audit_log_no_update" + (" ON audit_log" if is_postgres(engine) else ""))
    table = AuditEntry.__table__
    with engine.begin() as conn:
        row = conn.execute(sa.select(table).where(table.c.action == "review.created")
                           .order_by(table.c.chain_seq).offset(nth - 1).limit(1)).one()
        assert row.detail["verdict"] == "recheck"
        conn.execute(sa.update(table).where(table.c.id == row.id).values(detail={**row.detail, "verdict": "pass"}))
    return int(row.chain_seq)


def run_cli(monkeypatch: pytest.MonkeyPatch, db_url: str, capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    monkeypatch.setenv("AUDIT_DATABASE_URL", db_url)
    code = main(["audit", "verify"])
    out = capsys.readouterr()
    return code, out.out + out.err


def test_audit_verify_exits_0_and_prints_the_count_of_an_intact_chain(
        engine: sa.Engine, db_url: str, world: World, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    submit_reviews(engine, world, 3)
    with session_scope(engine) as s:
        total = int(s.scalar(sa.select(sa.func.count()).select_from(AuditEntry)) or 0)
    code, out = run_cli(monkeypatch, db_url, capsys)
    assert code == 0
    assert f"已核验 {total} 条" in out


def test_audit_verify_names_the_first_bad_entry_and_what_is_wrong(
        engine: sa.Engine, db_url: str, world: World, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    submit_reviews(engine, world, 3)
    seq = turn_recheck_into_pass(engine, 2)
    code, out = run_cli(monkeypatch, db_url, capsys)
    assert code == 1
    assert f"链序号 {seq}" in out and "内容与哈希不符" in out and f"此前 {seq - 1} 条完好" in out


def test_audit_verify_names_a_deleted_entry_by_its_missing_seq(
        engine: sa.Engine, db_url: str, world: World, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    submit_reviews(engine, world, 3)
    with engine.begin() as conn:
        conn.exec_driver_sql("DROP TRIGGER audit_log_no_delete" + (" ON audit_log" if is_postgres(engine) else ""))
        conn.execute(sa.text("DELETE FROM audit_log WHERE chain_seq = 3"))
    code, out = run_cli(monkeypatch, db_url, capsys)
    assert code == 1 and "链序号 3" in out and "缺失" in out


def test_the_monitor_finds_the_changed_verdict_and_records_it_once(
        engine: sa.Engine, world: World, caplog: pytest.LogCaptureFixture) -> None:
    submit_reviews(engine, world, 3)
    monitor = chain_check.ChainMonitor()
    assert chain_check.run_check(engine, monitor).state == "intact"
    seq = turn_recheck_into_pass(engine, 3)
    with caplog.at_level(logging.ERROR, logger="audit_engine.chain_check"):
        for _ in range(3):
            status = chain_check.run_check(engine, monitor)
    assert status.state == "broken" and status.bad_seq == seq and "篡改" in (status.problem or "")
    assert sum("audit chain broken" in r.getMessage() for r in caplog.records) == 1  # logged once, not per check
    with session_scope(engine) as s:
        audit_log.seal(s)
        actions = s.scalars(sa.select(AuditEntry.action).where(AuditEntry.object_type == "audit_chain")
                            .order_by(AuditEntry.id)).all()
        assert actions == ["audit.chain_intact", "audit.chain_broken"]
        assert chain_check.latest_status(s).bad_seq == seq


def test_each_check_reads_only_the_new_tail_and_one_bounded_slice(
        engine: sa.Engine, world: World, monkeypatch: pytest.MonkeyPatch) -> None:
    submit_reviews(engine, world, 6)  # 12 entries: review.created and task.created each
    calls: list[tuple[int, int | None, int]] = []
    real = audit_log.verify_segment

    def spy(s: Any, after: audit_log.ChainCursor, *, limit: int, upto: int | None = None) -> audit_log.Segment:
        seg = real(s, after, limit=limit, upto=upto)
        calls.append((after.seq, upto, seg.checked))
        return seg

    monkeypatch.setattr(audit_log, "verify_segment", spy)
    monitor = chain_check.ChainMonitor(batch=5)
    states = []
    for _ in range(3):
        calls.clear()
        states.append(chain_check.run_check(engine, monitor).state)
        assert sum(checked for _, _, checked in calls) <= 2 * 5  # never the whole chain at once
    assert states == ["unchecked", "unchecked", "intact"]  # the first pass takes 12/5 checks
    verified = monitor.tail.seq
    submit_reviews(engine, world, 1)  # two new entries (SQLite) plus the check's own record
    calls.clear()
    chain_check.run_check(engine, monitor)
    tail_call = calls[0]
    assert tail_call[0] == verified  # the tail starts where the last check ended, not at the first entry
    assert monitor.tail.seq > verified


def test_an_entry_edited_after_it_was_verified_is_found_by_the_sweep(engine: sa.Engine, world: World) -> None:
    submit_reviews(engine, world, 6)
    monitor = chain_check.ChainMonitor(batch=4)
    while chain_check.run_check(engine, monitor).state != "intact":
        pass
    seq = turn_recheck_into_pass(engine, 1)  # long verified: the tail check will not see it
    states = [chain_check.run_check(engine, monitor) for _ in range(6)]  # a sweep of ~14 entries, 4 a check
    broken = [st for st in states if st.state == "broken"]
    assert broken and broken[0].bad_seq == seq
    assert states[-1].state == "broken"  # and it stays broken


def test_the_worker_pass_checks_the_chain_when_asked(engine: sa.Engine, world: World) -> None:
    submit_reviews(engine, world, 2)
    monitor = chain_check.ChainMonitor()
    assert worker.tick(engine, sender=lambda *a: 200, chain=monitor).chain == "intact"
    assert worker.tick(engine, sender=lambda *a: 200).chain is None
