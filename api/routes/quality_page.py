"""The quality manager's workspace page (``/quality``): one server-rendered shell; its script
(``static/quality/quality.js``) draws every view from the JSON API with the shipped ECharts."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse

from api.routes.pages import templates

router = APIRouter(include_in_schema=False)

VIEWS = (
    ("overview", "总览"),
    ("homogenisation", "同质化"),
    ("rules", "规则审计"),
    ("prescribing", "处方指标与培训指导"),
    ("reports", "报表下载"),
    ("comments", "处方点评"),
    ("replay", "规则试运行"),
)

SHORTCUTS = (
    ("1", "合理"),
    ("2", "不合理（再选代码）"),
    ("A01…C04", "在代码框输入代码，回车添加"),
    ("n", "填写点评意见"),
    ("Enter / Ctrl+Enter", "保存并跳到下一张"),
    ("j / k", "下一张 / 上一张"),
    ("t", "收入教学案例库"),
)


@router.get("/quality", response_class=HTMLResponse)
def quality_page(request: Request) -> HTMLResponse:
    return templates.TemplateResponse(request, "quality.html", {"views": VIEWS, "shortcuts": SHORTCUTS})
