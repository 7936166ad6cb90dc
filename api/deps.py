"""Dependencies the routes declare: settings, runtime, a DB session, the caller and its roles."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Callable
from typing import Annotated, Any

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from sqlalchemy.orm import Session

from api.errors import ApiError
from api.runtime import Runtime
from audit_engine.auth import Operation, Principal, authorize
from audit_engine.settings import Settings
from audit_engine.store.db import read_scope
from audit_engine.unit_of_work import UnitOfWork

log = logging.getLogger("api")

DEMO_LEAD_CODE = "LEAD001"
DEMO_LEAD_NAME = "县人民医院（医共体牵头医院）"

_bearer = HTTPBearer(auto_error=False, description="机构 API 密钥，或 /api/v1/auth/token 发放的用户令牌")


def runtime_of(request: Request) -> Runtime:
    runtime: Runtime = request.app.state.runtime
    return runtime


# Dependencies that do no I/O are async: a sync one would cost a trip to the thread pool.
async def get_runtime(request: Request) -> Runtime:
    return runtime_of(request)


async def settings_dep(request: Request) -> Settings:
    """The settings this app was built with (``create_app``'s, validated at start)."""
    return runtime_of(request).settings


RuntimeDep = Annotated[Runtime, Depends(get_runtime)]
SettingsDep = Annotated[Settings, Depends(settings_dep)]


async def get_session(runtime: RuntimeDep) -> AsyncIterator[Session]:
    """One session per request (routes reach it through ``UnitOfWorkDep``; the services commit).

    Async on purpose: opening and closing a Session does no I/O, so this costs no trip to
    the thread pool (the routes' own work goes there).
    """
    if runtime.db is None:
        raise ApiError(503, "服务尚未就绪", code="transient")
    session = Session(runtime.db, expire_on_commit=False)
    try:
        yield session
    finally:
        session.close()


SessionDep = Annotated[Session, Depends(get_session)]


async def get_unit_of_work(session: SessionDep) -> UnitOfWork:
    """The request's unit of work: the service a route calls opens it (``with uow as s:``) and so
    owns the transaction: committed when its work is done, rolled back when it raises. The
    session is the request's, closed after the response."""
    return UnitOfWork(session)


UnitOfWorkDep = Annotated[UnitOfWork, Depends(get_unit_of_work)]


def _unauthorized(message: str) -> ApiError:
    return ApiError(401, message, code="login", headers={"WWW-Authenticate": "Bearer"})


def demo_principal(session: Session) -> Principal:
    """AUDIT_AUTH_DISABLED=1: the demo lead county hospital (created if missing) with every role."""
    from audit_engine import administration

    return administration.development_principal(session, code=DEMO_LEAD_CODE, name=DEMO_LEAD_NAME)


def resolve_principal(runtime: Runtime, session: Session, secret: str | None, *, end_txn: bool = True) -> Principal:
    """The caller for a bearer secret (blocking DB lookup: call it from a worker thread).

    ``end_txn=False`` keeps the lookup's transaction open for the caller's writes (one
    round trip less on the review path, which commits or rolls back itself). On SQLite the
    lookup always runs in its own read transaction and ``session`` is left untouched.
    """
    from audit_engine import auth

    if runtime.settings.auth_disabled:
        cached = runtime.extras.get("demo_principal")
        if cached is None:
            cached = demo_principal(session)
            session.rollback()
            runtime.extras["demo_principal"] = cached
        return cached
    if not secret:
        raise _unauthorized("缺少凭据：请使用 Authorization: Bearer <机构API密钥或用户令牌>")
    if runtime.is_sqlite and runtime.db is not None:
        # A deferred read transaction of its own: on SQLite the route's session would begin
        # IMMEDIATE and queue every process's lookups behind the single write lock.
        with read_scope(runtime.db) as reader:
            principal = auth.principal_for_api_key(reader, secret) or auth.principal_for_token(reader, secret)
    else:
        try:
            principal = auth.principal_for_api_key(session, secret) or auth.principal_for_token(session, secret)
        finally:
            if end_txn:
                session.rollback()
    if principal is None:
        session.rollback()
        raise _unauthorized("凭据无效或已过期")
    if runtime.throttle is not None:
        runtime.throttle.credential_used(_credential_id(secret))
    return principal


def _credential_id(secret: str) -> str:
    """What the per-credential rate counts by: an API key's key id, or a token's digest."""
    import hashlib

    parts = secret.split("_", 2)
    if len(parts) == 3 and parts[0] == "ak":
        return f"key:{parts[1]}"
    return "token:" + hashlib.sha256(secret.encode()).hexdigest()[:24]


async def get_secret(
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> str | None:
    """The bearer secret, unchecked (the hot review routes check it in their worker thread)."""
    if credentials is None or credentials.scheme.lower() != "bearer" or not credentials.credentials:
        return None
    return credentials.credentials


async def get_required_secret(request: Request, secret: Annotated[str | None, Depends(get_secret)]) -> str | None:
    """Like get_secret, but a missing credential is a 401 before the body is even read."""
    if secret is None and not runtime_of(request).settings.auth_disabled:
        raise _unauthorized("缺少凭据：请使用 Authorization: Bearer <机构API密钥或用户令牌>")
    return secret


SecretDep = Annotated[str | None, Depends(get_required_secret)]


def get_principal(
    request: Request, session: SessionDep, secret: Annotated[str | None, Depends(get_secret)]
) -> Principal:
    """The caller: an institution (API key) or a user (token). 401 without valid credentials."""
    return resolve_principal(runtime_of(request), session, secret)


PrincipalDep = Annotated[Principal, Depends(get_principal)]


def allow(operation: Operation) -> Callable[..., Any]:
    """A dependency that lets the caller through only when its roles allow ``operation``
    (403 otherwise). The decision is ``audit_engine.auth.authorize``: the services call the
    same check again, so the route's declaration is documentation that cannot drift."""

    def check(principal: PrincipalDep) -> Principal:
        authorize(principal, operation)
        return principal

    check.__name__ = f"allow_{operation.replace('.', '_')}"
    return check


# One alias per operation (audit_engine.auth.PERMISSIONS says which roles each admits).
ReviewReaderDep = Annotated[Principal, Depends(allow("review.read"))]
DoctorAnswerDep = Annotated[Principal, Depends(allow("review.answer"))]
TaskReaderDep = Annotated[Principal, Depends(allow("task.read"))]
QueueReaderDep = Annotated[Principal, Depends(allow("queue.read"))]
PharmacistDep = Annotated[Principal, Depends(allow("queue.work"))]
SubscriberDep = Annotated[Principal, Depends(allow("subscription.manage"))]
AdminDep = Annotated[Principal, Depends(allow("rulebase.manage"))]
WebhookHostAdminDep = Annotated[Principal, Depends(allow("webhook_host.manage"))]
PolicyAdminDep = Annotated[Principal, Depends(allow("policy.manage"))]
StatsReaderDep = Annotated[Principal, Depends(allow("stats.read"))]
QualityWorkDep = Annotated[Principal, Depends(allow("quality.work"))]
