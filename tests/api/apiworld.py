"""Helpers for the HTTP API tests: a fresh database, an app with a stand-in engine, a centre
(lead county hospital) and member institutions with keys, and users of each role.

Kept out of conftest.py so test modules can import it by a unique name."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fake_engine import FakeEngine
from fastapi.testclient import TestClient

from api.main import create_app
from audit_engine.settings import Settings

ROOT = Path(__file__).resolve().parents[2]
FIXTURES = ROOT / "fixtures" / "fhir"


def load_fixture(rel: str) -> dict[str, Any]:
    return json.loads((FIXTURES / rel).read_text(encoding="utf-8"))


@dataclass
class World:
    client: TestClient
    engine: FakeEngine
    url: str
    centre_key: str
    member_key: str
    other_member_key: str
    tokens: dict[str, str]

    def his(self, key: str | None = None) -> dict[str, str]:
        return {"Authorization": f"Bearer {key or self.member_key}"}

    def user(self, role: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.tokens[role]}"}


def seed(url: str) -> tuple[str, str, str]:
    """LEAD001 (the centre) with members TOWN01 and VIL01; a pharmacist and a quality manager
    of the centre, an alliance-wide admin, a pharmacist of VIL01; his.example.cn is on
    TOWN01's webhook allowlist."""
    import store_support as testing

    from audit_engine import auth
    from audit_engine.store.db import make_engine, session_scope

    db = make_engine(url)
    with session_scope(db) as s:
        _, centre_key = auth.create_institution(s, code="LEAD001", name="县人民医院", level="县级医院", is_centre=True)
        town, member_key = auth.create_institution(s, code="TOWN01", name="城关镇卫生院", level="乡镇卫生院")
        _, other_key = auth.create_institution(s, code="VIL01", name="东山村卫生室", level="村卫生室")
        testing.allow_webhook_host(s, institution_id=town.id, host="his.example.cn")
        auth.create_user(s, username="yaoshi", password="pw-yaoshi-1", role="pharmacist", institution_code="LEAD001")
        auth.create_user(s, username="yaoshi_cun", password="pw-yaoshi-2", role="pharmacist", institution_code="VIL01")
        auth.create_user(s, username="zhikong", password="pw-zhikong-1", role="quality", institution_code="LEAD001")
        auth.create_user(s, username="guanli", password="pw-guanli-1", role="admin")
    db.dispose()
    return centre_key, member_key, other_key


def build_world(url: str, tmp_path: Path, *, real_engine: bool = False, **settings: Any) -> Iterator[World]:
    """The app on ``url``; ``real_engine`` loads the rules network from ``rulebase_path``."""
    from audit_engine.store.db import upgrade_schema

    upgrade_schema(url)
    centre_key, member_key, other_key = seed(url)
    engine = FakeEngine()
    cfg = Settings(database_url=url, rulebase_store_dir=str(tmp_path / "rulebases"), rulebase_poll_seconds=0,
                   **settings)
    app = create_app(cfg, engine_factory=None if real_engine else (lambda path: engine))
    with TestClient(app) as client:
        tokens = {}
        for role, user, pw in (("pharmacist", "yaoshi", "pw-yaoshi-1"), ("quality", "zhikong", "pw-zhikong-1"),
                               ("admin", "guanli", "pw-guanli-1"),
                               ("member_pharmacist", "yaoshi_cun", "pw-yaoshi-2")):
            r = client.post("/api/v1/auth/token", data={"username": user, "password": pw})
            assert r.status_code == 200, r.text
            tokens[role] = r.json()["access_token"]
        yield World(client, engine, url, centre_key, member_key, other_key, tokens)

SAMPLE_RULEBASE = ROOT / "fixtures" / "rules" / "sample"
