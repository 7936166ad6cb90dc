"""The pharmacist queue: claim the next task, read it, decide it; the doctor answers a return."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Query, Request, Response
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field

from api.deps import DoctorAnswerDep, PharmacistDep, QueueReaderDep, RuntimeDep, TaskReaderDep, UnitOfWorkDep
from api.errors import FHIR_JSON, ApiError, read_json
from api.openapi import errors, fhir_alternative
from api.schemas import DoctorAnswerOut, TaskId, TaskList, TaskOut, TaskStatus, TaskWithReview
from api.views import jsonable, review_json, submit
from audit_engine import queue_commands
from audit_engine.fhir_out import task_resource

router = APIRouter(prefix="/api/v1", tags=["queue"])


class DecisionIn(BaseModel):
    """A pharmacist's decision on a claimed task."""

    decision: Literal["approve", "reject", "return"] = Field(description="approve 通过 / reject 拒绝 / return 打回医生")
    reason: str | None = Field(default=None, max_length=2000, description="理由（reject、return 必填）")

    model_config = {"json_schema_extra": {"examples": [{"decision": "return", "reason": "辛伐他汀与克拉霉素禁用，请换用阿奇霉素"}]}}


class DoctorAnswerIn(BaseModel):
    """The doctor's answer to a returned prescription (parsed by hand: the bundle goes
    through intake's own limits)."""

    answer: Literal["modify", "insist"] = Field(description="modify 修改重审 / insist 坚持原处方（双签）")
    reason: str | None = Field(default=None, description="insist 时必填：理由")
    bundle: dict[str, Any] | None = Field(default=None, description="modify 时：修改后的处方 Bundle（FHIR R4）")


def task_json(task: Any, review: Any | None = None) -> dict[str, Any]:
    body: dict[str, Any] = jsonable(task)
    if review is not None:
        body["review"] = review_json(review)
    return body


def task_fhir(task: Any) -> dict[str, Any]:
    review_items: tuple[str, ...] = ()
    return task_resource(
        task_id=task.id, review_id=task.review_id, status=task.status,
        priority="stat" if task.emergency else "routine",
        owner=str(task.claimed_by) if task.claimed_by else None, institution=task.institution_code,
        authored_on=jsonable(task.created_at), last_modified=jsonable(task.decided_at or task.claimed_at),
        decision=task.decision, reason=task.reason, items=review_items,
    )


@router.post(
    "/queue/claim",
    summary="领取下一个复核任务（急诊优先，其次严重程度，再次等待时间）",
    response_model=TaskWithReview,
    responses={200: {"description": "任务及其审核"}, 204: {"description": "队列为空"},
               **errors(401, 403, 422, 429, descriptions={403: "只有药师可以领取任务（管理员不参与审方）"})},
)
def claim(uow: UnitOfWorkDep, principal: PharmacistDep,
          lease_seconds: Annotated[int, Query(ge=30, le=3600, description="租约秒数，过期自动释放")] = 300) -> Response:
    claimed = queue_commands.claim(uow, principal=principal, lease_seconds=lease_seconds)
    if claimed is None:
        return Response(status_code=204)
    return JSONResponse(task_json(*claimed))


@router.get("/tasks", response_model=TaskList, summary="列出待办任务（队列顺序：超时升级、急诊、严重程度、等待时间）",
            responses=errors(401, 403, 422, 429))
def list_tasks(uow: UnitOfWorkDep, principal: QueueReaderDep,
               status: Annotated[list[TaskStatus] | None,
                                 Query(description="状态，可多选；缺省为未结束的任务")] = None,
               limit: Annotated[int, Query(ge=1, le=1000)] = 100) -> JSONResponse:
    tasks = queue_commands.tasks(uow, principal=principal, statuses=tuple(status) if status else None, limit=limit)
    return JSONResponse({"tasks": [task_json(t) for t in tasks]})


@router.get("/tasks/{task_id}", response_model=TaskWithReview, summary="查看任务（`?_format=fhir` 返回 FHIR Task）",
            responses={200: fhir_alternative("?_format=fhir：FHIR Task"), **errors(401, 403, 404, 422, 429)})
