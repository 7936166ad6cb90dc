"""Throttling with the ``limits`` library: failed logins per user name and per client
address, requests per credential, and requests with bad credentials per client address.

Counters live in this process's memory (``limits.storage.MemoryStorage``, moving windows):
with ``--workers N`` each API process counts on its own, so the effective limit is up to N
times the setting; a restart forgets the counts. Windows are moving: ``10/15 minutes``
admits the 11th failure only when the oldest of the last ten is 15 minutes old.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING

from limits import RateLimitItem, parse
from limits.storage import MemoryStorage
from limits.strategies import MovingWindowRateLimiter

if TYPE_CHECKING:
    from starlette.types import ASGIApp, Message, Receive, Scope, Send

    from audit_engine.settings import Settings

OFF = "off"


def parse_limit(text: str) -> RateLimitItem | None:
    """``"10/15 minutes"`` → the limit; ``"off"`` → None. ValueError for anything else."""
    if text.strip().lower() == OFF:
        return None
    try:
        return parse(text)
    except ValueError as exc:
        raise ValueError(f"not a rate limit: {text!r} (write e.g. '10/15 minutes', or 'off'): {exc}") from None


class Throttled(Exception):
    """Over a limit: answer 429 with ``Retry-After: retry_after`` seconds."""

    def __init__(self, message: str, retry_after: int) -> None:
        super().__init__(message)
        self.message = message
        self.retry_after = retry_after


@dataclass(frozen=True, slots=True)
class Limits:
    login_per_user: RateLimitItem | None
    login_per_address: RateLimitItem | None
    requests_per_credential: RateLimitItem | None
    bad_credentials_per_address: RateLimitItem | None


class Throttle:
    """The process's counters (thread-safe: ``MemoryStorage`` locks)."""

    def __init__(self, limits: Limits) -> None:
        self.limits = limits
        self._storage = MemoryStorage()
        self._window = MovingWindowRateLimiter(self._storage)

    def _retry_after(self, item: RateLimitItem, *ids: str) -> int:
        reset = self._window.get_window_stats(item, *ids).reset_time
        return max(1, math.ceil(reset - time.time()))

    def _refuse_if_spent(self, item: RateLimitItem | None, message: str, *ids: str) -> None:
        if item is not None and not self._window.test(item, *ids):
            raise Throttled(message, self._retry_after(item, *ids))

    # ----------------------------------------------------------------- logins
    def before_login(self, username: str, address: str) -> None:
        """Throttled when this user name or this address has used up its failed attempts."""
        self._refuse_if_spent(self.limits.login_per_user, f"用户 {username} 登录失败次数过多，请稍后再试",
                              "login-user", username)
        self._refuse_if_spent(self.limits.login_per_address, "本地址登录失败次数过多，请稍后再试",
                              "login-address", address)

    def login_failed(self, username: str, address: str) -> None:
        if self.limits.login_per_user is not None:
            self._window.hit(self.limits.login_per_user, "login-user", username)
        if self.limits.login_per_address is not None:
            self._window.hit(self.limits.login_per_address, "login-address", address)

    # ----------------------------------------------------------------- credentials
    def credential_used(self, credential: str) -> None:
        """Count one request made with a valid credential; Throttled past the per-credential rate."""
        item = self.limits.requests_per_credential
        if item is not None and not self._window.hit(item, "credential", credential):
            raise Throttled("请求过于频繁：超过每个凭据的请求速率上限", self._retry_after(item, "credential", credential))

    def bad_credentials_blocked(self, address: str) -> int | None:
        """Seconds to wait when ``address`` has sent too many bad credentials lately, else None."""
        item = self.limits.bad_credentials_per_address
        if item is None or self._window.test(item, "bad-credentials", address):
            return None
        return self._retry_after(item, "bad-credentials", address)

    def bad_credentials(self, address: str) -> None:
        if self.limits.bad_credentials_per_address is not None:
            self._window.hit(self.limits.bad_credentials_per_address, "bad-credentials", address)


def throttle_for(settings: Settings) -> Throttle:
    return Throttle(Limits(
        login_per_user=parse_limit(settings.login_attempts_per_user),
        login_per_address=parse_limit(settings.login_attempts_per_address),
        requests_per_credential=parse_limit(settings.requests_per_credential),
        bad_credentials_per_address=parse_limit(settings.bad_credentials_per_address),
    ))


def client_address(scope: Scope) -> str:
    """The TCP peer's address (behind a reverse proxy: the proxy's, see the README)."""
    client = scope.get("client")
    return str(client[0]) if client else "unknown"


class BadCredentialsMiddleware:
    """Counts requests that carried credentials and were answered 401, per client address;
    once an address has had too many, its requests with credentials get 429 without touching
    the database (pure ASGI)."""

    def __init__(self, app: ASGIApp, throttle: Throttle) -> None:
        self.app = app
        self.throttle = throttle

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or self.throttle.limits.bad_credentials_per_address is None:
            await self.app(scope, receive, send)
            return
        if not any(name == b"authorization" for name, _ in scope.get("headers", ())):
            await self.app(scope, receive, send)  # no credentials: a cheap 401 or a public route
            return
        address = client_address(scope)
        wait = self.throttle.bad_credentials_blocked(address)
        if wait is not None:
            await _refuse(send, "凭据错误次数过多：请检查 API 密钥或令牌，稍后再试", wait)
            return

        async def counting_send(message: Message) -> None:
            if message["type"] == "http.response.start" and message["status"] == 401:
                self.throttle.bad_credentials(address)
            await send(message)

        await self.app(scope, receive, counting_send)


async def _refuse(send: Send, message: str, retry_after: int) -> None:
    import json

    from audit_engine.fhir_out import simple_outcome

    body = json.dumps(simple_outcome("throttled", message), ensure_ascii=False).encode()
    await send({
        "type": "http.response.start",
        "status": 429,
        "headers": [(b"content-type", b"application/fhir+json"), (b"content-length", str(len(body)).encode()),
                    (b"retry-after", str(retry_after).encode())],
    })
    await send({"type": "http.response.body", "body": body})
