"""The pharmacist workbench: one server-rendered page; its script talks to the JSON API."""

from __future__ import annotations

from pathlib import Path

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse
from fastapi.templating import Jinja2Templates

router = APIRouter(include_in_schema=False)
templates = Jinja2Templates(directory=str(Path(__file__).resolve().parent.parent / "templates"))

SHORTCUTS = (
    ("j / k", "下一个 / 上一个任务"),
    ("c", "领取下一个任务"),
    ("a", "通过（approve）"),
    ("r", "拒绝（reject，需填理由）"),
    ("b", "打回医生（return，需填理由）"),
    ("g", "刷新队列"),
    ("?", "显示 / 隐藏快捷键"),
)


@router.get("/", response_class=HTMLResponse)
@router.get("/workbench", response_class=HTMLResponse)
def workbench(request: Request) -> HTMLResponse:
    return templates.TemplateResponse(request, "workbench.html", {"shortcuts": SHORTCUTS})
