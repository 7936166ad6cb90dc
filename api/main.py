"""The FastAPI application: ``create_app()`` wires settings, runtime, errors and routes.

Follow one prescription from ``api/routes/cds_hooks.py`` (or ``reviews.py``) through
``audit_engine.submission.submit_review`` → ``audit_engine.review.review_payload``.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from fastapi import FastAPI
from fastapi.staticfiles import StaticFiles
from fastapi_offline import FastAPIOffline

from api.errors import BodyLimitMiddleware, install_error_handlers
from api.openapi import install_openapi
from api.runtime import Runtime
from api.throttle import BadCredentialsMiddleware, throttle_for
from audit_engine.settings import Settings, get_settings

log = logging.getLogger("api")

API_DESCRIPTION = """
县域集中审方（处方前置审核）服务。

* **HIS 插件**：`Authorization: Bearer <机构API密钥>`，以 CDS Hooks 2.0 `order-sign`
  （`POST /cds-services/{id}`）或原生 `POST /api/v1/reviews`（FHIR R4 Bundle）提交处方，
  同步得到审核结论（`pass` / `explain` / `recheck` / `block`）与问题清单；
  需要药师复核时，以长轮询 `GET /api/v1/reviews/{id}?wait=30` 或 webhook 订阅得知药师决定。
* **药师**：`POST /api/v1/auth/token` 登录后 `POST /api/v1/queue/claim` 领取任务，
  `POST /api/v1/tasks/{id}/decision` 作出决定（approve / reject / return）。
* **规则管理员**：上传、校验、试运行、激活与回滚规则库版本（`/api/v1/rulebases`）。

* **管理员**：维护各机构的 webhook 回调主机白名单（`/api/v1/admin/institutions/{code}/webhook-hosts`）。

权限：机构 API 密钥只能操作本机构的处方（审方中心的密钥也不例外）；药师领取与决定任务，质控查看，
管理员管理规则库与白名单（不参与审方）。登录失败过多、请求过于频繁或错误凭据过多时答 429，
`Retry-After` 给出需等待的秒数。

错误一律以 FHIR `OperationOutcome`（`application/fhir+json`）返回，`expression` 给出出错元素的 FHIRPath。
"""

TAGS = [
    {"name": "service", "description": "健康检查"},
    {"name": "auth", "description": "用户登录（OAuth2 密码模式）"},
    {"name": "cds-hooks", "description": "CDS Hooks 2.0：发现、order-sign、反馈"},
    {"name": "reviews", "description": "原生审方接口与结果查询（含长轮询）"},
    {"name": "queue", "description": "药师复核队列与任务"},
    {"name": "subscriptions", "description": "webhook 订阅：药师决定后回调 HIS（HMAC-SHA256 签名）"},
    {"name": "rulebase", "description": "规则库版本管理（管理员）"},
    {"name": "admin", "description": "管理员：机构的 webhook 回调主机白名单"},
    {"name": "stats", "description": "质控统计：指标、同质化、规则审计、用药监测、培训指导与报表（quality、admin）"},
    {"name": "institutions", "description": "成员机构管理（管理员）：审核策略"},
    {"name": "quality", "description": "质控工作台：处方点评抽样与点评、处方合格率、教学案例、候选规则库试运行（quality、admin）"},
]


def create_app(settings: Settings | None = None, *, engine_factory: Callable[[str | None], Any] | None = None) -> FastAPI:
    """Build the service. Tests pass their own ``settings`` and may inject ``engine_factory``
    (rulebase path → engine; tests/service/fake_serve.py does so for a real ``serve``);
    production reads the environment and loads the active rulebase."""
    settings = settings or get_settings()
    runtime = Runtime(settings=settings, engine_factory=engine_factory)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        if settings.auth_disabled:
            log.warning(
                "AUDIT_AUTH_DISABLED=1: authentication is OFF; every call acts as the demo lead county "
                "hospital with all roles. Local development only."
            )
        try:
            runtime.start()
        except Exception as exc:  # /health says 503 with the reason instead of the process dying silently
            runtime.startup_error = f"{type(exc).__name__}: {exc}"
            log.exception("service failed to start")
        yield
        runtime.stop()

    # /docs with Swagger UI served from the package's own files: a county intranet has no
    # internet, and FastAPI's default page loads it from a CDN. No /redoc: its bundle still
    # fetches a logo from its vendor's CDN.
    app = FastAPIOffline(
        redoc_url=None,
        title="县域集中审方服务 audit-engine",
        version="1.0",
        description=API_DESCRIPTION,
        openapi_tags=TAGS,
        lifespan=lifespan,
    )
    app.state.runtime = runtime
    install_error_handlers(app)
    app.add_middleware(BodyLimitMiddleware, max_bytes=settings.max_body_bytes)
    runtime.throttle = throttle_for(settings)
    app.add_middleware(BadCredentialsMiddleware, throttle=runtime.throttle)

    from api.routes import (
        auth,
        cds_hooks,
        health,
        institutions,
        pages,
        quality,
        quality_page,
        queue,
        queue_reads,
        reviews,
        rulebase,
        stats,
        subscriptions,
        webhook_hosts,
    )

    for router_module in (health, auth, cds_hooks, reviews, queue, queue_reads, subscriptions, webhook_hosts, rulebase,
                          institutions, stats, quality, quality_page, pages):
        app.include_router(router_module.router)
    install_openapi(app)
    static = Path(__file__).parent / "static"
    if static.is_dir():
        app.mount("/static", StaticFiles(directory=static), name="static")
    return app
