"""Slow and idle clients are disconnected (``api.connection_guard``), fast ones are not.

A real uvicorn server with the guarded protocol runs in a thread on a free port, with
short limits (0.5 s), and plain sockets play the clients: one that connects and says
nothing, one that sends its headers a byte at a time, one whose body stops arriving, one
that idles on a kept-alive connection. Socket timeouts are generous (10 s): they only stop
a failing test from hanging, nothing here measures speed.
"""

from __future__ import annotations

import asyncio
import socket
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
import uvicorn

from api.connection_guard import uvicorn_options
from audit_engine.settings import Settings

LIMIT_S = 0.5
GENEROUS_S = 10.0


async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    """Reads the whole body, waits 1.5 s on /slow (longer than every limit), answers 200."""
    if scope["type"] != "http":
        return
    body = b""
    while True:
        message = await receive()
        body += message.get("body", b"")
        if not message.get("more_body"):
            break
    if scope["path"] == "/slow":
        await asyncio.sleep(3 * LIMIT_S)
    reply = b"ok " + str(len(body)).encode()
    await send({"type": "http.response.start", "status": 200,
                "headers": [(b"content-type", b"text/plain"), (b"content-length", str(len(reply)).encode())]})
    await send({"type": "http.response.body", "body": reply})


@pytest.fixture
def port() -> Iterator[int]:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        free = int(s.getsockname()[1])
    settings = Settings(database_url="sqlite://", keep_alive_seconds=LIMIT_S, header_timeout_seconds=LIMIT_S,
                        body_timeout_seconds=LIMIT_S)
    config = uvicorn.Config(app, host="127.0.0.1", port=free, log_level="warning", lifespan="off",
                            **uvicorn_options(settings))
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + GENEROUS_S
    while not server.started:
        assert time.monotonic() < deadline and thread.is_alive(), "server did not start"
        time.sleep(0.02)
    yield free
    server.should_exit = True
    thread.join(GENEROUS_S)


def connect(port: int) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", port), timeout=GENEROUS_S)
    sock.settimeout(GENEROUS_S)
    return sock


def read_until_closed(sock: socket.socket) -> bytes:
    """Everything the server sends until it closes the connection (raises on the 10 s timeout)."""
    out = b""
    while True:
        chunk = sock.recv(4096)
        if not chunk:
            return out
        out += chunk


def request(path: str = "/", body: bytes = b"") -> bytes:
    return (f"POST {path} HTTP/1.1\r\nHost: rx.county\r\nContent-Length: {len(body)}\r\n\r\n").encode() + body


def test_a_client_that_connects_and_sends_nothing_gets_408_and_is_disconnected(port: int) -> None:
    with connect(port) as sock:
        answer = read_until_closed(sock)
    assert answer.startswith(b"HTTP/1.1 408 ")


def test_a_client_sending_its_headers_byte_by_byte_is_disconnected(port: int) -> None:
    head = b"GET / HTTP/1.1\r\nHost: rx.county\r\n" + b"X-Padding: " + b"a" * 10_000
    sent = 0
    with connect(port) as sock:
        def trickle() -> None:
            nonlocal sent
            try:
                for byte in head:  # a byte every 20 ms: 200 s for the whole header, never complete
                    sock.send(bytes([byte]))
                    sent += 1
                    time.sleep(0.02)
            except OSError:
                pass  # the server closed the connection: what we want

        sender = threading.Thread(target=trickle, daemon=True)
        sender.start()
        answer = read_until_closed(sock)
        assert sent < len(head)  # closed while the client was still sending its headers
    sender.join(GENEROUS_S)
    assert answer.startswith(b"HTTP/1.1 408 ")


def test_a_body_that_stops_arriving_gets_408(port: int) -> None:
    with connect(port) as sock:
        sock.sendall(b"POST / HTTP/1.1\r\nHost: rx.county\r\nContent-Length: 1000\r\n\r\n" + b"{" * 10)
        answer = read_until_closed(sock)
    assert answer.startswith(b"HTTP/1.1 408 ")


def test_an_idle_keep_alive_connection_is_closed(port: int) -> None:
    with connect(port) as sock:
        sock.sendall(request(body=b"{}"))
        answer = read_until_closed(sock)  # the response, then the close after the idle limit
    assert answer.startswith(b"HTTP/1.1 200 ") and answer.endswith(b"ok 2")


def test_a_slow_answer_to_a_complete_request_is_not_cut(port: int) -> None:
    with connect(port) as sock:
        sock.sendall(request("/slow", b'{"x": 1}'))
        answer = read_until_closed(sock)
    assert answer.startswith(b"HTTP/1.1 200 ") and b"ok 8" in answer


def test_a_kept_alive_connection_serves_the_next_request_sent_in_time(port: int) -> None:
    with connect(port) as sock:
        sock.sendall(request(body=b"1"))
        first = b""
        while not first.endswith(b"ok 1"):
            chunk = sock.recv(4096)
            assert chunk, first
            first += chunk
        time.sleep(LIMIT_S / 5)
        sock.sendall(request(body=b"22"))
        rest = read_until_closed(sock)
    assert first.startswith(b"HTTP/1.1 200 ")
    assert rest.startswith(b"HTTP/1.1 200 ") and b"ok 2" in rest


def test_the_limits_are_settings() -> None:
    from audit_engine.settings import load_settings

    s = Settings(database_url="sqlite://")
    assert (s.keep_alive_seconds, s.header_timeout_seconds, s.body_timeout_seconds) == (5.0, 10.0, 60.0)
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("AUDIT_KEEP_ALIVE_SECONDS", "3")
        mp.setenv("AUDIT_HEADER_TIMEOUT_SECONDS", "4")
        mp.setenv("AUDIT_BODY_TIMEOUT_SECONDS", "20")
        loaded = load_settings()
    assert (loaded.keep_alive_seconds, loaded.header_timeout_seconds, loaded.body_timeout_seconds) == (3, 4, 20)
    options = uvicorn_options(loaded)
    assert options["timeout_keep_alive"] == 3 and options["http"].header_timeout == 4
