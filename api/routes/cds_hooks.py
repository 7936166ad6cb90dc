"""CDS Hooks 2.0: discovery, ``order-sign`` and feedback.

The doctor signs → the HIS posts the draft orders here → cards come back at once, and
``extension.review`` tells the HIS whether a pharmacist must look (``recheck``).
"""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Path, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse

from api.deps import DoctorAnswerDep, RuntimeDep, SecretDep, UnitOfWorkDep
from api.errors import ApiError, read_json, read_json_raw
from api.openapi import errors
from api.schemas import CdsResponse, CdsServices, FeedbackRecorded
from api.views import submit, thresholds
from audit_engine.fhir_out import card_id, cds_response

router = APIRouter(tags=["cds-hooks"])

SERVICE_ID = "county-prescription-review"
ServiceId = Annotated[str, Path(description="CDS 服务编号（见 GET /cds-services）", examples=[SERVICE_ID])]

SERVICE = {
    "hook": "order-sign",
    "id": SERVICE_ID,
    "title": "县域处方前置审核",
    "description": "医师签署处方时，按县域处方审核规则库审核合法性、规范性与适宜性；需药师复核的处方进入审方中心队列。",
    "prefetch": {
        "patient": "Patient/{{context.patientId}}",
        "encounter": "Encounter/{{context.encounterId}}",
        "practitioner": "{{context.userId}}",
        "conditions": "Condition?patient={{context.patientId}}&clinical-status=active",
        "allergies": "AllergyIntolerance?patient={{context.patientId}}",
        "observations": "Observation?patient={{context.patientId}}&category=laboratory,vital-signs&_sort=-date",
    },
    "usageRequirements": "以机构 API 密钥作为 Bearer 令牌调用；prefetch 各项均可缺省，缺失的信息使需要它的规则不触发或转药师复核。",
}

_REQUEST_EXAMPLE = {
    "hook": "order-sign",
    "hookInstance": "d1577c69-dfbe-44ad-ba6d-3e05e953b2ea",
    "context": {
        "userId": "Practitioner/doc-002",
        "patientId": "pat-002",
        "encounterId": "enc-002",
        "draftOrders": {
            "resourceType": "Bundle",
            "type": "collection",
            "entry": [{"resource": {
                "resourceType": "MedicationRequest",
                "id": "mr-1",
                "identifier": [{"system": "urn:his:order", "value": "RX20261123002-1"}],
                "groupIdentifier": {"system": "urn:his:prescription", "value": "P20261123-0002"},
                "status": "draft",
                "intent": "order",
                "medicationCodeableConcept": {"coding": [{"system": "http://www.whocc.no/atc", "code": "C10AA01",
                                                          "display": "辛伐他汀"}]},
                "subject": {"reference": "Patient/pat-002"},
                "dosageInstruction": [{"text": "40mg qd", "doseAndRate": [{"doseQuantity": {
                    "value": 40, "unit": "mg"}}], "timing": {"repeat": {"frequency": 1, "period": 1,
                                                                         "periodUnit": "d"}}}],
            }}],
        },
    },
    "prefetch": {"patient": {"resourceType": "Patient", "id": "pat-002", "gender": "male", "birthDate": "1958-04-02"}},
}

_RESPONSE_EXAMPLE = {
    "cards": [{
        "uuid": "0b2d…",
        "summary": "【7级·适宜性】辛伐他汀与克拉霉素禁止合用：…",
        "detail": "…",
        "indicator": "critical",
        "source": {"label": "县域处方审核规则库", "topic": {"code": "DDI-SIMVA-CLARI", "display": "…"}},
        "overrideReasons": [{"code": "benefit-outweighs-risk", "display": "获益大于风险"}],
        "extension": {"implicated": ["MedicationRequest/mr-1", "MedicationRequest/mr-2"]},
    }],
    "extension": {"review": {"id": "9f1c…", "verdict": "recheck", "verdict_zh": "待药师复核"}},
}


@router.get("/cds-services", response_model=CdsServices, summary="CDS Hooks 发现接口")
def discovery() -> dict[str, Any]:
    return {"services": [SERVICE]}


@router.post(
    "/cds-services/{service_id}",
    summary="order-sign：审核医师签署的处方，返回卡片",
    description=(
        "处方号放在 `MedicationRequest.groupIdentifier`。同一处方号、同样的临床内容重发（含新的 `hookInstance`）"
        "返回同一审核；同一处方号、内容有改动是新版本：重新审核，关联上一版本（`previous_review_id`），"
        "上一版本未决的药师任务关闭为 superseded。卡片 uuid 稳定，反馈只接受本服务发出的卡片。"
    ),
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {"application/json": {"schema": {"type": "object"}, "example": _REQUEST_EXAMPLE}},
        }
    },
    response_model=CdsResponse,
    responses={200: {"content": {"application/json": {"example": _RESPONSE_EXAMPLE}}},
               **errors(400, 401, 403, 404, 413, 422, 429, descriptions={
                   404: "没有这个 CDS 服务", 422: "请求不合法（OperationOutcome，含 FHIRPath）"})},
)
async def order_sign(service_id: ServiceId, request: Request, runtime: RuntimeDep, secret: SecretDep) -> JSONResponse:
    _known(service_id)
    payload, raw = await read_json_raw(request, max_bytes=runtime.settings.max_body_bytes)
    record = await submit(runtime, secret=secret, payload=payload, kind="cds", raw=raw)
    explain_at, recheck_at = thresholds(record)
    extra: dict[str, Any] = {"rulebase_version": record.rulebase_version}
    for name in ("outcome", "engine_failed", "fail_mode"):
        if hasattr(record, name):
            extra[name] = getattr(record, name)
    ids = [card_id(record.id, f, i) for i, f in enumerate(record.findings)]
    body = cds_response(record.findings, review_id=record.id, verdict=record.verdict, explain_at=explain_at,
                        recheck_at=recheck_at, card_ids=ids, extra=extra)
    return JSONResponse(body)