def get_task(task_id: TaskId, request: Request, uow: UnitOfWorkDep, principal: TaskReaderDep,
             format_: Annotated[str | None, Query(alias="_format")] = None) -> JSONResponse:
    task = queue_commands.task(uow, task_id=task_id, principal=principal)
    if task is None:
        raise ApiError(404, f"没有任务 {task_id}，或无权查看", code="not-found")
    wants_fhir = (format_ or "").lower() == "fhir" or "application/fhir+json" in request.headers.get("accept", "")
    if wants_fhir:
        return JSONResponse(task_fhir(task), media_type=FHIR_JSON)
    return JSONResponse(task_json(task, queue_commands.review_of(uow, task, principal)))


@router.post("/tasks/{task_id}/decision", response_model=TaskOut, summary="药师决定：approve / reject / return（附理由）",
             responses=errors(401, 403, 404, 409, 413, 422, 429,
                              descriptions={409: "任务不在可决定的状态，或不由调用者领取"}))
def decide(task_id: TaskId, body: DecisionIn, uow: UnitOfWorkDep, principal: PharmacistDep) -> JSONResponse:
    task = queue_commands.decide(uow, task_id=task_id, principal=principal, decision=body.decision, reason=body.reason)
    return JSONResponse(task_json(task))


@router.post(
    "/tasks/{task_id}/answer",
    summary="医生答复被打回的处方：modify（提交修改后的处方，重新审核并关联）或 insist（坚持原处方并说明理由，双签）",
    response_model=DoctorAnswerOut,
    responses=errors(400, 401, 403, 404, 409, 413, 422, 429,
                     descriptions={409: "任务不是被打回（returned）状态"}),
    openapi_extra={"requestBody": {"required": True, "content": {"application/json": {
        "schema": DoctorAnswerIn.model_json_schema(),
        "examples": {
            "insist": {"value": {"answer": "insist", "reason": "患者既往长期使用，已监测肝功能（双签）"}},
            "modify": {"value": {"answer": "modify", "bundle": {"resourceType": "Bundle", "type": "collection",
                                                                   "entry": []}}}}}}}},
)
async def doctor_answer(task_id: TaskId, request: Request, runtime: RuntimeDep, uow: UnitOfWorkDep,
                        principal: DoctorAnswerDep) -> JSONResponse:
    # Parsed by hand: a modified bundle goes through intake's own size and depth limits.
    doc = await read_json(request, max_bytes=runtime.settings.max_body_bytes)
    answer = doc.get("answer")
    reason = doc.get("reason")
    if answer not in ("modify", "insist"):
        raise ApiError(422, f"answer 必须是 modify 或 insist，收到 {answer!r}", code="value", expression="answer")
    if reason is not None and not isinstance(reason, str):
        raise ApiError(422, "reason 必须是字符串", code="value", expression="reason")
    if answer == "insist":
        task = await run_in_threadpool(
            lambda: queue_commands.insist(uow, task_id=task_id, principal=principal, reason=reason))
        return JSONResponse(task_json(task))
    bundle = doc.get("bundle")
    if not isinstance(bundle, dict):
        raise ApiError(422, "modify 需要修改后的处方 bundle", code="required", expression="bundle")
    current = await run_in_threadpool(lambda: queue_commands.task(uow, task_id=task_id, principal=principal))
    if current is None:
        raise ApiError(404, f"没有任务 {task_id}，或无权查看", code="not-found")
    if current.status != "returned":
        raise ApiError(409, f"任务状态为 {current.status}，只有被打回的处方可以修改重审", code="conflict")
    # submit_review links the new review to the returned one and closes the task as "modified".
    new_review = await submit(runtime, principal=principal, payload=bundle, kind="bundle",
                              replaces_review_id=current.review_id)
    answered = await run_in_threadpool(lambda: queue_commands.task(uow, task_id=task_id, principal=principal))
    body = task_json(answered)
    body["new_review"] = review_json(new_review)
    return JSONResponse(body)
