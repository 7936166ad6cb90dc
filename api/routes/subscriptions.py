"""Webhook subscriptions: the HIS learns a pharmacist's decision without polling.

Each delivery is POSTed with ``X-Audit-Signature: sha256=<hex HMAC-SHA256 of the body>``
keyed by the subscription's secret, and retried with back-off until it gets a 2xx. Only an
institution's HIS key manages its subscriptions; the URL's host must be on the allowlist an
admin keeps for the institution (``/api/v1/admin/institutions/{code}/webhook-hosts``), and
an institution holds at most 20 active subscriptions.
"""

from __future__ import annotations

import socket
from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Path, Request, Response
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field

from api.deps import SubscriberDep, UnitOfWorkDep
from api.errors import ApiError
from api.openapi import errors
from api.views import jsonable
from audit_engine.auth import Principal

router = APIRouter(prefix="/api/v1/subscriptions", tags=["subscriptions"])

MAX_ID = 2**31 - 1  # subscription ids are INTEGER columns (PostgreSQL: 4 bytes)


class SubscriptionIn(BaseModel):
    url: str = Field(min_length=8, max_length=1000, pattern=r"^https?://",
                     description="回调地址：http(s)，主机须在本机构的回调白名单中")
    secret: str | None = Field(default=None, min_length=16, max_length=128,
                               description="HMAC 密钥；缺省则由服务生成并只返回一次")

    model_config = {"json_schema_extra": {"examples": [{"url": "https://his.example.cn/audit/callback"}]}}


class SubscriptionOut(BaseModel):
    id: int
    institution_id: int
    url: str
    active: bool
    created_at: datetime


class SubscriptionCreated(SubscriptionOut):
    secret: str = Field(description="HMAC-SHA256 签名密钥（只在创建时返回这一次）")


class SubscriptionList(BaseModel):
    subscriptions: list[SubscriptionOut]


def _sub_json(sub: Any) -> dict[str, Any]:
    body: dict[str, Any] = jsonable(sub)
    body.pop("secret", None)  # the secret is shown once, at creation
    return body


def _need_institution(principal: Principal) -> int:
    if principal.institution_id is None:
        raise ApiError(403, "只有机构可以订阅回调", code="forbidden")
    return int(principal.institution_id)


def own_addresses(request: Request) -> frozenset[tuple[str, int]]:
    """Where this service answers: the address the request came in on, and this host's own
    addresses on that port (a webhook pointing there would call the service itself)."""
    from audit_engine.webhooks import normalise_host

    server = request.scope.get("server")
    if not server or server[1] is None:
        return frozenset()
    host, port = str(server[0]), int(server[1])
    names = {host}
    try:
        names.update(str(info[4][0]) for info in socket.getaddrinfo(socket.gethostname(), None))
    except OSError:
        pass
    out = set()
    for name in names:
        try:
            out.add((normalise_host(name), port))
        except Exception:  # an address we cannot normalise is not one a URL can name either
            continue
    return frozenset(out)


@router.post("", status_code=201, response_model=SubscriptionCreated,
             summary="创建 webhook 订阅（密钥只返回一次）",
             responses=errors(401, 403, 409, 413, 422, 429,
                              descriptions={409: "已达每机构 20 个有效订阅的上限",
                                            422: "地址不是 http(s)、主机不在白名单、或指向本服务自身"}))
def create(body: SubscriptionIn, request: Request, uow: UnitOfWorkDep, principal: SubscriberDep) -> JSONResponse:
    from audit_engine import webhooks

    inst = _need_institution(principal)
    with uow as s:
        sub, secret = webhooks.create_subscription(s, institution_id=inst, url=body.url,
                                                  secret=body.secret, own_addresses=own_addresses(request))
    out = _sub_json(sub)
    out["secret"] = secret
    return JSONResponse(out, status_code=201)


@router.get("", response_model=SubscriptionList, summary="列出本机构的订阅",
            responses=errors(401, 403, 429))
def list_(uow: UnitOfWorkDep, principal: SubscriberDep) -> JSONResponse:
    from audit_engine import webhooks

    subs = webhooks.list_subscriptions(uow.session, institution_id=_need_institution(principal))
    return JSONResponse({"subscriptions": [_sub_json(s) for s in subs]})


@router.delete("/{subscription_id}", status_code=204, summary="删除订阅",
               responses={204: {"description": "已删除"}, **errors(401, 403, 404, 422, 429)})
def delete(subscription_id: Annotated[int, Path(ge=1, le=MAX_ID, description="订阅编号")],
           uow: UnitOfWorkDep, principal: SubscriberDep) -> Response:
    from audit_engine import webhooks

    inst = _need_institution(principal)
    with uow as s:
        webhooks.delete_subscription(s, subscription_id=subscription_id, institution_id=inst)
    return Response(status_code=204)
