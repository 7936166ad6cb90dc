"""Webhook subscriptions: the HIS learns a pharmacist's decision without polling.

Each delivery is POSTed with ``X-Audit-Signature: sha256=<hex HMAC-SHA256 of the body>``
keyed by the subscription's secret, and retried with back-off until it gets a 2xx.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Response
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field

from api.deps import PrincipalDep, SessionDep
from api.errors import ApiError
from api.views import jsonable

router = APIRouter(prefix="/api/v1/subscriptions", tags=["subscriptions"])


class SubscriptionIn(BaseModel):
    url: str = Field(min_length=8, max_length=1000, pattern=r"^https?://", description="回调地址")
    secret: str | None = Field(default=None, min_length=16, max_length=128,
                               description="HMAC 密钥；缺省则由服务生成并只返回一次")

    model_config = {"json_schema_extra": {"examples": [{"url": "https://his.example.cn/audit/callback"}]}}


def _sub_json(sub: Any) -> dict[str, Any]:
    body: dict[str, Any] = jsonable(sub)
    body.pop("secret", None)  # the secret is shown once, at creation
    return body


def _need_institution(principal: Any) -> int:
    if principal.institution_id is None:
        raise ApiError(403, "只有机构可以订阅回调", code="forbidden")
    return int(principal.institution_id)


@router.post("", status_code=201, summary="创建 webhook 订阅（密钥只返回一次）")
def create(body: SubscriptionIn, session: SessionDep, principal: PrincipalDep) -> JSONResponse:
    from audit_engine import webhooks

    inst = _need_institution(principal)
    sub, secret = webhooks.create_subscription(session, institution_id=inst, url=body.url,
                                              secret=body.secret)
    session.commit()
    out = _sub_json(sub)
    out["secret"] = secret
    return JSONResponse(out, status_code=201)


@router.get("", summary="列出本机构的订阅")
def list_(session: SessionDep, principal: PrincipalDep) -> JSONResponse:
    from audit_engine import webhooks

    subs = webhooks.list_subscriptions(session, institution_id=_need_institution(principal))
    return JSONResponse({"subscriptions": [_sub_json(s) for s in subs]})


@router.delete("/{subscription_id}", status_code=204, summary="删除订阅")
def delete(subscription_id: int, session: SessionDep, principal: PrincipalDep) -> Response:
    from audit_engine import webhooks

    inst = _need_institution(principal)
    webhooks.delete_subscription(session, subscription_id=subscription_id, institution_id=inst)
    session.commit()
    return Response(status_code=204)
