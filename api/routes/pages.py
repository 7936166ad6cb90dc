"""The pharmacist workbench: one server-rendered page; its script talks to the JSON API."""

from __future__ import annotations

from pathlib import Path

from fastapi import APIRouter, Request
from fastapi.responses import FileResponse, HTMLResponse
from fastapi.templating import Jinja2Templates

router = APIRouter(include_in_schema=False)
templates = Jinja2Templates(directory=str(Path(__file__).resolve().parent.parent / "templates"))
FAVICON = Path(__file__).resolve().parent.parent / "static" / "favicon.svg"

SHORTCUTS = (
    ("j / k", "下一个 / 上一个任务（到页尾自动翻页）"),
    ("c", "领取当前任务（已被他人领取时领取下一个）"),
    ("a", "通过（approve；未领取的任务先自动领取）"),
    ("r", "拒绝（reject，需填理由）"),
    ("b", "打回医生（return，需填理由）"),
    ("1–9", "在理由框中选用常用理由"),
    ("[ / ]", "上一页 / 下一页"),
    ("g", "立即刷新队列"),
    ("?", "显示 / 隐藏快捷键"),
)

# Common reasons offered in the reason dialog (the findings' own suggestions come first).
REASONS = {
    "reject": (
        "存在禁忌或严重相互作用，不宜调配",
        "剂量超过说明书最大剂量且无超量理由",
        "适应证不符（诊断与用药不符）",
        "患者有过敏史，禁用",
        "重复用药（同类药物联用）",
    ),
    "return": (
        "请调整剂量后重新开具",
        "请更换药品，避免相互作用",
        "请补充或更正诊断",
        "请注明超量使用理由并双签",
        "请补充用法用量（剂量、频次、给药途径）",
        "请核对用药天数（门诊一般不超过 7 日）",
    ),
}


@router.get("/", response_class=HTMLResponse)
@router.get("/workbench", response_class=HTMLResponse)
def workbench(request: Request) -> HTMLResponse:
    return templates.TemplateResponse(request, "workbench.html", {"shortcuts": SHORTCUTS, "reasons": REASONS})


@router.get("/favicon.ico")
def favicon() -> FileResponse:
    """Browsers ask for /favicon.ico on every page (the API docs too): answer, never 404."""
    return FileResponse(FAVICON, media_type="image/svg+xml", headers={"Cache-Control": "max-age=86400"})
