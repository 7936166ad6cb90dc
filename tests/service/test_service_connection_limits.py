"""The real ``audit-engine serve`` applies the connection limits from the environment, with
one API process (SQLite) and with several under uvicorn's supervisor (PostgreSQL), and its
background worker verifies the audit chain."""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from dbutil import fresh_database
from svcutil import Deployment, Server, deploy, free_port


@pytest.fixture
def deployment(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Deployment]:
    for url in fresh_database(request.param, tmp_path):
        yield deploy(url, tmp_path)


def read_until_closed(sock: socket.socket) -> bytes:
    out = b""
    while chunk := sock.recv(4096):
        out += chunk
    return out


@pytest.mark.parametrize(("deployment", "workers"), [
    pytest.param("sqlite", 1, id="sqlite-1"),
    pytest.param("postgresql", 2, id="postgresql-2", marks=pytest.mark.postgres),
], indirect=["deployment"])
def test_serve_disconnects_idle_and_slow_header_clients_after_the_configured_limits(
        deployment: Deployment, workers: int) -> None:
    d = deployment
    env = d.env | {"AUDIT_HEADER_TIMEOUT_SECONDS": "1", "AUDIT_KEEP_ALIVE_SECONDS": "1",
                   "AUDIT_CHAIN_CHECK_SECONDS": "0.2"}
    server = Server(env, free_port(), d.tmp / f"serve-{workers}.log", workers=workers)
    server.start()
    try:
        with socket.create_connection(("127.0.0.1", server.port), timeout=20) as idle:
            assert read_until_closed(idle).startswith(b"HTTP/1.1 408 ")
        with socket.create_connection(("127.0.0.1", server.port), timeout=20) as slow:
            slow.sendall(b"GET /health HTTP/1.1\r\nHost: rx.county\r\n")  # and never the blank line
            assert read_until_closed(slow).startswith(b"HTTP/1.1 408 ")
        with socket.create_connection(("127.0.0.1", server.port), timeout=20) as kept:
            kept.sendall(b"GET /health HTTP/1.1\r\nHost: rx.county\r\n\r\n")
            answer = read_until_closed(kept)  # the answer, then closed once idle for 1 s
            assert answer.startswith(b"HTTP/1.1 200 ")
        # The worker verified the chain (the institutions and users made by deploy) and /health says so.
        deadline = time.monotonic() + 20
        while (chain := httpx.get(f"{server.base}/health", timeout=5).json()["audit_chain"])["status"] != "intact":
            assert time.monotonic() < deadline, chain
            time.sleep(0.2)
    finally:
        server.stop()
