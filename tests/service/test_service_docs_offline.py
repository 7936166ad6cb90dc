"""The API docs pages work on a county intranet: every asset comes from the service itself."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from dbutil import fresh_database
from svcutil import Server, deploy, free_port
from test_service_workbench import CHROMIUM_ARGS


@pytest.fixture
def server(tmp_path: Path) -> Iterator[Server]:
    for url in fresh_database("sqlite", tmp_path):
        d = deploy(url, tmp_path)
        s = Server(d.env, free_port(), tmp_path / "server.log")
        s.start()
        try:
            yield s
        finally:
            s.stop()


@pytest.mark.browser
def test_api_docs_render_without_any_other_host(server: Server) -> None:
    from playwright.sync_api import Route, expect, sync_playwright

    own = urlsplit(server.base).netloc
    elsewhere: list[str] = []

    def only_own_host(route: Route) -> None:
        if urlsplit(route.request.url).netloc == own:
            route.continue_()
        else:  # what a county intranet would do to it
            elsewhere.append(route.request.url)
            route.abort()

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path="/usr/bin/chromium", args=CHROMIUM_ARGS)
        try:
            page = browser.new_page()
            page.route("**/*", only_own_host)
            page.goto(f"{server.base}/docs")
            expect(page.locator(".opblock-summary-path[data-path='/api/v1/reviews']").first).to_be_visible(timeout=20_000)
        finally:
            browser.close()
    assert elsewhere == []
