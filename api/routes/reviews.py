"""The native review API: submit a FHIR Bundle, read a review (long-poll for the decision)."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field

from api.deps import DoctorAnswerDep, ReviewReaderDep, RuntimeDep, SecretDep, UnitOfWorkDep
from api.errors import FHIR_JSON, ApiError, read_json_raw
from api.openapi import errors, fhir_alternative
from api.schemas import ReviewId, ReviewOut
from api.views import Kind, review_json, submit, thresholds
from audit_engine.fhir_out import detected_issues_bundle

router = APIRouter(prefix="/api/v1", tags=["reviews"])

_BUNDLE_EXAMPLE = {
    "resourceType": "Bundle",
    "type": "collection",
    "entry": [
        {"resource": {"resourceType": "Patient", "id": "pat-001", "gender": "female", "birthDate": "1951-03-09"}},
        {"resource": {"resourceType": "Encounter", "id": "enc-001", "status": "in-progress",
                      "class": {"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "AMB"},
                      "subject": {"reference": "Patient/pat-001"}}},
        {"resource": {
            "resourceType": "MedicationRequest", "id": "mr-1",
            "identifier": [{"system": "urn:his:order", "value": "RX20261123001-1"}],
            "groupIdentifier": {"system": "urn:his:prescription", "value": "P20261123-0001"},
            "status": "active", "intent": "order",
            "medicationCodeableConcept": {"coding": [{"system": "http://www.whocc.no/atc", "code": "A10BA02",
                                                      "display": "二甲双胍"}]},
            "subject": {"reference": "Patient/pat-001"}, "encounter": {"reference": "Encounter/enc-001"},
            "authoredOn": "2026-11-23",
            "dosageInstruction": [{"text": "0.5g tid", "timing": {"repeat": {"frequency": 3, "period": 1,
                                                                                 "periodUnit": "d"}},
                                   "doseAndRate": [{"doseQuantity": {"value": 0.5, "unit": "g"}}]}],
            "dispenseRequest": {"expectedSupplyDuration": {"value": 7, "unit": "d"}},
        }},
    ],
}

_REVIEW_EXAMPLE = {
    "id": "4b6f0c2e9d7a4e59b1f3a8c2d5e6f701",
    "verdict": "recheck",
    "verdict_zh": "待药师复核",
    "findings": [{
        "rule_id": "RENAL-METFORMIN-30", "title": "eGFR<30 禁用二甲双胍", "level": 7, "category": "适宜性",
        "subtype": "禁忌症", "message": "患者 eGFR 24，二甲双胍禁用", "suggestion": "停用二甲双胍",
        "evidence": "FDA 2016", "implicated": ["MedicationRequest/mr-1"],
    }],
    "rulebase_version": "3f2a…",
    "outcome": "pending",
    "prescription_identifier": "urn:his:prescription|P20261123-0001",
    "previous_review_id": None,
    "next_review_id": None,
    "replayed": False,
    "decision": None,
    "history": [],
}


def _wants_fhir(request: Request, fmt: str | None) -> bool:
    if fmt is not None:
        return fmt.lower() in ("fhir", "json+fhir", "application/fhir+json")
    return "application/fhir+json" in request.headers.get("accept", "")


def _fhir_body(record: Any) -> dict[str, Any]:
    explain_at, recheck_at = thresholds(record)
    bundle = detected_issues_bundle(record.findings, review_id=record.id, explain_at=explain_at,
                                    recheck_at=recheck_at, identified=review_json(record).get("created_at"))
    bundle["id"] = record.id
    bundle["meta"] = {"tag": [{"system": "urn:audit-engine:verdict", "code": record.verdict}]}
    bundle["extension"] = [
        {"url": "urn:audit-engine:verdict", "valueCode": record.verdict},
        {"url": "urn:audit-engine:rulebase-version", "valueString": record.rulebase_version},
    ]
    return bundle


@router.post(
    "/reviews",
    summary="提交处方（FHIR R4 Bundle）并同步得到审核结论",
    description=(
        "Bundle 类型 collection 或 transaction，含本张处方的 MedicationRequest 及可得的患者、就诊、医师、诊断、过敏、"
        "检验信息。处方号放在 `MedicationRequest.groupIdentifier`（或 `Bundle.identifier`）。相同处方号、相同临床内容"
        "重复提交返回同一审核（200，`replayed: true`，不产生第二个任务）；相同处方号、内容有改动（医生修改后 HIS 沿用处方号）"
        "是新版本：重新审核（201），`previous_review_id` 指向上一版本，上一版本未决的药师任务关闭为 superseded"
        "（上一版本的 `next_review_id` 指向新版本）。信封字段（Bundle.meta、timestamp、资源 meta）不算内容。`?_format=fhir` 或 "
        "`Accept: application/fhir+json` 时以 DetectedIssue 的 Bundle 返回问题清单。"
    ),
    openapi_extra={"requestBody": {"required": True, "content": {
        "application/fhir+json": {"schema": {"type": "object"}, "example": _BUNDLE_EXAMPLE},
        "application/json": {"schema": {"type": "object"}, "example": _BUNDLE_EXAMPLE}}}},
    status_code=201,
    response_model=ReviewOut,
    response_description="新的审核（Location 头给出其地址）",
    responses={
        201: {"description": "新审核（新处方，或已有处方号的新版本）",
              "content": {"application/json": {"example": _REVIEW_EXAMPLE}},
              **fhir_alternative("?_format=fhir：DetectedIssue 的 Bundle")},
        200: {"description": "重发：同一处方号、同一临床内容的已存审核（replayed: true），不产生第二个任务",
              "model": ReviewOut, **fhir_alternative("?_format=fhir：DetectedIssue 的 Bundle")},
        **errors(400, 401, 403, 413, 422, 429, descriptions={
            403: "凭据不是机构 HIS 密钥（药师、质控、管理员令牌不能提交处方）",
            422: "不是合格的处方（OperationOutcome，expression 为 FHIRPath）"}),
    },
)
async def create_review(
    request: Request,
    runtime: RuntimeDep,
    secret: SecretDep,
    format_: Annotated[str | None, Query(alias="_format", description="fhir: 以 DetectedIssue Bundle 返回")] = None,
) -> JSONResponse:
    payload, raw = await read_json_raw(request, max_bytes=runtime.settings.max_body_bytes)
    kind: Kind = "medication_request" if payload.get("resourceType") == "MedicationRequest" else "bundle"
    record = await submit(runtime, secret=secret, payload=payload, kind=kind, raw=raw)
    headers = {"Location": f"/api/v1/reviews/{record.id}"}
    status = 200 if getattr(record, "replayed", False) else 201
    if _wants_fhir(request, format_):
        return JSONResponse(_fhir_body(record), status_code=status, media_type=FHIR_JSON, headers=headers)
    return JSONResponse(review_json(record), status_code=status, headers=headers)


@router.get(
    "/reviews/{review_id}",
    summary="查询审核结果、药师决定与历史（可长轮询）",
    description=(
        "`?wait=30`：药师尚未决定时最多等待 30 秒，决定一出立即返回。返回体另含 `context`：由归一化事实生成的"
        "患者（性别、年龄、体重、eGFR、妊娠/哺乳、过敏、诊断）、处方（类型、科室、医师职称、机构）与药品清单"
        "（剂量、频次、途径、天数、被哪些问题涉及）；值为 null 表示系统无法确定。"
    ),
    response_model=ReviewOut,
    responses={200: {"content": {"application/json": {"example": _REVIEW_EXAMPLE}},
                     **fhir_alternative("?_format=fhir：DetectedIssue 的 Bundle")},
               **errors(401, 403, 404, 422, 429)},
)
async def read_review(
    review_id: ReviewId,
    request: Request,
    runtime: RuntimeDep,
    uow: UnitOfWorkDep,
    principal: ReviewReaderDep,
    wait: Annotated[float, Query(ge=0, le=300, description="长轮询秒数：等待药师决定")] = 0,
    format_: Annotated[str | None, Query(alias="_format")] = None,
) -> JSONResponse:
    from audit_engine import queue
    from audit_engine.review_reads import read_review

    record = await run_in_threadpool(lambda: read_review(uow, review_id=review_id, principal=principal))
    if record is None:
        raise ApiError(404, f"没有审核 {review_id}，或无权查看", code="not-found")
    timeout = min(wait, runtime.settings.long_poll_max_seconds)
    if not record.decided and timeout > 0 and runtime.db is not None:
        status = await queue.await_decision(runtime.db, review_id=review_id, timeout_s=timeout,
                                            stop=request.is_disconnected)
        if status is not None and status[1]:
            record = await run_in_threadpool(lambda: read_review(uow, review_id=review_id, principal=principal))
    if _wants_fhir(request, format_):
        return JSONResponse(_fhir_body(record), media_type=FHIR_JSON)
    return JSONResponse(review_json(record))


class ExplanationIn(BaseModel):
    """The doctor's reason for an ``explain`` verdict (the native twin of a CDS override)."""

    reason: str = Field(min_length=1, max_length=2000, description="医师说明的理由")
    rule_id: str | None = Field(default=None, description="针对的规则（缺省为全部）")

    model_config = {"json_schema_extra": {"examples": [{"reason": "患者既往使用耐受，已告知风险"}]}}


@router.post(
    "/reviews/{review_id}/explanation",
    response_model=ReviewOut,
    summary="医师对“需说明理由”的处方给出理由（记为 overridden 反馈）",
    description="`rule_id` 缺省时理由针对全部问题；给出时须是本审核问题中的规则编号，否则 422。",
    responses=errors(401, 403, 404, 409, 413, 422, 429, descriptions={
        422: "理由为空，或 rule_id 不在本审核的问题中（OperationOutcome，expression 为 rule_id）"}),
)
def explain(review_id: ReviewId, body: ExplanationIn, uow: UnitOfWorkDep, principal: DoctorAnswerDep) -> JSONResponse:
    from audit_engine import feedback

    record = feedback.explain(uow, review_id=review_id, principal=principal, reason=body.reason, rule_id=body.rule_id)
    return JSONResponse(review_json(record))
