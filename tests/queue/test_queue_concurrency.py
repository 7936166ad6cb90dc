"""Many pharmacists and several workers at once: no task is claimed twice, lost, or left open,
and every timeout fires exactly once. The full-size runs are on PostgreSQL (SKIP LOCKED); a
smaller run checks SQLite's serialised path too."""

from __future__ import annotations

import threading
from collections import Counter
from datetime import datetime, timedelta

import pytest
import sqlalchemy as sa
import store_support as testing
from store_support import FakePipeline, World, medication_bundle

from audit_engine import audit_log, queue, submission, webhooks, worker
from audit_engine.auth import Principal
from audit_engine.store.db import make_engine, session_scope
from audit_engine.store.models import AuditEntry, Task
from audit_engine.store.records import FINAL_STATUSES

T0 = datetime(2026, 11, 23, 1, 0)


def fill_queue(engine: sa.Engine, world: World, n: int, *, at: datetime = T0) -> list[str]:
    """``n`` recheck tasks from the centre and its member, with mixed urgency."""
    pipeline = FakePipeline()
    ids: list[str] = []
    with session_scope(engine) as s:
        for i in range(n):
            rec = submission.submit_review(
                s, principal=world.his_m1 if i % 3 else world.his_c1, kind="bundle", engine=None, review_fn=pipeline,
                payload=medication_bundle(f"RX-{i:05d}", levels=(5 + i % 3,), encounter_class="EMER" if i % 7 == 0 else "AMB"),
                now=at + timedelta(seconds=i),
            )
            assert rec.task is not None
            ids.append(rec.task.id)
    return ids


def pharmacist(world: World, n: int) -> Principal:
    return Principal(
        kind="user", id=1000 + n, username=f"ph{n}", roles=frozenset({"pharmacist"}),
        institution_id=world.ids["C1"], institution_code="C1", institution_level="县级医院", is_centre=True,
    )


def work_the_queue(url: str, who: Principal, his: dict[str, Principal], claimed: list[str], errors: list[BaseException],
                   start: threading.Barrier, shared: sa.Engine | None = None) -> None:
    """One pharmacist: claim, decide, and answer returns, until the queue is empty.

    On PostgreSQL each pharmacist has a connection of their own (as separate service
    processes would). On SQLite the pharmacists are threads of one service process and share
    its engine, and with it the engine's first-come, first-served write lock.
    """
    eng = shared or make_engine(url, pool_size=1, max_overflow=0)
    try:
        start.wait()
        while True:
            with session_scope(eng) as s:
                task = queue.claim_next(s, principal=who, now=T0 + timedelta(minutes=1))
            if task is None:
                return
            claimed.append(task.id)
            decision = ("approve", "reject", "return")[int(task.id, 16) % 3]
            with session_scope(eng) as s:
                queue.decide(s, task_id=task.id, principal=who, decision=decision,  # type: ignore[arg-type]
                             reason=None if decision == "approve" else "剂量不适宜", now=T0 + timedelta(minutes=2))
            if decision == "return":
                with session_scope(eng) as s:
                    # Each institution's own HIS answers for its doctors.
                    queue.doctor_answer(s, task_id=task.id, principal=his[str(task.institution_code)],
                                        kind="insist", reason="坚持原方",
                                        now=T0 + timedelta(minutes=3))
    except BaseException as exc:
        errors.append(exc)
    finally:
        if shared is None:
            eng.dispose()


