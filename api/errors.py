"""Every refusal leaves as a FHIR OperationOutcome, never as a traceback.

Bad input is the client's to fix (4xx, with the FHIRPath of the element when there is
one). An internal fault never shows its insides: it gets a 500 OperationOutcome with an
incident id that is in the log, and reviews never reach this point at all (they answer
per the institution's fail-open / fail-closed policy instead).
"""

from __future__ import annotations

import json
import logging
import uuid
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from sqlalchemy import exc as sa_exc
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from api.throttle import Throttled
from audit_engine.errors import InputIssue, IntakeError, ServiceError
from audit_engine.fhir_out import operation_outcome, simple_outcome

log = logging.getLogger("api")

FHIR_JSON = "application/fhir+json"
BODY_TOO_LARGE = "audit.body_too_large"

_HTTP_CODES = {
    400: "invalid",
    401: "login",
    403: "forbidden",
    404: "not-found",
    405: "not-supported",
    406: "not-supported",
    409: "conflict",
    410: "deleted",
    413: "too-costly",
    415: "not-supported",
    422: "invalid",
    429: "throttled",
}


class ApiError(Exception):
    """A refusal the routes raise on purpose; becomes an OperationOutcome with this status."""

    def __init__(self, status: int, message: str, *, code: str | None = None, expression: str | None = None,
                 headers: dict[str, str] | None = None) -> None:
        self.status = status
        self.message = message
        self.code = code or _HTTP_CODES.get(status, "processing")
        self.expression = expression
        self.headers = headers
        super().__init__(message)


