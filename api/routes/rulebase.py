"""Rulebase management (admin): upload, validate, dry-run, activate, roll back.

Upload accepts a zip (``application/zip``), a multipart form of ``.rules`` / ``.csv``
files (a zip among them is unpacked), or JSON ``{"files": {"path": "text"}, "label": ...}``.
A version that does not check is refused with every diagnostic (``file:line:col``);
nothing is stored. Activation flips the active row in one transaction; every process
picks the new version up within its poll interval, reviews in flight finish on the old.
"""

from __future__ import annotations

import json
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse

from api.deps import AdminDep, RuntimeDep, UnitOfWorkDep
from api.errors import ApiError
from api.openapi import errors, json_or_outcome
from api.schemas import (
    DryRunReport,
    RulebaseCheck,
    RulebaseList,
    RulebaseServing,
    RulebaseUploaded,
    RulebaseVersionId,
)
from audit_engine import rulebase_lifecycle
from audit_engine.errors import InputIssue, IntakeError
from audit_engine.rulebase_dry_run import dry_run as run
from audit_engine.unit_of_work import UnitOfWork

router = APIRouter(prefix="/api/v1/rulebases", tags=["rulebase"])


_diag_json = rulebase_lifecycle.diag_json


def _row_json(row: Any) -> dict[str, Any]:
    return rulebase_lifecycle.row_json(row)


async def _files_from_request(request: Request, max_bytes: int) -> tuple[dict[str, str], str | None]:
    ctype = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if ctype.startswith("multipart/"):
        form = await request.form(max_files=rulebase_lifecycle.MAX_FILES)
        files: dict[str, str] = {}
        label = form.get("label")
        for _, value in form.multi_items():
            if isinstance(value, str):
                continue
            data = await value.read()
            name = value.filename or "upload"
            if name.lower().endswith(".zip"):
                files.update(rulebase_lifecycle.files_from_zip(data))
            else:
                files[rulebase_lifecycle.clean_path(name)] = rulebase_lifecycle.decode(data, name)
        if not files:
            raise IntakeError([InputIssue("required", "表单中没有上传文件", expression="files")], status=422)
        return files, label if isinstance(label, str) else None
    raw = await request.body()
    if len(raw) > max_bytes * 10:
        raise IntakeError([InputIssue("too-costly", "规则库上传过大")], status=413)
    if ctype in ("application/zip", "application/x-zip-compressed", "application/octet-stream"):
        return rulebase_lifecycle.files_from_zip(raw), request.query_params.get("label")
    try:
        doc = json.loads(raw)
    except (ValueError, UnicodeDecodeError):
        raise IntakeError([InputIssue("invalid", "需要 zip、multipart 或 JSON {files} 格式")], status=400) from None
    if not isinstance(doc, dict):
        raise IntakeError([InputIssue("structure", "JSON 顶层必须是对象", expression="$this")], status=422)
    label = doc.get("label")
    return rulebase_lifecycle.files_from_json(doc), label if isinstance(label, str) else None


_UPLOAD_DOC = {"requestBody": {"required": True, "content": {
    "application/json": {"schema": {"type": "object"}, "example": {
        "label": "2026年第4季度县规则库", "files": {"main.rules": "…", "tables/dose_ranges.csv": "…"}}},
    "application/zip": {"schema": {"type": "string", "format": "binary"}},
    "multipart/form-data": {"schema": {"type": "object", "properties": {
        "files": {"type": "array", "items": {"type": "string", "format": "binary"}}, "label": {"type": "string"}}}},
}}}


@router.post("/validate", summary="只校验，不保存：返回全部诊断（file:line:col）", openapi_extra=_UPLOAD_DOC,
             response_model=RulebaseCheck,
             responses={**errors(400, 401, 403, 413, 429),
                        **json_or_outcome(422, RulebaseCheck, "校验失败（diagnostics 列出每处 file:line:col），"
                                                              "或上传内容不可读（OperationOutcome）")})
