"""Connection timeouts for slow and idle clients, at the HTTP protocol level.

uvicorn closes an idle keep-alive connection after ``timeout_keep_alive``, but it has no
timeout for *receiving* a request (uvicorn issue #157, "--timeout-request-start" and
"--timeout-request-complete", never built): its keep-alive timer is cancelled by every byte
received, and a fresh connection has no timer at all. So a client that connects and sends
nothing, or sends its headers a byte every few seconds (slowloris), holds a connection and
its memory forever, and enough of them exhaust the process's file descriptors. ASGI
middleware cannot help: the application is called only once the headers are complete.

:func:`guarded_h11` subclasses uvicorn's h11 protocol with two deadlines, measured on the
event loop's clock:

* **headers**: from the connection being opened, or from the first byte of the next request
  on a kept-alive connection, the request line and headers must be complete within
  ``header_timeout_seconds``;
* **body**: once the headers are in, the whole body must arrive within ``body_timeout_seconds``.

A client past either deadline gets ``408 Request Timeout`` (when no response has started)
and the connection is closed. Once a request is fully received the deadlines are off: a
long-poll or a slow review is never cut. Idle time between requests stays uvicorn's
``timeout_keep_alive``. :func:`uvicorn_options` is what ``serve`` passes to uvicorn.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import h11
from uvicorn.protocols.http.h11_impl import H11Protocol

from audit_engine.settings import Settings

log = logging.getLogger("api.connections")

_TIMEOUT_RESPONSE = (
    b"HTTP/1.1 408 Request Timeout\r\ncontent-type: text/plain; charset=utf-8\r\n"
    b"content-length: 15\r\nconnection: close\r\n\r\nRequest Timeout"
)
_REQUEST_DONE = (h11.DONE, h11.MUST_CLOSE, h11.CLOSED, h11.ERROR, h11.SWITCHED_PROTOCOL)


class GuardedH11Protocol(H11Protocol):
    """uvicorn's h11 protocol with header and body receive deadlines (see the module)."""

    header_timeout: float = 10.0
    body_timeout: float = 60.0

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._deadline: asyncio.TimerHandle | None = None
        self._waiting_for: str | None = None  # "headers" | "body" while a deadline runs

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._arm("headers")

    def data_received(self, data: bytes) -> None:
        if self._waiting_for is None and self.conn.their_state is h11.IDLE:
            self._arm("headers")  # the first bytes of the next request on a kept-alive connection
        super().data_received(data)
        self._follow()

    def on_response_complete(self) -> None:
        super().on_response_complete()
        self._follow()  # a pipelined request may have been parsed just now

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        super().connection_lost(exc)

    def _follow(self) -> None:
        """Move the deadline along with the request: headers → body → none."""
        state = self.conn.their_state
        if state is h11.SEND_BODY:
            if self._waiting_for != "body":
                self._arm("body")
        elif state in _REQUEST_DONE:
            self._disarm()

    def _arm(self, what: str) -> None:
        self._disarm()
        timeout = self.header_timeout if what == "headers" else self.body_timeout
        self._waiting_for = what
        self._deadline = self.loop.call_later(timeout, self._expired, what, timeout)

    def _disarm(self) -> None:
        if self._deadline is not None:
            self._deadline.cancel()
        self._deadline, self._waiting_for = None, None

    def _expired(self, what: str, timeout: float) -> None:
        self._deadline, self._waiting_for = None, None
        if self.transport.is_closing():
            return
        log.info("%s closing a slow client: request %s not received within %.1f s", self.client, what, timeout)
        if self.cycle is None or not self.cycle.response_started:
            self.transport.write(_TIMEOUT_RESPONSE)
        if self.cycle is not None:
            self.cycle.keep_alive = False
        self.transport.close()


def guarded_h11(header_timeout: float, body_timeout: float) -> type[GuardedH11Protocol]:
    """The protocol class with these deadlines (uvicorn instantiates it per connection)."""
    return type("GuardedH11Protocol", (GuardedH11Protocol,),
                {"header_timeout": header_timeout, "body_timeout": body_timeout})


def uvicorn_options(settings: Settings) -> dict[str, Any]:
    """The keyword arguments ``uvicorn.run`` / ``uvicorn.Config`` get for the connection limits."""
    return {
        "http": guarded_h11(settings.header_timeout_seconds, settings.body_timeout_seconds),
        # uvicorn types it as int but only hands it to loop.call_later: a float works.
        "timeout_keep_alive": settings.keep_alive_seconds,
    }
