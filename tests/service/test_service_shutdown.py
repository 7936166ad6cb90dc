"""``audit-engine serve`` stops like a standard service: SIGTERM to its pid alone (as ``kill``,
docker and systemd send it) stops every process it started, and children never outlive it."""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from dbutil import fresh_database
from svcutil import Deployment, Server, deploy, free_port


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


@pytest.fixture
def deployment(tmp_path: Path) -> Iterator[Deployment]:
    for url in fresh_database("sqlite", tmp_path):
        yield deploy(url, tmp_path)


@pytest.mark.parametrize("workers", [1, 2])
def test_sigterm_to_serve_alone_stops_every_process_it_started(
        deployment: Deployment, tmp_path: Path, workers: int) -> None:
    server = Server(deployment.env, free_port(), tmp_path / "server.log", workers=workers)
    server.start()
    assert server.proc is not None
    sid = server.proc.pid
    try:
        started = session_members(sid)
        # serve, the background worker, multiprocessing's resource tracker, and the API processes
        assert len(started) >= 2 + (workers if workers > 1 else 0), started
        os.kill(sid, signal.SIGTERM)
        assert server.proc.wait(10) == 0
        left = wait_until_empty(sid, 10)
        assert left == set(), (left, server.log.read_text(errors="replace"))
    finally:
        server.kill()
        for pid in session_members(sid):
            os.kill(pid, signal.SIGKILL)


def test_children_stop_when_serve_is_killed_outright(deployment: Deployment, tmp_path: Path) -> None:
    """SIGKILL cannot be handled: the worker and API processes notice their parent is gone."""
    server = Server(deployment.env, free_port(), tmp_path / "server.log", workers=2)
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