@router.post(
    "/cds-services/{service_id}/feedback",
    summary="记录医师对卡片的反馈（accepted / overridden）",
    description=(
        "只接受本服务发给调用机构的卡片（否则 404）。同一卡片的反馈只记录一次：重发相同反馈返回 200，"
        "计入 `already_recorded`；对已反馈的卡片改报另一结果为 409。`outcomeTimestamp` 可省略，给出时须为 FHIR instant"
        "（如 `2026-11-23T08:00:00Z`，须含秒和时区），否则 422。"
    ),
    response_model=FeedbackRecorded,
    openapi_extra={"requestBody": {"required": True, "content": {"application/json": {
        "schema": {"type": "object"},
        "example": {"feedback": [{"card": "0b2d…", "outcome": "overridden", "overrideReason": {
            "reason": {"code": "benefit-outweighs-risk", "display": "获益大于风险"}, "userComment": "已告知患者"},
            "outcomeTimestamp": "2026-11-23T08:00:00Z"}]}}}}},
    responses={
        200: {"description": "已记录", "content": {"application/json": {"example": {"recorded": 1, "already_recorded": 0}}}},
        **errors(400, 401, 403, 404, 409, 413, 422, 429, descriptions={
            404: "不是本服务发给本机构的卡片（OperationOutcome，expression 为 feedback[i].card）",
            409: "该卡片已有另一种反馈结果（OperationOutcome）",
            422: "反馈格式不合法（OperationOutcome，含 FHIRPath）"}),
    },
)
async def feedback(
    service_id: ServiceId, request: Request, runtime: RuntimeDep, uow: UnitOfWorkDep, principal: DoctorAnswerDep
) -> JSONResponse:
    _known(service_id)
    doc = await read_json(request, max_bytes=runtime.settings.max_body_bytes)
    items = doc.get("feedback")
    if not isinstance(items, list) or not items:
        raise ApiError(422, "需要非空数组 feedback", code="required", expression="feedback")
    parsed: list[tuple[str, Literal["accepted", "overridden"], str | None, datetime | None]] = []
    for i, item in enumerate(items):
        where = f"feedback[{i}]"
        if not isinstance(item, dict):
            raise ApiError(422, "反馈项必须是对象", code="structure", expression=where)
        card, outcome = item.get("card"), item.get("outcome")
        if not isinstance(card, str) or not card:
            raise ApiError(422, "缺少卡片 uuid", code="required", expression=f"{where}.card")
        if outcome not in ("accepted", "overridden"):
            raise ApiError(422, f"outcome 必须是 accepted 或 overridden，收到 {outcome!r}", code="value",
                           expression=f"{where}.outcome")
        reason = _override_reason(item.get("overrideReason"), f"{where}.overrideReason")
        at = _instant(item.get("outcomeTimestamp"), f"{where}.outcomeTimestamp")
        parsed.append((card, outcome, reason, at))

    from audit_engine.feedback import record_cards_feedback

    recorded, already = await run_in_threadpool(
        lambda: record_cards_feedback(uow, principal=principal, items=parsed))
    return JSONResponse({"recorded": recorded, "already_recorded": already})


# FHIR R4 ``instant``: always to the second, always with a time zone.
_INSTANT = re.compile(
    r"([0-9]([0-9]([0-9][1-9]|[1-9]0)|[1-9]00)|[1-9]000)-(0[1-9]|1[0-2])-(0[1-9]|[12][0-9]|3[01])"
    r"T([01][0-9]|2[0-3]):[0-5][0-9]:([0-5][0-9]|60)(\.[0-9]{1,9})?(Z|[+-]((0[0-9]|1[0-3]):[0-5][0-9]|14:00))"
)


def _instant(value: Any, where: str) -> datetime | None:
    """A FHIR instant as naive UTC (what the store keeps), None when absent; 422 otherwise."""
    if value is None:
        return None
    bad = ApiError(422, f"outcomeTimestamp 须为 FHIR instant（如 2026-11-23T08:00:00Z），收到 {value!r}",
                   code="value", expression=where)
    if not isinstance(value, str) or not _INSTANT.fullmatch(value):
        raise bad
    text = value.replace("Z", "+00:00")
    head, dot, rest = text.partition(".")
    if dot:  # Python keeps microseconds: cut the fraction to 6 digits, keep the offset
        digits = re.match(r"[0-9]+", rest)
        assert digits is not None
        text = f"{head}.{digits.group()[:6]}{rest[digits.end():]}"
    try:
        parsed = datetime.fromisoformat(text.replace(":60", ":59"))  # a leap second counts as :59
    except ValueError:  # 2026-02-30 matches the pattern but is no date
        raise bad from None
    return parsed.astimezone(UTC).replace(tzinfo=None)


def _override_reason(value: Any, where: str) -> str | None:
    if value is None:
        return None
    if not isinstance(value, dict):
        raise ApiError(422, "overrideReason 必须是对象", code="structure", expression=where)
    reason = value.get("reason") or {}
    parts = [str(reason.get("display") or reason.get("code") or "")] if isinstance(reason, dict) else []
    if isinstance(value.get("userComment"), str):
        parts.append(value["userComment"])
    text = "；".join(p for p in parts if p)
    return text or None


def _known(service_id: str) -> None:
    if service_id != SERVICE_ID:
        raise ApiError(404, f"没有 CDS 服务 {service_id!r}（可用：{SERVICE_ID}）", code="not-found")
