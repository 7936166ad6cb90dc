"""POST /api/v1/auth/token: the OAuth2 password form for pharmacists, quality managers, admins."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends
from fastapi.security import OAuth2PasswordRequestForm
from pydantic import BaseModel

from api.deps import SessionDep
from api.errors import ApiError

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
             responses={401: {"description": "用户名或密码错误（OperationOutcome）"}})
def token(form: Annotated[OAuth2PasswordRequestForm, Depends()], session: SessionDep) -> TokenOut:
    from audit_engine import auth

    principal = auth.authenticate_user(session, username=form.username, password=form.password)
    if principal is None:
        raise ApiError(401, "用户名或密码错误", code="login", headers={"WWW-Authenticate": "Bearer"})
    value = auth.issue_token(session, principal=principal)
    session.commit()
    role = next(iter(sorted(principal.roles)), "")
    return TokenOut(access_token=value, expires_in=int(auth.TOKEN_TTL.total_seconds()), role=role,
                    username=principal.username or form.username)
