"""Response models of the native API, for the OpenAPI document.

Routes return ``JSONResponse`` bodies built by ``api/views.py`` (no second serialisation on
the hot path); these models say what those bodies hold, and the schemathesis run in
``tests/api/test_api_openapi_conformance.py`` checks every answer against them. FHIR
resources (Bundles, Tasks, OperationOutcomes) stay plain JSON objects in the document.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from fastapi import Path
from pydantic import BaseModel, Field

Verdict = Literal["pass", "explain", "recheck", "block"]


class FindingOut(BaseModel):
    rule_id: str
    title: str
    level: int = Field(description="严重程度 0–9")
    category: str = Field(description="合法性 / 规范性 / 适宜性")
    subtype: str | None = None
    message: str
    suggestion: str | None = None
    evidence: str | None = None
    implicated: list[str] = Field(description='涉及的医嘱，如 ["MedicationRequest/mr-1"]')


class TaskOut(BaseModel):
    """A pharmacist task (复核任务)."""

    id: str
    review_id: str
    institution_id: int
    institution_code: str | None = None
    status: str = Field(description="pending / claimed / approved / rejected / returned / modified / "
                                    "double_signed / abandoned / timeout_passed / escalated")
    final: bool
    emergency: bool
    escalated: bool
    max_level: int
    created_at: datetime
    deadline_at: datetime | None = None
    claimed_by: str | None = None
    claimed_at: datetime | None = None
    lease_expires_at: datetime | None = None
    decision: str | None = None
    reason: str | None = None
    decided_by: str | None = None
    decided_at: datetime | None = None
    answer_due_at: datetime | None = None
    doctor_answer: str | None = None
    doctor_reason: str | None = None
    next_review_id: str | None = None
    closed_at: datetime | None = None


class ReviewOut(BaseModel):
    """A review: the system's verdict and findings, then where it stands and its history."""

    id: str
    verdict: Verdict
    verdict_zh: str
    findings: list[FindingOut]
    rulebase_version: str
    outcome: str | None = Field(default=None, description="当前状态，如 pending、pharmacist_pass、returned")
    prescription_identifier: str | None = None
    institution_code: str | None = None
    max_level: int | None = None
    unchecked: bool | None = None
    emergency: bool | None = None
    fail_mode: str | None = None
    engine_failed: bool | None = None
    previous_review_id: str | None = None
    next_review_id: str | None = None
    created_at: datetime | None = None
    decided_at: datetime | None = None
    policy: dict[str, Any] | None = Field(default=None, description="作出结论时的机构策略（阈值等）")
    task: TaskOut | None = None
    decision: dict[str, Any] | None = None
    history: list[dict[str, Any]] | None = Field(default=None, description="审计记录：谁在何时做了什么")
    items: list[str] | None = None
    timings_ms: dict[str, float] | None = None
    replayed: bool | None = Field(default=None, description="true：同一处方标识与内容的重复提交，返回原审核")
    context: dict[str, Any] | None = Field(default=None, description="患者、处方与药品清单（由归一化事实生成）")


class TaskWithReview(TaskOut):
    review: ReviewOut | None = None


class DoctorAnswerOut(TaskOut):
    new_review: ReviewOut | None = Field(default=None, description="modify 时：修改后处方的审核")


class TaskList(BaseModel):
    tasks: list[TaskOut]


class FeedbackRecorded(BaseModel):
    recorded: int = Field(description="记录的反馈条数")
    already_recorded: int = Field(default=0, description="此前已记录、本次重发的反馈条数")


class HealthOut(BaseModel):
    status: Literal["ok", "starting", "error"]
    rulebase: dict[str, Any] | None = Field(default=None, description='{"version": "<内容哈希>"}')
    error: str | None = None
    audit_chain: dict[str, Any] | None = Field(
        default=None, description='后台核验审计日志哈希链的结果：{"status": "intact"|"broken"|"unchecked", ...}')


class CdsServices(BaseModel):
    services: list[dict[str, Any]]


class CdsResponse(BaseModel):
    cards: list[dict[str, Any]]
    extension: dict[str, Any] = Field(description='含 review: {"id", "verdict", ...}')


class DiagnosticOut(BaseModel):
    file: str | None = None
    line: int | None = None
    col: int | None = None
    message: str
    hint: str | None = None
    text: str = Field(description="file:line:col: 说明")


class RulebaseCheck(BaseModel):
    ok: bool
    version: str | None = None
    rules: int | None = None
    diagnostics: list[DiagnosticOut]


class RulebaseVersionOut(BaseModel):
    version: str
    label: str | None = None
    status: str
    active: bool
    uploaded_by: str | None = None
    uploaded_at: str | None = None
    activated_at: str | None = None
    files: list[str]


class RulebaseUploaded(RulebaseVersionOut):
    ok: bool
    rules: int | None = None


class RulebaseServing(RulebaseVersionOut):
    serving: str | None = Field(default=None, description="本进程正在使用的版本")


class RulebaseList(BaseModel):
    versions: list[RulebaseVersionOut]


class DryRunReport(BaseModel):
    version: str
    examined: int
    verdict_changes: int
    finding_changes: int
    failed: int
    transitions: dict[str, int]
    changes: list[dict[str, Any]]


# --------------------------------------------------------------------------- path and query parameters
# Public ids are 32 lower-case hex characters; anything that could not be an id (NUL bytes,
# slashes, kilobytes of text) is a 422 before it reaches the database.
_ID_PATTERN = r"^[0-9A-Za-z_-]{1,64}$"
ReviewId = Annotated[str, Path(pattern=_ID_PATTERN, description="审核编号（32 位十六进制）")]
TaskId = Annotated[str, Path(pattern=_ID_PATTERN, description="任务编号（32 位十六进制）")]
RulebaseVersionId = Annotated[str, Path(pattern=_ID_PATTERN, description="规则库版本（内容哈希）")]
InstitutionCode = Annotated[str, Path(pattern=r"^[^\x00-\x1f/\\]{1,64}$", description="机构编码")]
TaskStatus = Annotated[str, Field(pattern=r"^[a-z_]{1,32}$")]
