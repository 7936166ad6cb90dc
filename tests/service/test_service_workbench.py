"""The pharmacist workbench in headless chromium: log in, then claim / approve / return by keyboard."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from dbutil import fresh_database
from svcutil import Deployment, Server, deploy, free_port
from test_api_review_context import with_amlodipine
from test_service_crash import numbered

CHROMIUM_ARGS = ["--no-sandbox", "--headless", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync"]


@pytest.fixture
def running(tmp_path: Path) -> Iterator[tuple[Deployment, Server]]:
    for url in fresh_database("sqlite", tmp_path):
        d = deploy(url, tmp_path)
        server = Server(d.env, free_port(), tmp_path / "server.log")
        server.start()
        try:
            yield d, server
        finally:
            server.stop()


@pytest.mark.browser
def test_pharmacist_works_the_queue_with_the_keyboard(running: tuple[Deployment, Server], tmp_path: Path) -> None:
    from playwright.sync_api import expect, sync_playwright

    d, server = running
    headers = {"Authorization": f"Bearer {d.key}"}
    # Warfarin + aspirin (flagged together) and amlodipine (not flagged), for a 73-year-old man.
    ids = [httpx.post(f"{server.base}/api/v1/reviews", json=with_amlodipine(numbered(n, "WB")), headers=headers,
                      timeout=10).json()["id"] for n in range(3)]
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path="/usr/bin/chromium", args=CHROMIUM_ARGS)
        page = browser.new_page()
        page.goto(f"{server.base}/workbench")
        page.fill("input[name=username]", "yaoshi")
        page.fill("input[name=password]", d.pharmacist_password)
        page.click("button[type=submit]")
        expect(page.locator("#queue li")).to_have_count(3)
        expect(page.locator("#login")).to_be_hidden()
        expect(page.locator("#findings-title")).to_contain_text("系统发现的问题")

        page.keyboard.press("j")
        expect(page.locator("#queue li").nth(1)).to_have_class(re.compile(r"\bselected\b"))
        page.keyboard.press("k")
        expect(page.locator("#queue li").nth(0)).to_have_class(re.compile(r"\bselected\b"))

        page.keyboard.press("c")
        expect(page.locator("#status")).to_contain_text("已领取")
        # Who the patient is and what was prescribed, beside the findings; unknown facts say so.
        patient = page.locator("#patient")
        for text in ("男", "老年", "I48.9", "心房颤动"):
            expect(patient).to_contain_text(text)
        expect(patient.locator(".fact", has_text="体重")).to_contain_text("未知")
        for text in ("门诊", "心内科", "主治医师", "DC-0001"):
            expect(page.locator("#prescription")).to_contain_text(text)
        rows = page.locator("#drugs tbody tr")
        expect(rows).to_have_count(3)
        warfarin = page.locator('#drugs tr[data-ref="MedicationRequest/mr-warfarin"]')
        expect(warfarin).to_contain_text("华法林")
        expect(warfarin).to_contain_text("3 mg")
        expect(warfarin).to_contain_text("每日 1 次")
        expect(warfarin).to_contain_text("口服")
        expect(warfarin).to_contain_text("7 天")
        expect(warfarin).to_have_class(re.compile(r"\bimplicated\b"))
        expect(page.locator('#drugs tr[data-ref="MedicationRequest/mr-aspirin"]')).to_have_class(
            re.compile(r"\bimplicated\b"))
        amlodipine = page.locator('#drugs tr[data-ref="MedicationRequest/mr-amlodipine"]')
        expect(amlodipine).to_contain_text("氨氯地平")
        expect(amlodipine).not_to_have_class(re.compile(r"\bimplicated\b"))
        page.screenshot(path=str(tmp_path / "workbench-claimed.png"), full_page=True)  # kept for a failing run
        page.keyboard.press("a")
        expect(page.locator("#status")).to_contain_text("已通过")
        expect(page.locator("#queue li")).to_have_count(2)

        page.keyboard.press("c")
        expect(page.locator("#status")).to_contain_text("已领取")
        page.keyboard.press("b")
        expect(page.locator("#reason-dialog")).to_be_visible()
        page.keyboard.type("华法林与阿司匹林合用出血风险，请调整")
        page.keyboard.press("Control+Enter")
        expect(page.locator("#status")).to_contain_text("已打回医生")
        browser.close()

    outcomes = sorted(httpx.get(f"{server.base}/api/v1/reviews/{rid}", headers=headers, timeout=10).json()["outcome"]
                      for rid in ids)
    assert outcomes == ["pending", "pharmacist_pass", "returned"]