async def validate(request: Request, runtime: RuntimeDep, _: AdminDep) -> JSONResponse:
    files, _label = await _files_from_request(request, runtime.settings.max_body_bytes)
    checked = await run_in_threadpool(rulebase_lifecycle.check_files, files, runtime.settings)
    return JSONResponse({"ok": checked.ok, "version": checked.version, "rules": checked.rule_count,
                         "diagnostics": [_diag_json(d) for d in checked.diagnostics]},
                        status_code=200 if checked.ok else 422)


@router.post("", status_code=201, summary="上传新版本（校验通过才保存；不自动激活）", openapi_extra=_UPLOAD_DOC,
             response_model=RulebaseUploaded,
             responses={200: {"description": "该版本已上传过：返回已存的版本", "model": RulebaseUploaded},
                        **errors(400, 401, 403, 413, 429),
                        **json_or_outcome(422, RulebaseCheck, "校验失败（diagnostics 列出每处 file:line:col），"
                                                              "或上传内容不可读（OperationOutcome）")})
async def upload(request: Request, runtime: RuntimeDep, uow: UnitOfWorkDep, principal: AdminDep) -> JSONResponse:
    files, label = await _files_from_request(request, runtime.settings.max_body_bytes)
    checked = await run_in_threadpool(rulebase_lifecycle.check_files, files, runtime.settings)
    if not checked.ok or checked.version is None:
        return JSONResponse({"ok": False, "diagnostics": [_diag_json(d) for d in checked.diagnostics]},
                            status_code=422)

    def store() -> tuple[Any, bool]:
        return rulebase_lifecycle.store_version(uow, principal, files, label, checked)

    row, created = await run_in_threadpool(store)
    return JSONResponse({"ok": True, **_row_json(row), "rules": checked.rule_count}, status_code=201 if created else 200)


@router.get("", response_model=RulebaseList, summary="列出规则库版本", responses=errors(401, 403, 429))
def list_versions(uow: UnitOfWorkDep, _: AdminDep) -> JSONResponse:
    return JSONResponse({"versions": [_row_json(r) for r in rulebase_lifecycle.list_versions(uow)]})


@router.post("/{version}/dry-run", response_model=DryRunReport, summary="试运行：用该版本重审最近的处方，报告结论将如何变化",
             responses=errors(401, 403, 404, 422, 429))
async def dry_run(version: RulebaseVersionId, runtime: RuntimeDep, uow: UnitOfWorkDep, principal: AdminDep,
                  limit: Annotated[int, Query(ge=1, le=2000)] = 200) -> JSONResponse:
    row = _get(uow, version)
    report = await run_in_threadpool(run, uow.session, row=row, principal=principal, settings=runtime.settings, limit=limit)
    return JSONResponse(report)


@router.post("/{version}/activate", response_model=RulebaseServing,
             summary="激活该版本（原子切换；进行中的审核用旧版本完成）", responses=errors(401, 403, 404, 422, 429))
def activate(version: RulebaseVersionId, runtime: RuntimeDep, uow: UnitOfWorkDep, principal: AdminDep) -> JSONResponse:
    row = _get(uow, version)
    rulebase_lifecycle.activate_version(uow, principal, row)
    runtime.sync_rulebase()
    return JSONResponse({**_row_json(row), "serving": runtime.engine.version if runtime.engine else None})


@router.post("/rollback", response_model=RulebaseServing, summary="回滚到上一个激活过的版本",
             responses=errors(401, 403, 409, 429, descriptions={409: "没有可回滚的先前版本"}))
def rollback(runtime: RuntimeDep, uow: UnitOfWorkDep, principal: AdminDep) -> JSONResponse:
    try:
        previous = rulebase_lifecycle.rollback_version(uow, principal)
    except rulebase_lifecycle.LifecycleError as err:
        raise ApiError(err.status, err.message, code=err.code) from None
    runtime.sync_rulebase()
    return JSONResponse({**_row_json(previous), "serving": runtime.engine.version if runtime.engine else None})


def _get(uow: UnitOfWork, version: str) -> Any:
    try:
        return rulebase_lifecycle.get_version(uow, version)
    except rulebase_lifecycle.LifecycleError as err:
        raise ApiError(err.status, err.message, code=err.code) from None
