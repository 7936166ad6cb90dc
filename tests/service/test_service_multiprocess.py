"""Several service processes behind one PostgreSQL: each timeout fires once, a dead API process
is restarted by uvicorn's supervisor, and ``serve`` restarts its dead background worker (on
SQLite too, where one API process runs beside it)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from datetime import timedelta
from pathlib import Path

import httpx
import sqlalchemy as sa
from svcutil import ROOT, Deployment, Server, free_port
from test_service_crash import numbered


def test_two_deployments_on_one_postgresql_fire_each_timeout_once_and_restart_a_dead_api_process(
    pg_deployment: Deployment,
) -> None:
    from audit_engine.store.db import make_engine, utcnow
    from audit_engine.store.models import AuditEntry, Review, Task

    d = pg_deployment
    a = Server(d.env, free_port(), d.tmp / "a.log", workers=2)
    b = Server(d.env, free_port(), d.tmp / "b.log", workers=1)
    a.start()
    b.start()
    db = make_engine(d.url)
    try:
        headers = {"Authorization": f"Bearer {d.key}"}
        ids = []
        for n in range(40):
            server = a if n % 2 else b
            r = httpx.post(f"{server.base}/api/v1/reviews", json=numbered(n, "MP"), headers=headers, timeout=10)
            assert r.status_code == 201, r.text
            ids.append(r.json()["id"])
        # Both deployments see every review (nothing lives in one process's memory).
        for rid in ids[:6]:
            assert httpx.get(f"{a.base}/api/v1/reviews/{rid}", headers=headers, timeout=10).status_code == 200
            assert httpx.get(f"{b.base}/api/v1/reviews/{rid}", headers=headers, timeout=10).status_code == 200

        with db.begin() as c:
            c.execute(sa.update(Task).where(Task.status == "pending").values(deadline_at=utcnow() - timedelta(seconds=1)))
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            with db.connect() as c:
                if c.scalar(sa.select(sa.func.count()).select_from(Task).where(Task.status == "pending")) == 0:
                    break
            time.sleep(0.3)
        with db.connect() as c:
            fired = c.execute(sa.select(AuditEntry.object_id, sa.func.count()).where(
                AuditEntry.action.like("task.timeout%")).group_by(AuditEntry.object_id)).all()
            outcomes = set(c.scalars(sa.select(Review.outcome).where(Review.id.in_(ids))))
        assert len(fired) == 40 and all(count == 1 for _, count in fired)
        assert outcomes == {"timeout_pass"}

        # Kill one of deployment A's two API processes: uvicorn's supervisor starts a new one,
        # and the survivor keeps answering meanwhile.
        first_api = a.api_pids()
        assert len(first_api) == 2
        os.kill(first_api[0], signal.SIGKILL)
        deadline = time.monotonic() + 60
        while len(a.api_pids()) < 3 and time.monotonic() < deadline:
            assert httpx.get(f"{a.base}/health", timeout=5).status_code == 200
            time.sleep(0.2)
        new_api = a.api_pids()[2]
        os.kill(new_api, 0)
        deadline = time.monotonic() + 60  # the new process loads the rulebase, then serves
        while time.monotonic() < deadline and not _serves(a.log, new_api):
            time.sleep(0.2)
        assert _serves(a.log, new_api)
        r = httpx.post(f"{a.base}/api/v1/reviews", json=numbered(99, "MP"), headers=headers, timeout=10)
        assert r.status_code == 201, r.text
    finally:
        a.stop()
        b.stop()
        db.dispose()


def test_serve_starts_its_background_worker_again_when_it_dies(deployment: Deployment) -> None:
    d = deployment
    server = Server(d.env, free_port(), d.tmp / "serve.log")
    server.start()
    try:
        [first_pid] = server.worker_pids()
        os.kill(first_pid, signal.SIGKILL)
        deadline = time.monotonic() + 30
        while len(server.worker_pids()) < 2 and time.monotonic() < deadline:
            time.sleep(0.2)
        pids = server.worker_pids()
        assert len(pids) == 2 and pids[1] != first_pid
        os.kill(pids[1], 0)  # the new worker is alive
        assert httpx.get(f"{server.base}/health", timeout=5).status_code == 200
    finally:
        server.stop()


def _serves(log: Path, pid: int) -> bool:
    """Whether API process ``pid`` has finished starting (uvicorn logged it after the app's lifespan start)."""
    text = log.read_text(errors="replace")
    started = text.find(f"Started server process [{pid}]")
    return started >= 0 and "Application startup complete." in text[started:]


def test_serve_without_worker_and_the_worker_command_beside_it_fire_timeouts_and_stop_on_sigterm(
    deployment: Deployment,
) -> None:
    """The production layout: ``serve --no-worker`` and ``audit-engine worker`` as two services."""
    from audit_engine.store.db import make_engine, utcnow
    from audit_engine.store.models import Task

    d = deployment
    server = Server(d.env, free_port(), d.tmp / "serve.log", worker=False)
    server.start()
    db = make_engine(d.url)
    worker = None
    try:
        assert server.worker_pids() == []
        r = httpx.post(f"{server.base}/api/v1/reviews", json=numbered(1, "SPLIT"),
                       headers={"Authorization": f"Bearer {d.key}"}, timeout=10)
        assert r.status_code == 201 and r.json()["verdict"] == "recheck"

        def pending() -> int:
            with db.connect() as c:
                return int(c.scalar(sa.select(sa.func.count()).select_from(Task).where(Task.status == "pending")) or 0)

        with db.begin() as c:
            c.execute(sa.update(Task).where(Task.status == "pending").values(deadline_at=utcnow() - timedelta(seconds=1)))
        time.sleep(1.5)
        assert pending() == 1  # nothing fires timeouts yet

        with (d.tmp / "worker.log").open("wb") as out:
            worker = subprocess.Popen([sys.executable, "-m", "audit_engine.cli", "worker"], env=d.env, cwd=ROOT,
                                      stdout=out, stderr=out, start_new_session=True)
        deadline = time.monotonic() + 30
        while pending() and time.monotonic() < deadline:
            time.sleep(0.2)
        assert pending() == 0
        t = time.monotonic()
        worker.send_signal(signal.SIGTERM)
        assert worker.wait(10) == 0
        assert time.monotonic() - t < 5
    finally:
        if worker is not None and worker.poll() is None:
            os.killpg(worker.pid, signal.SIGKILL)
        server.stop()
        db.dispose()
