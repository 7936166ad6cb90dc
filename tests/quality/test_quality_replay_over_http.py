"""The replay over HTTP: a candidate is queued (202), refused when it is the active version,
unknown or given a bad window (OperationOutcome 4xx), and read back with its progress and
result once the worker has run it; every quality route is documented with a response schema."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from types import SimpleNamespace

import pytest
import sqlalchemy as sa
from fastapi.testclient import TestClient
from http_support import login
from population import add_prescriptions
from store_support import World

from api.main import create_app
from audit_engine import auth
from audit_engine import rulebase_lifecycle as rulebases
from audit_engine.engine import load_compiled
from audit_engine.quality import replay
from audit_engine.review import default_rulebase_path
from audit_engine.settings import Settings
from audit_engine.stats.periods import local_date
from audit_engine.store.db import session_scope, utcnow
from audit_engine.store.models import RulebaseVersion


class StubEngine:
    version = "rb-quality-http"
    compiled = SimpleNamespace(rules=())


@pytest.fixture
def client(engine: sa.Engine, world: World, db_url: str, tmp_path: Path) -> Iterator[TestClient]:
    add_prescriptions(engine, institution_id=world.ids["M1"], day=local_date(utcnow()) - timedelta(days=2), count=5)
    with session_scope(engine) as s:
        auth.create_user(s, username="zk", password="pw-zk-000001", role="quality")
    settings = Settings(database_url=db_url, rulebase_store_dir=str(tmp_path / "rb"), rulebase_poll_seconds=0)
    app = create_app(settings, engine_factory=lambda path: StubEngine())  # type: ignore[arg-type,return-value]
    with TestClient(app) as c:  # the service registers the shipped files as the active version
        yield c


def test_a_candidate_is_queued_refused_when_wrong_and_read_back_done(client: TestClient, engine: sa.Engine,
                                                                    tmp_path: Path) -> None:
    h = login(client, "zk", "pw-zk-000001")
    files = rulebases.files_of_folder(default_rulebase_path())
    files["overrides.rules"] += "\n覆盖 LEG-AMR-GRADE { 等级 2 }\n"
    folder = rulebases.materialise(files, Settings(database_url="sqlite://", rulebase_store_dir=str(tmp_path / "cand")))
    version = str(load_compiled(folder).version)
    with session_scope(engine) as s:
        s.add(RulebaseVersion(version=version, label="候选", files=files, status="uploaded", uploaded_by="guanli",
                              uploaded_at=utcnow()))

    def refused(resp, status: int) -> None:  # type: ignore[no-untyped-def]
        assert resp.status_code == status, resp.text
        assert resp.json()["resourceType"] == "OperationOutcome"

    refused(client.post("/api/v1/quality/replays", json={"candidate": StubEngine.version, "days": 7}, headers=h), 422)
    refused(client.post("/api/v1/quality/replays", json={"candidate": "0" * 64, "days": 7}, headers=h), 404)
    refused(client.post("/api/v1/quality/replays", json={"candidate": version, "days": 0}, headers=h), 422)
    refused(client.post("/api/v1/quality/replays", json={"days": 7}, headers=h), 422)
    refused(client.post(f"/api/v1/rulebases/{version}/replay", params={"days": 365}, headers=h), 422)
    refused(client.get(f"/api/v1/quality/replays/{'0' * 32}", headers=h), 404)
    assert [c["version"] for c in client.get("/api/v1/quality/candidates", headers=h).json()] == [version]

    r = client.post(f"/api/v1/rulebases/{version}/replay", params={"days": 7}, headers=h)
    assert r.status_code == 202, r.text
    job = r.json()
    assert job["status"] == "queued" and job["total"] == 5 and job["progress"] == 0
    assert job["baseline_version"] == StubEngine.version
    replay.run_pending(engine)  # what the worker's replay thread does
    done = client.get(f"/api/v1/quality/replays/{job['id']}", headers=h).json()
    assert done["status"] == "done" and done["done"] == 5 and done["progress"] == 1.0
    assert done["summary"]["examined"] == 5 and {i["institution"] for i in done["institutions"]} == {"M1"}
    assert [j["id"] for j in client.get("/api/v1/quality/replays", headers=h).json()] == [job["id"]]


def test_every_quality_route_has_a_documented_response(client: TestClient) -> None:
    paths = client.get("/openapi.json").json()["paths"]
    quality = {p: ops for p, ops in paths.items() if p.startswith("/api/v1/quality") or p.endswith("/replay")}
    assert len(quality) >= 9
    for path, ops in quality.items():
        for method, op in ops.items():
            ok = next(v for k, v in op["responses"].items() if k.startswith("2"))
            assert ok["content"]["application/json"]["schema"], f"{method} {path}"
            assert op["summary"], f"{method} {path}"