def run_claimers(db_url: str, engine: sa.Engine, world: World, *, tasks: int, claimers: int) -> None:
    ids = fill_queue(engine, world, tasks)
    claimed_by: list[list[str]] = [[] for _ in range(claimers)]
    errors: list[BaseException] = []
    start = threading.Barrier(claimers)
    threads = [
        threading.Thread(target=work_the_queue, args=(db_url, pharmacist(world, n), {"C1": world.his_c1, "M1": world.his_m1}, claimed_by[n], errors,
                                                      start, None if db_url.startswith("postgresql") else engine))
        for n in range(claimers)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    every_claim = [tid for per in claimed_by for tid in per]
    assert len(every_claim) == len(set(every_claim)), "a task was claimed twice"
    assert set(every_claim) == set(ids), "a task was lost"
    with session_scope(engine) as s:
        statuses = Counter(s.scalars(sa.select(Task.status)).all())
        assert set(statuses) <= FINAL_STATUSES and sum(statuses.values()) == tasks
        claims = Counter(s.scalars(sa.select(AuditEntry.object_id).where(AuditEntry.action == "task.claim")).all())
        assert set(claims.values()) == {1}
        audit_log.seal(s)
        assert audit_log.verify_chain(s) == audit_log.ChainReport(True, audit_log.verify_chain(s).checked)
    assert sum(1 for per in claimed_by if per) > 1  # the work really was shared (FIFO writer lock on SQLite)


@pytest.mark.postgres
@pytest.mark.parametrize("db_url", ["postgresql"], indirect=True)
def test_eight_pharmacists_share_five_hundred_tasks_without_collision(db_url, engine, world) -> None:
    run_claimers(db_url, engine, world, tasks=500, claimers=8)


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
def test_concurrent_claimers_on_sqlite_never_collide(db_url, engine, world) -> None:
    run_claimers(db_url, engine, world, tasks=60, claimers=4)


class RecordingSender:
    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.delivery_ids: list[str] = []

    def __call__(self, url: str, body: bytes, headers: dict[str, str]) -> int:
        with self.lock:
            self.delivery_ids.append(headers["X-Audit-Delivery"])
        return 200


def run_workers(db_url: str, engine: sa.Engine, world: World, *, tasks: int, workers: int) -> None:
    with session_scope(engine) as s:
        testing.allow_webhook_host(s, institution_id=world.ids["M1"], host="his.m1.example")
        webhooks.create_subscription(s, institution_id=world.ids["M1"], url="https://his.m1.example/hook")
        testing.allow_webhook_host(s, institution_id=world.ids["C1"], host="his.c1.example")
        webhooks.create_subscription(s, institution_id=world.ids["C1"], url="https://his.c1.example/hook")
    ids = fill_queue(engine, world, tasks)
    sender = RecordingSender()
    errors: list[BaseException] = []
    start = threading.Barrier(workers)
    later = T0 + timedelta(hours=1)  # every deadline (15 min) has passed

    def loop() -> None:
        eng = make_engine(db_url)
        try:
            start.wait()
            idle = 0
            while idle < 2:  # two empty passes in a row: nothing left for this worker
                report = worker.tick(eng, now=later, sender=sender)
                idle = idle + 1 if not (report.timeouts or report.deliveries.attempted) else 0
        except BaseException as exc:
            errors.append(exc)
        finally:
            eng.dispose()

    threads = [threading.Thread(target=loop) for _ in range(workers)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    with session_scope(engine) as s:
        fired = Counter(s.scalars(sa.select(AuditEntry.object_id).where(AuditEntry.action == "task.timeout_pass")).all())
        assert set(fired) == set(ids) and set(fired.values()) == {1}, "a timeout fired twice or never"
        assert set(s.scalars(sa.select(Task.status)).all()) == {"timeout_passed"}
        audit_log.seal(s)
        assert audit_log.verify_chain(s) == audit_log.ChainReport(True, audit_log.verify_chain(s).checked)
    assert len(sender.delivery_ids) == len(set(sender.delivery_ids)) == tasks, "a webhook was sent twice or never"


@pytest.mark.postgres
@pytest.mark.parametrize("db_url", ["postgresql"], indirect=True)
def test_two_workers_on_one_postgres_fire_each_timeout_exactly_once(db_url, engine, world) -> None:
    run_workers(db_url, engine, world, tasks=300, workers=2)


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
def test_two_workers_on_sqlite_fire_each_timeout_exactly_once(db_url, engine, world) -> None:
    run_workers(db_url, engine, world, tasks=40, workers=2)


def test_the_worker_loop_runs_until_stopped_and_keeps_no_state_of_its_own(db_url, engine, world) -> None:
    ids = fill_queue(engine, world, 3, at=datetime(2020, 1, 1))  # long overdue
    stop = threading.Event()
    done = threading.Event()

    def watch() -> None:
        for _ in range(600):  # poll the database, not the clock, for the outcome
            with session_scope(engine) as s:
                if all(s.get(Task, i).status == "timeout_passed" for i in ids):  # type: ignore[union-attr]
                    done.set()
                    break
            stop.wait(0.05)
        stop.set()

    watcher = threading.Thread(target=watch)
    watcher.start()
    worker.run_worker(db_url, stop, interval_s=0.05, sender=RecordingSender())
    watcher.join()
    assert done.is_set()


@pytest.mark.postgres
@pytest.mark.parametrize("db_url", ["postgresql"], indirect=True)
def test_worker_processes_on_one_postgres_fire_each_timeout_once(db_url, engine, world) -> None:
    import multiprocessing

    from store_support import drain_in_process

    with session_scope(engine) as s:
        testing.allow_webhook_host(s, institution_id=world.ids["M1"], host="his.m1.example")
        webhooks.create_subscription(s, institution_id=world.ids["M1"], url="https://his.m1.example/hook")
    ids = fill_queue(engine, world, 120)
    with multiprocessing.get_context("spawn").Pool(3) as pool:
        results = pool.starmap(drain_in_process, [(db_url, (T0 + timedelta(hours=1)).isoformat())] * 3)
    assert sum(fired for fired, _ in results) == len(ids)
    with session_scope(engine) as s:
        fired = Counter(s.scalars(sa.select(AuditEntry.object_id).where(AuditEntry.action == "task.timeout_pass")).all())
        assert set(fired) == set(ids) and set(fired.values()) == {1}
        attempts = s.scalars(sa.select(webhooks.WebhookDelivery.attempts)).all()
        assert len(attempts) == sum(1 for i in range(120) if i % 3) and set(attempts) == {1}
        audit_log.seal(s)
        assert audit_log.verify_chain(s) == audit_log.ChainReport(True, audit_log.verify_chain(s).checked)
