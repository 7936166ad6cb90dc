"""The webhook host allowlist (admin): which hosts an institution's subscriptions may call.

County HIS servers live on private addresses, so nothing is banned by range; instead an
admin names each institution's hosts. Every change is in the audit log.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Path
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field

from api.deps import UnitOfWorkDep, WebhookHostAdminDep
from api.openapi import errors
from api.schemas import InstitutionCode
from api.views import jsonable

router = APIRouter(prefix="/api/v1/admin/institutions/{code}/webhook-hosts", tags=["admin"])



class WebhookHostIn(BaseModel):
    host: str = Field(min_length=1, max_length=255, description="主机名或 IP 地址（不含协议与端口）",
                      examples=["10.12.0.8", "his.county.local"])


class WebhookHostOut(BaseModel):
    institution_code: str
    host: str
    added_by: str
    created_at: datetime


class WebhookHostList(BaseModel):
    hosts: list[WebhookHostOut]


class WebhookHostRemoved(BaseModel):
    host: str
    subscriptions_deactivated: int = Field(description="因此停用的该机构订阅数")


@router.get("", response_model=WebhookHostList, summary="列出机构的回调白名单",
            responses=errors(401, 403, 404, 422, 429))
def list_hosts(code: InstitutionCode, uow: UnitOfWorkDep, principal: WebhookHostAdminDep) -> JSONResponse:
    from audit_engine import webhooks

    hosts = webhooks.allowed_hosts(uow.session, institution_code=code)
    return JSONResponse({"hosts": jsonable(hosts)})


@router.post("", status_code=201, response_model=WebhookHostOut, summary="把主机加入机构的回调白名单（记入审计日志）",
             responses=errors(401, 403, 404, 413, 422, 429,
                              descriptions={422: "不是合法主机，或是回环、未指定、链路本地、组播地址"}))
def add_host(code: InstitutionCode, body: WebhookHostIn, uow: UnitOfWorkDep,
             principal: WebhookHostAdminDep) -> JSONResponse:
    from audit_engine import webhooks

    with uow as s:
        added = webhooks.allow_host(s, institution_code=code, host=body.host, principal=principal)
    return JSONResponse(jsonable(added), status_code=201)


@router.delete("/{host}", response_model=WebhookHostRemoved,
               summary="把主机移出白名单，并停用该机构指向它的订阅（记入审计日志）",
               responses=errors(401, 403, 404, 422, 429))
def remove_host(code: InstitutionCode, host: Annotated[str, Path(pattern=r"^[^\x00-\x1f/\\]{1,255}$")],
                uow: UnitOfWorkDep, principal: WebhookHostAdminDep) -> JSONResponse:
    from audit_engine import webhooks

    with uow as s:
        stopped = webhooks.remove_host(s, institution_code=code, host=host, principal=principal)
    return JSONResponse({"host": webhooks.normalise_host(host), "subscriptions_deactivated": stopped})
