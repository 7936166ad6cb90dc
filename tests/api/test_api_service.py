"""OpenAPI description, AUDIT_AUTH_DISABLED, and the serve / institution / user commands."""

from __future__ import annotations

import io
import logging
import re
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from apiworld import World, load_fixture
from dbutil import fresh_database
from fastapi.testclient import TestClient

from api.main import create_app
from audit_engine.settings import Settings


def test_openapi_documents_every_contract_endpoint_with_examples(world: World) -> None:
    spec = world.client.get("/openapi.json").json()
    paths = spec["paths"]
    for path, method in (("/health", "get"), ("/api/v1/auth/token", "post"), ("/cds-services", "get"),
                         ("/cds-services/{service_id}", "post"), ("/cds-services/{service_id}/feedback", "post"),
                         ("/api/v1/reviews", "post"), ("/api/v1/reviews/{review_id}", "get"),
                         ("/api/v1/queue/claim", "post"), ("/api/v1/tasks/{task_id}", "get"),
                         ("/api/v1/tasks/{task_id}/decision", "post"), ("/api/v1/tasks/{task_id}/answer", "post"),
                         ("/api/v1/subscriptions", "post"), ("/api/v1/rulebases", "post"),
                         ("/api/v1/rulebases/{version}/activate", "post"), ("/api/v1/rulebases/rollback", "post")):
        assert method in paths[path], (path, method)
        assert paths[path][method].get("summary"), path
    body = paths["/api/v1/reviews"]["post"]["requestBody"]["content"]
    assert body["application/fhir+json"]["example"]["resourceType"] == "Bundle"
    assert paths["/cds-services/{service_id}"]["post"]["requestBody"]["content"]["application/json"]["example"][
        "hook"] == "order-sign"


@pytest.fixture
def open_world(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> Iterator[tuple[TestClient, str]]:
    from fake_engine import FakeEngine

    from audit_engine.store.db import upgrade_schema

    for url in fresh_database("sqlite", tmp_path):
        upgrade_schema(url)
        engine = FakeEngine()
        app = create_app(Settings(database_url=url, auth_disabled=True, rulebase_store_dir=str(tmp_path / "rb")),
                         engine_factory=lambda path, e=engine: e)
        with caplog.at_level(logging.WARNING), TestClient(app) as client:
            yield client, caplog.text


def test_auth_disabled_acts_as_the_lead_hospital_with_every_role_and_warns(open_world: tuple[TestClient, str]) -> None:
    client, log = open_world
    assert "AUDIT_AUTH_DISABLED" in log
    r = client.post("/api/v1/reviews", json=load_fixture("flagged/interaction_warfarin_aspirin.json"))
    assert r.status_code == 201 and r.json()["institution_code"] == "LEAD001"
    assert client.get(f"/api/v1/reviews/{r.json()['id']}").status_code == 200
    assert client.get("/api/v1/rulebases").status_code == 200  # admin role too


def test_institution_and_user_commands_print_the_key_once_and_read_the_password(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from audit_engine.admin_commands import cmd_institution_add, cmd_user_add
    from audit_engine.store.db import make_engine
    from audit_engine.store.models import User

    url = f"sqlite:///{tmp_path / 'cli.sqlite'}"
    assert cmd_institution_add("LEAD001", "县人民医院", level="县级医院", database_url=url) == 0
    key = re.search(r"(ak_\S+)", capsys.readouterr().out)
    assert key
    assert cmd_institution_add("X1", "某卫生院", level="乡镇医院", database_url=url) == 1
    assert "乡镇卫生院" in capsys.readouterr().err  # did you mean
    monkeypatch.setattr(sys, "stdin", io.StringIO("s3cret-pass\n"))
    assert cmd_user_add("yaoshi", role="pharmacist", institution="LEAD001", database_url=url) == 0
    monkeypatch.setattr(sys, "stdin", io.StringIO("short\n"))
    assert cmd_user_add("weak", role="pharmacist", institution="LEAD001", database_url=url) == 1
    import sqlalchemy as sa

    db = make_engine(f"sqlite:///{tmp_path / 'cli.sqlite'}")
    with db.connect() as c:
        hashed = c.scalar(sa.select(User.password_hash).where(User.username == "yaoshi"))
    db.dispose()
    assert hashed and "s3cret-pass" not in hashed


def test_demo_is_idempotent_and_prints_secrets_only_once(tmp_path: Path) -> None:
    from fake_engine import FakeEngine

    from audit_engine.demo import load_demo
    from audit_engine.store.db import upgrade_schema

    url = f"sqlite:///{tmp_path / 'demo.sqlite'}"
    upgrade_schema(url)
    out1, out2 = io.StringIO(), io.StringIO()
    first = load_demo(url, out=out1, engine=FakeEngine())
    second = load_demo(url, out=out2, engine=FakeEngine())
    assert first["created"] and not second["created"]
    assert len(first["keys"]) == 6 and "ak_" in out1.getvalue() and "ak_" not in out2.getvalue()
    assert first["reviews"] >= 50

    import sqlalchemy as sa

    from audit_engine.store.db import make_engine
    from audit_engine.store.models import Institution, Review

    db = make_engine(url)
    with db.connect() as c:
        levels = set(c.scalars(sa.select(Institution.level)))
        reviews = c.scalar(sa.select(sa.func.count()).select_from(Review))
    db.dispose()
    assert levels == {"县级医院", "乡镇卫生院", "社区卫生服务中心", "村卫生室"}
    # The day's samples plus the returned-then-modified pair, plus the statistics history built
    # from them (issue 12); the second run added none.
    assert first["history"] > 0 and second["history"] == 0
    assert reviews == first["reviews"] + 2 + first["history"]


def test_demo_keys_and_passwords_work_against_the_service(tmp_path: Path) -> None:
    from fake_engine import FakeEngine

    from audit_engine.demo import load_demo
    from audit_engine.store.db import upgrade_schema

    url = f"sqlite:///{tmp_path / 'demo.sqlite'}"
    upgrade_schema(url)
    engine = FakeEngine()
    summary = load_demo(url, out=io.StringIO(), engine=engine)
    app = create_app(Settings(database_url=url, rulebase_store_dir=str(tmp_path / "rb")),
                     engine_factory=lambda path: engine)
    with TestClient(app) as client:
        r = client.post("/api/v1/reviews", json=load_fixture("flagged/interaction_warfarin_aspirin.json"),
                        headers={"Authorization": f"Bearer {summary['keys']['VIL01']}"})
        assert r.status_code == 201 and r.json()["institution_code"] == "VIL01"
        login = client.post("/api/v1/auth/token", data={"username": "yaoshi1",
                                                         "password": summary["passwords"]["yaoshi1"]})
        assert login.status_code == 200
        claim = client.post("/api/v1/queue/claim", headers={"Authorization": f"Bearer {login.json()['access_token']}"})
        assert claim.status_code == 200  # the centre's pharmacist sees the village clinic's prescription
