"""The workbench's reads of the queue: one page of tasks with their summaries, a task's
history across prescription versions, and claiming the task on screen.

Routes parse and answer; ``audit_engine.workbench_reads`` and ``audit_engine.queue`` decide.
"""

from __future__ import annotations

import hashlib
from datetime import datetime
from typing import Annotated, Literal

from fastapi import APIRouter, Query, Request, Response
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field, PlainSerializer

from api.deps import PharmacistDep, QueueReaderDep, UnitOfWorkDep
from api.errors import ApiError
from api.openapi import errors
from api.schemas import TaskId, TaskOut
from api.views import jsonable

router = APIRouter(prefix="/api/v1", tags=["queue"])

# Times are naive UTC in the store; the page's clock needs the zone said explicitly.
UtcTime = Annotated[datetime, PlainSerializer(
    lambda d: d.isoformat(timespec="seconds") + ("Z" if d.tzinfo is None else ""), return_type=str)]


class _Out(BaseModel):
    model_config = ConfigDict(from_attributes=True)


class QueueRowOut(_Out):
    """One waiting task, with what a pharmacist triages on."""

    task_id: str
    review_id: str
    status: str = Field(description="pending / escalated / claimed / returned（或以后新增的状态，原样返回）")
    emergency: bool
    escalated: bool
    max_level: int
    institution_code: str
    institution_name: str
    rx_type: str | None = Field(description="门诊 / 急诊；null 为处方未注明")
    prescription_number: str | None = Field(description="处方号（HIS 发来的值，不含 system）")
    drugs: list[str] = Field(description="前两种药品名称")
    drug_count: int
    drugs_text: str = Field(description="如“华法林、阿司匹林 等 3 种”")
    top_finding: str | None = Field(description="最严重问题的标题")
    top_finding_level: int | None
    finding_count: int
    created_at: UtcTime
    deadline_at: UtcTime | None = Field(description="超时时刻（UTC）；超时升级后为 null")
    claimed_by: str | None
    lease_expires_at: UtcTime | None
    version: int


class InstitutionCountOut(_Out):
    code: str
    name: str
    count: int


class QueuePageOut(_Out):
    now: UtcTime = Field(description="服务器时间（UTC），页面据此校准倒计时")
    total: int
    offset: int
    limit: int
    rows: list[QueueRowOut]
    institutions: list[InstitutionCountOut] = Field(description="当前队列中的机构及任务数（供筛选）")


class FieldChangeOut(_Out):
    field: Literal["dose", "frequency", "days", "route"]
    before: str | None
    after: str | None


class ItemChangeOut(_Out):
    kind: Literal["added", "removed", "changed"]
    name: str
    changes: list[FieldChangeOut]


class FindingBriefOut(_Out):
    rule_id: str
    title: str
    level: int


class VersionOut(_Out):
    review_id: str
    prescription_number: str | None
    created_at: UtcTime
    verdict: str
    verdict_zh: str
    outcome: str
    outcome_zh: str
    max_level: int
    drugs: list[str]
    findings: list[FindingBriefOut]
    task_id: str | None
    task_status: str | None
    decision: str | None
    reason: str | None
    decided_by: str | None
    decided_at: UtcTime | None
    doctor_answer: str | None = Field(description="医生答复：modify 修改 / insist 坚持（双签）")
    doctor_reason: str | None
    closed_at: UtcTime | None
    current: bool


class PatientIdentifierOut(_Out):
    system: str | None
    value: str


class TaskHistoryOut(_Out):
    task_id: str
    review_id: str
    now: UtcTime
    deadline_at: UtcTime | None
    prescription_number: str | None
    patient_identifiers: list[PatientIdentifierOut] = Field(description="HIS 发来的患者标识（原样）")
    versions: list[VersionOut] = Field(description="处方各版本，旧→新（按 previous_review_id 关联）")
    previous_review_id: str | None
    changes: list[ItemChangeOut] = Field(description="与上一版本（被打回的处方）相比的变化")


@router.get(
    "/queue",
    response_model=QueuePageOut,
    summary="工作台队列：一页任务及摘要（药品、最严重问题、机构、门诊/急诊、级别、截止时间），可筛选",
    responses={304: {"description": "与 If-None-Match 相同：队列无变化"}, **errors(401, 403, 422, 429)},
)
def queue_page(
    request: Request,
    uow: UnitOfWorkDep,
    principal: QueueReaderDep,
    institution: Annotated[str | None, Query(max_length=64, description="机构编码")] = None,
    min_level: Annotated[int | None, Query(ge=0, le=10, description="最高问题级别不低于")] = None,
    rx_type: Annotated[Literal["门诊", "急诊"] | None, Query(alias="type", description="门诊 / 急诊")] = None,
    waited_minutes: Annotated[int | None, Query(ge=1, le=100000, description="已等待不少于（分钟）")] = None,
    status: Annotated[list[Literal["pending", "escalated", "claimed", "returned"]] | None,
                      Query(description="状态，可多选；缺省为待药师处理（pending、escalated、claimed）")] = None,
    offset: Annotated[int, Query(ge=0, le=1_000_000)] = 0,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
) -> Response:
    from audit_engine import workbench_reads as reads

    filters = reads.QueueFilters(institution=institution, min_level=min_level, rx_type=rx_type,
                                 waited_minutes=waited_minutes,
                                 statuses=tuple(status) if status else reads.WORK_STATUSES)
    page = reads.queue_page(uow.session, principal=principal, filters=filters, offset=offset, limit=limit)
    body = QueuePageOut.model_validate(page).model_dump(mode="json")
    # The page polls every few seconds: an unchanged queue costs a 304 and no rendering.
    tag = '"' + hashlib.sha256(repr({k: v for k, v in body.items() if k != "now"}).encode()).hexdigest()[:32] + '"'
    if request.headers.get("if-none-match") == tag:
        return Response(status_code=304, headers={"ETag": tag})
    return JSONResponse(body, headers={"ETag": tag, "Cache-Control": "no-cache"})


@router.get(
    "/tasks/{task_id}/history",
    response_model=TaskHistoryOut,
    summary="任务的处方历史：各版本、药师决定、医生答复（修改/坚持及理由）、与被打回版本相比的变化、患者标识",
    responses=errors(401, 403, 404, 422, 429),
)
def task_history(task_id: TaskId, uow: UnitOfWorkDep, principal: QueueReaderDep) -> TaskHistoryOut:
    from audit_engine import workbench_reads as reads

    history = reads.task_history(uow.session, task_id=task_id, principal=principal)
    if history is None:
        raise ApiError(404, f"没有任务 {task_id}，或无权查看", code="not-found")
    return TaskHistoryOut.model_validate(history)


@router.post(
    "/tasks/{task_id}/claim",
    response_model=TaskOut,
    summary="领取指定任务（待领取、超时升级，或他人租约已过期的任务；已由自己领取则续租）",
    responses=errors(401, 403, 404, 409, 422, 429, descriptions={409: "任务已由他人领取或已处理（OperationOutcome）"}),
)
def claim_task(task_id: TaskId, uow: UnitOfWorkDep, principal: PharmacistDep,
               lease_seconds: Annotated[int, Query(ge=30, le=3600, description="租约秒数")] = 300) -> JSONResponse:
    from audit_engine import queue_commands

    task = queue_commands.claim_task(uow, task_id=task_id, principal=principal, lease_seconds=lease_seconds)
    return JSONResponse(jsonable(task))
