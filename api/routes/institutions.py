"""Institution administration (admin): read and change a member institution's verdict policy."""

from __future__ import annotations

from typing import Literal

from fastapi import APIRouter
from pydantic import BaseModel, ConfigDict, Field

from api.deps import PolicyAdminDep, UnitOfWorkDep
from api.openapi import errors
from audit_engine import administration
from audit_engine.audit_log import Actor
from audit_engine.policy import Policy

router = APIRouter(prefix="/api/v1/institutions", tags=["institutions"])

_ERRORS = errors(401, 403, 404, 422, 429)


class PolicyOut(BaseModel):
    """审核策略：阈值（0–9 级）、引擎故障时的处理、药师工作时间与超时处理。"""

    explain_at: int = Field(description="达到此级别：医生须说明理由")
    recheck_at: int = Field(description="达到此级别：转药师复核")
    block_at: int = Field(description="达到此级别：拦截")
    fail_mode: Literal["open", "closed"] = Field(description="引擎故障时：open 放行，closed 转药师")
    work_start: str = Field(description="药师工作开始时间 HH:MM（本地时间）")
    work_end: str = Field(description="药师工作结束时间 HH:MM；24:00 表示午夜")
    work_days: list[int] = Field(description="工作日，ISO 星期 1..7")
    timezone: str
    timeout_minutes: int = Field(description="工作时间内等待药师的分钟数")
    timeout_action: Literal["pass", "escalate"] = Field(description="超时后：pass 放行，escalate 升级")
    timeout_pass_max_level: int = Field(
        description="超时放行的最高问题级别：超过此级别的处方超时也不放行，改为升级（默认 7：8 级禁用及以上从不超时放行）")
    answer_hours: int = Field(description="打回后等待医生答复的小时数")

    @classmethod
    def of(cls, policy: Policy) -> PolicyOut:
        return cls.model_validate(policy.snapshot())


class PolicyChange(BaseModel):
    """只写要改的字段；改后的策略整体校验，不合法则 422 且不做任何修改。"""

    model_config = ConfigDict(extra="forbid", json_schema_extra={
        "examples": [{"fail_mode": "closed", "recheck_at": 5, "work_start": "08:00", "work_end": "17:30"}]})

    explain_at: int | None = Field(default=None, ge=0, le=10)
    recheck_at: int | None = Field(default=None, ge=0, le=10)
    block_at: int | None = Field(default=None, ge=0, le=10)
    fail_mode: Literal["open", "closed"] | None = None
    work_start: str | None = Field(default=None, pattern=r"^\d{2}:\d{2}$")
    work_end: str | None = Field(default=None, pattern=r"^\d{2}:\d{2}$")
    work_days: list[int] | None = Field(default=None, min_length=1, max_length=7)
    timezone: str | None = Field(default=None, max_length=64)
    timeout_minutes: int | None = Field(default=None, ge=1, le=7 * 24 * 60)
    timeout_action: Literal["pass", "escalate"] | None = None
    timeout_pass_max_level: int | None = Field(default=None, ge=0, le=10)
    answer_hours: int | None = Field(default=None, ge=1, le=24 * 30)


@router.get("/{code}/policy", summary="查看机构的审核策略", response_model=PolicyOut, responses=_ERRORS)
def get_policy(code: str, uow: UnitOfWorkDep, principal: PolicyAdminDep) -> PolicyOut:
    return PolicyOut.of(administration.show_policy(uow, code=code))


@router.patch("/{code}/policy", summary="修改机构的审核策略（记入审计日志）", response_model=PolicyOut,
              responses=_ERRORS)
def change_policy(code: str, body: PolicyChange, uow: UnitOfWorkDep, principal: PolicyAdminDep) -> PolicyOut:
    policy = administration.update_policy(uow, code=code, changes=body.model_dump(exclude_unset=True),
                                          actor=Actor.of(principal))
    return PolicyOut.of(policy)
