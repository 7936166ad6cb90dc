"""GET /health: 200 with the rulebase version once ready to review, 503 before.

``audit_chain`` says what the background worker last found when it verified the audit
log's hash chain (``audit_engine.chain_check``): ``intact``, ``broken`` (with the first bad
entry) or ``unchecked``. A broken chain does not make the answer 503: the service still
reviews prescriptions correctly, and taking every replica out of a load balancer would stop
prescription review county-wide over a record-keeping incident. It is an error in the log
and a field here for monitoring, and ``audit-engine audit verify`` names the entry.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter
from fastapi.responses import JSONResponse

from api.deps import RuntimeDep
from api.schemas import HealthOut

router = APIRouter(tags=["service"])


@router.get(
    "/health",
    summary="服务健康与当前规则库版本",
    response_model=HealthOut,
    responses={
        200: {"content": {"application/json": {"example": {
            "status": "ok", "rulebase": {"version": "3f2a…"},
            "audit_chain": {"status": "intact", "verified_seq": 1024, "checked_at": "2026-11-23T08:00:00Z"}}}}},
        503: {"description": "尚未就绪（启动中或规则库加载失败）", "model": HealthOut},
    },
)
def health(runtime: RuntimeDep) -> JSONResponse:
    if not runtime.ready or runtime.engine is None:
        body: dict[str, Any] = {"status": "starting" if runtime.startup_error is None else "error"}
        if runtime.startup_error:
            body["error"] = runtime.startup_error
        return JSONResponse(body, status_code=503)
    engine = runtime.review_engine()
    return JSONResponse({"status": "ok", "rulebase": {"version": engine.version},
                         "audit_chain": runtime.chain_status().json()})