def fhir_response(body: dict[str, Any], status: int = 200, headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse(body, status_code=status, media_type=FHIR_JSON, headers=headers)


def outcome_response(status: int, issues: list[InputIssue], headers: dict[str, str] | None = None) -> JSONResponse:
    return fhir_response(operation_outcome(issues), status, headers)


def intake_error_outcome(err: IntakeError) -> dict[str, Any]:
    """The intake's OperationOutcome for an intake error."""
    from audit_engine.intake.outcome import operation_outcome as intake_outcome

    return intake_outcome(err)


def _loc_to_path(loc: tuple[Any, ...] | list[Any]) -> str | None:
    """FastAPI's error location → a FHIRPath-like expression (body.entry[0].resource → entry[0].resource)."""
    parts = list(loc)
    if parts and parts[0] in ("body", "query", "path", "header", "form"):
        where = parts.pop(0)
        if where != "body":
            return f"{where}.{'.'.join(str(p) for p in parts)}" if parts else str(where)
    out = ""
    for p in parts:
        if isinstance(p, int):
            out += f"[{p}]"
        else:
            out += ("." if out else "") + str(p)
    return out or None


def install_error_handlers(app: FastAPI) -> None:
    """Map every error path to an OperationOutcome."""

    @app.exception_handler(IntakeError)
    async def _intake(_: Request, err: IntakeError) -> JSONResponse:
        status = err.status if 400 <= err.status < 500 else 422
        return fhir_response(intake_error_outcome(err), status)

    @app.exception_handler(ApiError)
    async def _api(_: Request, err: ApiError) -> JSONResponse:
        return fhir_response(
            simple_outcome(err.code, err.message, expression=err.expression), err.status, err.headers
        )

    @app.exception_handler(Throttled)
    async def _throttled(_: Request, err: Throttled) -> JSONResponse:
        return fhir_response(simple_outcome("throttled", err.message), 429, {"Retry-After": str(err.retry_after)})

    @app.exception_handler(ServiceError)
    async def _service(_: Request, err: ServiceError) -> JSONResponse:
        status = err.status if 400 <= err.status < 500 else 400
        headers = {"WWW-Authenticate": "Bearer"} if status == 401 else None
        field = getattr(err, "field", None)
        if field is not None:  # an error about one field of the request body: point at it
            body = simple_outcome(getattr(err, "issue_code", "value"), err.message, expression=field)
        else:
            body = simple_outcome(_HTTP_CODES.get(status, "processing"), f"{err.message}（{err.location}）")
        return fhir_response(body, status, headers)

    @app.exception_handler(RequestValidationError)
    async def _validation(_: Request, err: RequestValidationError) -> JSONResponse:
        issues = []
        for e in err.errors():
            msg = str(e.get("msg", "invalid"))
            kind = str(e.get("type", ""))
            code = "required" if kind == "missing" else "invalid" if "json" in kind else "value"
            issues.append(InputIssue(code=code, message=f"请求不合法：{msg}", expression=_loc_to_path(e.get("loc", ()))))
        return outcome_response(422 if issues else 400, issues or [InputIssue("invalid", "请求不合法")])

    @app.exception_handler(StarletteHTTPException)
    async def _http(_: Request, err: StarletteHTTPException) -> JSONResponse:
        status = err.status_code
        message = str(err.detail) if err.detail else "请求失败"
        return fhir_response(
            simple_outcome(_HTTP_CODES.get(status, "processing"), message), status, getattr(err, "headers", None)
        )

    @app.exception_handler(sa_exc.DataError)
    async def _data(_: Request, err: sa_exc.DataError) -> JSONResponse:
        # The database refused a value the client sent (PostgreSQL class 22: a number out of
        # range, a NUL character, text longer than its column): bad input, not a fault.
        log.info("database refused a value: %s", str(err.orig).splitlines()[0] if err.orig else err)
        return fhir_response(simple_outcome("value", "请求中的值超出可存储的范围，或含不允许的字符（如 NUL）"), 422)

    @app.exception_handler(Exception)
    async def _internal(_: Request, err: Exception) -> JSONResponse:
        incident = uuid.uuid4().hex[:12]
        log.exception("internal error, incident %s", incident)
        return fhir_response(simple_outcome("exception", f"服务内部错误（事件号 {incident}），请联系管理员"), 500)


async def read_json(request: Request, *, max_bytes: int) -> dict[str, Any]:
    """The request's JSON object body, size/depth/entry-checked by intake, or IntakeError (4xx)."""
    return (await read_json_raw(request, max_bytes=max_bytes))[0]


async def read_json_raw(request: Request, *, max_bytes: int) -> tuple[dict[str, Any], bytes]:
    """Like :func:`read_json`, also returning the exact bytes (stored as received)."""
    from audit_engine.intake import load_json

    raw = await request.body()
    if request.scope.get(BODY_TOO_LARGE) or len(raw) > max_bytes:
        raise IntakeError([InputIssue("too-costly", f"请求体超过 {max_bytes} 字节上限")], status=413)
    return load_json(raw), raw


class BodyLimitMiddleware:
    """Refuse bodies over the limit with 413 before anything reads them (pure ASGI: cheap)."""

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        for name, value in scope.get("headers", ()):
            if name == b"content-length":
                try:
                    too_big = int(value) > self.max_bytes
                except ValueError:
                    too_big = False
                if too_big:
                    await self._refuse(send)
                    return
        seen = 0
        limit = self.max_bytes

        async def counting_receive() -> Message:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > limit:
                    # A chunked body grew past the limit: stop reading and flag it; read_json
                    # answers 413 (raising here would surface as a 500).
                    scope[BODY_TOO_LARGE] = True
                    return {"type": "http.request", "body": b"", "more_body": False}
            return message

        await self.app(scope, counting_receive, send)

    async def _refuse(self, send: Send) -> None:
        body = json.dumps(
            simple_outcome("too-costly", f"请求体超过 {self.max_bytes} 字节上限"), ensure_ascii=False
        ).encode()
        await send({
            "type": "http.response.start",
            "status": 413,
            "headers": [(b"content-type", FHIR_JSON.encode()), (b"content-length", str(len(body)).encode())],
        })
        await send({"type": "http.response.body", "body": body})
