"""POST /api/v1/auth/token: the OAuth2 password form for pharmacists, quality managers, admins."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Request
from fastapi.security import OAuth2PasswordRequestForm
from pydantic import BaseModel

from api.deps import RuntimeDep, UnitOfWorkDep
from api.errors import ApiError
from api.openapi import errors
from api.throttle import client_address

router = APIRouter(prefix="/api/v1/auth", tags=["auth"])


class TokenOut(BaseModel):
    access_token: str
    token_type: str = "bearer"
    expires_in: int
    role: str
    username: str

    model_config = {"json_schema_extra": {"examples": [{
        "access_token": "Zk3…", "token_type": "bearer", "expires_in": 43200, "role": "pharmacist",
        "username": "yaoshi1"}]}}


@router.post("/token", response_model=TokenOut, summary="用户登录，获取 Bearer 令牌",
             description="同一用户名或同一客户端地址登录失败过多（默认 15 分钟内 10 次 / 30 次）时答 429，"
                         "`Retry-After` 给出需等待的秒数；其间即使密码正确也不能登录。",
             responses=errors(401, 422, 429, descriptions={401: "用户名或密码错误（OperationOutcome）"}))
def token(form: Annotated[OAuth2PasswordRequestForm, Depends()], request: Request, uow: UnitOfWorkDep,
          runtime: RuntimeDep) -> TokenOut:
    from audit_engine import administration, auth

    throttle = runtime.throttle
    address = client_address(request.scope)
    if throttle is not None:
        throttle.before_login(form.username, address)
    issued = administration.log_in(uow, username=form.username, password=form.password)
    if issued is None:
        if throttle is not None:
            throttle.login_failed(form.username, address)
        raise ApiError(401, "用户名或密码错误", code="login", headers={"WWW-Authenticate": "Bearer"})
    principal, value = issued
    role = next(iter(sorted(principal.roles)), "")
    return TokenOut(access_token=value, expires_in=int(auth.TOKEN_TTL.total_seconds()), role=role,
                    username=principal.username or form.username)
