"""What the OpenAPI document says about errors: every 4xx is a FHIR OperationOutcome sent as
``application/fhir+json``, and each route lists the statuses it can answer.

Routes write ``responses=errors(401, 403, 404, 422, 429)``; :func:`install_openapi` puts the
``OperationOutcome`` schema into the document's components once.
"""

from __future__ import annotations

from typing import Any, Literal

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi
from pydantic import BaseModel, Field

FHIR_JSON = "application/fhir+json"
OUTCOME_REF = {"$ref": "#/components/schemas/OperationOutcome"}


class OutcomeIssue(BaseModel):
    severity: Literal["fatal", "error", "warning", "information"]
    code: str = Field(description="http://hl7.org/fhir/issue-type 的编码，如 invalid、required、forbidden")
    diagnostics: str = Field(description="中文说明")
    expression: list[str] | None = Field(default=None, description="出错元素的 FHIRPath")


class OperationOutcome(BaseModel):
    """The body of every refusal (FHIR R4 OperationOutcome)."""

    resourceType: Literal["OperationOutcome"]
    issue: list[OutcomeIssue] = Field(min_length=1)

    model_config = {"json_schema_extra": {"examples": [{
        "resourceType": "OperationOutcome",
        "issue": [{"severity": "error", "code": "required", "diagnostics": "请求不合法：Field required",
                   "expression": ["reason"]}]}]}}


_DEFAULT_DESCRIPTIONS = {
    400: "请求体不是合法的 JSON（OperationOutcome）",
    401: "缺少凭据或凭据无效（OperationOutcome；响应头 WWW-Authenticate: Bearer）",
    403: "凭据有效，但该角色无权执行此操作（OperationOutcome）",
    404: "不存在，或不属于调用方可见的机构（OperationOutcome）",
    409: "与当前状态冲突（OperationOutcome）",
    413: "请求体超过上限（OperationOutcome）",
    415: "不支持的请求体格式（OperationOutcome）",
    422: "请求不合法：expression 给出出错元素（OperationOutcome）",
    429: "请求过于频繁：按响应头 Retry-After 的秒数后重试（OperationOutcome）",
    503: "服务尚未就绪（OperationOutcome）",
}


def errors(*statuses: int, descriptions: dict[int, str] | None = None) -> dict[int | str, dict[str, Any]]:
    """``responses=`` entries for these error statuses, each an OperationOutcome in application/fhir+json."""
    out: dict[int | str, dict[str, Any]] = {}
    for status in statuses:
        entry: dict[str, Any] = {
            "description": (descriptions or {}).get(status, _DEFAULT_DESCRIPTIONS.get(status, "错误（OperationOutcome）")),
            "content": {FHIR_JSON: {"schema": OUTCOME_REF}},
        }
        if status == 429:
            entry["headers"] = {"Retry-After": {"description": "多少秒后可以重试", "schema": {"type": "integer"}}}
        if status == 401:
            entry["headers"] = {"WWW-Authenticate": {"schema": {"type": "string"}}}
        out[status] = entry
    return out


# What every authenticated route can answer besides its own statuses.
AUTHENTICATED = (401, 403, 429)


def install_openapi(app: FastAPI) -> None:
    """Build the document once, with the OperationOutcome schemas among the components."""

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is not None:
            return app.openapi_schema
        doc = get_openapi(title=app.title, version=app.version, description=app.description,
                          routes=app.routes, tags=app.openapi_tags)
        schemas = doc.setdefault("components", {}).setdefault("schemas", {})
        outcome = OperationOutcome.model_json_schema(ref_template="#/components/schemas/{model}")
        schemas.update(outcome.pop("$defs", {}))
        schemas["OperationOutcome"] = outcome
        # FastAPI documents its own validation error body; ours is an OperationOutcome.
        for operations in doc.get("paths", {}).values():
            for operation in operations.values():
                if "requestBody" in operation:  # a body that is not JSON (or not UTF-8) at all
                    operation["responses"].setdefault("400", errors(400)[400])
                answer = operation.get("responses", {}).get("422")
                if answer and "HTTPValidationError" in str(answer.get("content", "")):
                    answer["content"] = {FHIR_JSON: {"schema": OUTCOME_REF}}
                    answer["description"] = _DEFAULT_DESCRIPTIONS[422]
        schemas.pop("HTTPValidationError", None)
        schemas.pop("ValidationError", None)
        app.openapi_schema = doc
        return doc

    app.openapi = openapi  # type: ignore[method-assign]


def fhir_alternative(description: str, example: dict[str, Any] | None = None) -> dict[str, Any]:
    """A success answer that is a FHIR resource when asked for with ``?_format=fhir`` or
    ``Accept: application/fhir+json`` (merged beside the route's JSON model)."""
    media: dict[str, Any] = {"schema": {"type": "object", "description": description,
                                        "properties": {"resourceType": {"type": "string"}},
                                        "required": ["resourceType"]}}
    if example is not None:
        media["example"] = example
    return {"content": {FHIR_JSON: media}}


def json_or_outcome(status: int, model: type[BaseModel], description: str) -> dict[int | str, dict[str, Any]]:
    """A status answered either with ``model`` as application/json or with an OperationOutcome."""
    return {status: {"description": description, "model": model,
                     "content": {FHIR_JSON: {"schema": OUTCOME_REF}}}}
