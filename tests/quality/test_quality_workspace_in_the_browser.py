"""The "Done when" story in headless chromium on demo data: ``audit-engine serve --demo``, log in
as the demo quality user, find the noisiest rule and an example behind it, see which member is the
outlier on the antimicrobial rate and open it, download the monthly XLSX, draw a 点评 sample and
comment on prescriptions by keyboard, and see what the demo's candidate rulebase would change.

Screenshots of every view go to ``$QUALITY_SCREENSHOTS`` (the README's are made with
``QUALITY_SCREENSHOTS=docs``), else to the test's temporary folder.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from collections.abc import Iterator
from io import BytesIO
from pathlib import Path

import httpx
import pytest
from openpyxl import load_workbook

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "tests" / "service"))
from svcutil import free_port  # noqa: E402

CHROMIUM_ARGS = ["--no-sandbox", "--headless", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync"]


@pytest.fixture
def demo(tmp_path: Path) -> Iterator[tuple[str, str]]:
    """A real ``serve --demo`` (real rulebase, background worker) on a fresh SQLite file: (base URL, password)."""
    port = free_port()
    env = {**os.environ, "AUDIT_DATABASE_URL": f"sqlite:///{tmp_path / 'demo.sqlite'}",
           "AUDIT_RULEBASE_STORE": str(tmp_path / "rulebases"), "AUDIT_WORKER_INTERVAL": "0.5"}
    env.pop("AUDIT_AUTH_DISABLED", None)
    log = tmp_path / "serve.log"
    with log.open("wb") as out:
        proc = subprocess.Popen([sys.executable, "-m", "audit_engine.cli", "serve", "--demo", "--port", str(port)],
                                env=env, cwd=ROOT, stdout=out, stderr=out, start_new_session=True)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 180
        while time.monotonic() < deadline:
            try:
                if httpx.get(f"{base}/health", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert proc.poll() is None, log.read_text(errors="replace")
            time.sleep(0.3)
        else:
            raise AssertionError("serve --demo did not become healthy:\n" + log.read_text(errors="replace"))
        m = re.search(r"用户 zhikong\s+角色 quality.*密码: (\S+)", log.read_text(errors="replace"))
        assert m, log.read_text(errors="replace")
        yield base, m.group(1)
    finally:
        os.killpg(proc.pid, 15)
        proc.wait(20)


@pytest.mark.browser
def test_a_quality_manager_walks_the_monthly_story(demo: tuple[str, str], tmp_path: Path) -> None:
    from playwright.sync_api import expect, sync_playwright

    base, password = demo
    shots = Path(os.environ.get("QUALITY_SCREENSHOTS") or tmp_path)
    if not shots.is_absolute():
        shots = ROOT / shots
    shots.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path="/usr/bin/chromium", args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": 1400, "height": 900}, accept_downloads=True)
        errors: list[str] = []
        page.on("pageerror", lambda e: errors.append(str(e)))
        page.on("request", lambda r: errors.append("off-host " + r.url) if not r.url.startswith((base, "blob:", "data:")) else None)
        page.goto(f"{base}/quality")
        page.fill("input[name=username]", "zhikong")
        page.fill("input[name=password]", password)
        page.click("#login-form button[type=submit]")

        # Overview: the month's key indicators with the change from last month, and the alerts.
        expect(page.locator("#kpis .card")).to_have_count(11)
        expect(page.locator("#login")).to_be_hidden()
        expect(page.locator("#kpis")).to_contain_text("较上月")
        expect(page.locator("#alerts tbody tr").first).to_be_visible()
        page.screenshot(path=str(shots / "quality-overview.png"), full_page=True)

        # Rules: the noisiest rule comes first, and an example behind it opens.
        page.click("#tab-rules")
        first = page.locator("#rules tbody tr").first
        expect(first).to_have_class(re.compile(r"\bnoisy\b"))
        first.locator("a.review").first.click()
        expect(page.locator("#review-dialog")).to_be_visible()
        expect(page.locator("#review-body")).to_contain_text("系统发现的问题")
        page.screenshot(path=str(shots / "quality-rules.png"), full_page=True)
        page.locator("#review-dialog button").click()

        # Homogenisation: the antimicrobial outlier is the village clinic VIL02; a click opens it.
        page.click("#tab-homogenisation")
        page.select_option("#homo-indicator", "antimicrobial_rate")
        expect(page.locator("#homo-chart")).to_have_attribute("data-outliers", re.compile("VIL02"))
        point = page.evaluate("""() => {
            const chart = echarts.getInstanceByDom(document.getElementById('homo-chart'));
            const data = chart.getOption().series[0].data;
            const i = data.findIndex(d => d.key === 'VIL02');
            const [x, y] = chart.convertToPixel({seriesIndex: 0}, [i, data[i].value / 2]);
            const box = document.getElementById('homo-chart').getBoundingClientRect();
            return [box.left + x, box.top + y];
        }""")
        page.mouse.click(point[0], point[1])
        expect(page.locator("#member-title")).to_contain_text("石桥村卫生室")
        expect(page.locator("#member-table")).to_contain_text("离群")
        page.screenshot(path=str(shots / "quality-homogenisation.png"), full_page=True)

        # Prescribing indicators against targets; prescriber feedback for the meeting.
        page.click("#tab-prescribing")
        expect(page.locator("#prescribers tbody tr").first).to_be_visible()
        expect(page.locator("#prescribing")).to_contain_text("目标")
        page.screenshot(path=str(shots / "quality-prescribing.png"), full_page=True)

        # Reports: the month's XLSX downloads and opens.
        page.click("#tab-reports")
        with page.expect_download() as info:
            page.click(".downloads button[data-format=xlsx]")
        path = info.value.path()
        assert path is not None and info.value.suggested_filename.endswith(".xlsx")
        assert load_workbook(BytesIO(Path(path).read_bytes())).sheetnames
        expect(page.locator("#download-status")).to_contain_text("已下载")
        page.screenshot(path=str(shots / "quality-reports.png"), full_page=True)

        # 处方点评: draw the statutory sample, comment by keyboard: 合理, then 不合理 with a code.
        page.click("#tab-comments")
        page.fill("#seed", "20261130")
        page.click("#draw-form button[type=submit]")
        expect(page.locator("#sample-info")).to_contain_text("法定")
        expect(page.locator("#commentary")).to_contain_text("系统发现的问题")
        page.locator("#commentary").focus()
        page.keyboard.press("1")
        expect(page.locator("#comment-status")).to_contain_text("已保存第 1 张：合理")
        page.keyboard.press("2")
        page.keyboard.type("B05")
        page.keyboard.press("Enter")
        expect(page.locator("#chosen-codes")).to_contain_text("用法、用量不适宜")
        page.keyboard.press("Control+Enter")
        expect(page.locator("#comment-status")).to_contain_text("已保存第 2 张：不合理")
        expect(page.locator("#sample-items li.done")).to_have_count(1)
        expect(page.locator("#sample-items li.bad")).to_have_count(1)
        page.keyboard.press("k")  # back to the 不合理 one: into the teaching-case library
        expect(page.locator("#judgement")).to_have_text("不合理")
        page.keyboard.press("t")
        expect(page.locator("#comment-status")).to_contain_text("教学案例库")
        expect(page.locator("#teaching li")).to_contain_text("B05")
        page.screenshot(path=str(shots / "quality-comments.png"), full_page=True)

        # What-if replay of the demo's candidate: progress, then per rule and per institution.
        page.click("#tab-replay")
        expect(page.locator("#candidate option").first).to_contain_text("演示候选")
        page.fill("#days", "14")
        page.click("#replay-form button[type=submit]")
        expect(page.locator("#replay-status")).to_contain_text("已完成", timeout=120_000)
        expect(page.locator("#replay-summary")).to_contain_text("结论改变")
        expect(page.locator("#replay-rules tbody")).to_contain_text("等级")  # the noisiest rule lowered
        removed = page.locator("#replay-rules tbody tr td:nth-child(5)").all_inner_texts()
        assert any(n != "0" for n in removed), removed  # the next one disabled: its flags disappear
        expect(page.locator("#replay-institutions tbody tr").first).to_be_visible()
        page.screenshot(path=str(shots / "quality-replay.png"), full_page=True)
        browser.close()
    assert errors == []
