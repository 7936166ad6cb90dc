"""``audit-engine serve`` stops like a standard service: SIGTERM to its pid alone (as ``kill``,
docker and systemd send it) stops every process it started, and children never outlive it."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from dbutil import fresh_database
from svcutil import ROOT, Deployment, Server, deploy, free_port, service_env
from test_service_crash import numbered


def session_members(sid: int) -> set[int]:
    """Live processes whose session id is ``sid`` (the server runs in a session of its own)."""
    pids = set()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        fields = stat[stat.rindex(")") + 2:].split()
        # fields: state, ppid, pgrp, session, ...; a zombie has already exited
        if int(fields[3]) == sid and fields[0] != "Z":
            pids.add(int(entry.name))
    return pids


def wait_until_empty(sid: int, seconds: float) -> set[int]:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        left = session_members(sid)
        if not left:
            return left
        time.sleep(0.2)
    return session_members(sid)


def long_poll(base: str, review_id: str, headers: dict[str, str]) -> None:
    try:
        httpx.get(f"{base}/api/v1/reviews/{review_id}", params={"wait": 30}, headers=headers, timeout=40)
    except httpx.HTTPError:
        pass  # the server went away under it: that is the point


# SQLite runs one API process; --workers 2 (uvicorn's supervisor) runs on PostgreSQL.
SETUPS = [pytest.param("sqlite", 1, id="sqlite-1"),
          pytest.param("postgresql", 2, id="postgresql-2", marks=pytest.mark.postgres)]


@pytest.fixture
def deployment(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Deployment]:
    for url in fresh_database(request.param, tmp_path):
        yield deploy(url, tmp_path)


@pytest.mark.parametrize(("deployment", "workers"), SETUPS, indirect=["deployment"])
def test_sigterm_to_serve_alone_stops_every_process_it_started_within_10_s(
        deployment: Deployment, tmp_path: Path, workers: int) -> None:
    server = Server(deployment.env, free_port(), tmp_path / "server.log", workers=workers)
    server.start()
    assert server.proc is not None
    sid = server.proc.pid
    try:
        started = session_members(sid)
        # serve and the background worker; with --workers N, the N API processes and
        # multiprocessing's resource tracker too
        assert len(started) >= 2 + (workers + 1 if workers > 1 else 0), started
        assert len(server.worker_pids()) == 1
        # A HIS long-polling for the pharmacist's decision holds a request open through the stop.
        headers = {"Authorization": f"Bearer {deployment.key}"}
        review = httpx.post(f"{server.base}/api/v1/reviews", json=numbered(1, "STOP"), headers=headers, timeout=10)
        assert review.status_code == 201 and review.json()["verdict"] == "recheck"
        poll = threading.Thread(target=long_poll, args=(server.base, review.json()["id"], headers))
        poll.start()
        time.sleep(1)
        t = time.monotonic()
        os.kill(sid, signal.SIGTERM)
        assert server.proc.wait(10) == 0
        left = wait_until_empty(sid, 10 - (time.monotonic() - t))
        stopped_in = time.monotonic() - t
        assert left == set(), (left, server.log.read_text(errors="replace"))
        assert stopped_in < 10
        print(f"every process of serve --workers {workers} stopped {stopped_in:.2f} s after SIGTERM")
        poll.join(10)
    finally:
        server.kill()
        for pid in session_members(sid):
            os.kill(pid, signal.SIGKILL)


@pytest.mark.parametrize(("deployment", "workers"), SETUPS, indirect=["deployment"])
def test_children_stop_when_serve_is_killed_outright(deployment: Deployment, tmp_path: Path, workers: int) -> None:
    """SIGKILL cannot be handled: the kernel SIGTERMs the worker and API processes (PR_SET_PDEATHSIG)."""
    server = Server(deployment.env, free_port(), tmp_path / "server.log", workers=workers)
    server.start()
    assert server.proc is not None
    sid = server.proc.pid
    try:
        os.kill(sid, signal.SIGKILL)
        server.proc.wait(10)
        left = wait_until_empty(sid, 10)
        assert left == set(), (left, server.log.read_text(errors="replace"))
    finally:
        for pid in session_members(sid):
            os.kill(pid, signal.SIGKILL)


def test_serve_refuses_several_api_processes_on_sqlite(tmp_path: Path) -> None:
    for url in fresh_database("sqlite", tmp_path):
        env = service_env(url, tmp_path)
        r = subprocess.run([sys.executable, "-m", "audit_engine.cli", "serve", "--workers", "2"], env=env, cwd=ROOT,
                           capture_output=True, text=True, timeout=60)
        assert r.returncode == 2
        assert "SQLite 只支持一个 API 进程" in r.stderr and "PostgreSQL" in r.stderr
