"""Rulebase management: validate with file:line:col, upload, dry-run, activate, roll back."""

from __future__ import annotations

import io
import zipfile
from typing import Any

from apiworld import SAMPLE_RULEBASE, World, load_fixture


def renumbered(fixture: str, suffix: str) -> dict[str, Any]:
    """The same prescription under a new prescription number."""
    doc = load_fixture(fixture)
    doc["identifier"]["value"] += suffix
    for e in doc["entry"]:
        if "groupIdentifier" in e["resource"]:
            e["resource"]["groupIdentifier"]["value"] += suffix
    return doc


def sample_files() -> dict[str, str]:
    return {p.relative_to(SAMPLE_RULEBASE).as_posix(): p.read_text(encoding="utf-8")
            for p in SAMPLE_RULEBASE.rglob("*") if p.is_file()}


def stricter_files() -> dict[str, str]:
    """The sample with the outpatient days rule raised to level 9: verdicts must change."""
    files = sample_files()
    files["base.rules"] = files["base.rules"].replace("等级 4", "等级 9", 1)
    return files


def test_rulebase_endpoints_need_the_admin_role(rules_world: World) -> None:
    w = rules_world
    for headers in (w.his(), w.user("pharmacist"), w.user("quality")):
        assert w.client.get("/api/v1/rulebases", headers=headers).status_code == 403
    assert w.client.get("/api/v1/rulebases").status_code == 401


def test_the_serving_rulebase_is_registered_as_the_active_version(rules_world: World) -> None:
    w = rules_world
    versions = w.client.get("/api/v1/rulebases", headers=w.user("admin")).json()["versions"]
    health = w.client.get("/health").json()["rulebase"]["version"]
    assert [v["version"] for v in versions if v["active"]] == [health]


def test_validate_reports_every_diagnostic_with_file_line_col(rules_world: World) -> None:
    w = rules_world
    files = sample_files()
    files["base.rules"] = files["base.rules"].replace("药品.天数 > 7", "药品.天树 > 7", 1)
    r = w.client.post("/api/v1/rulebases/validate", json={"files": files}, headers=w.user("admin"))
    assert r.status_code == 422
    diag = r.json()["diagnostics"][0]
    assert diag["file"] == "base.rules" and diag["line"] > 1 and diag["col"] > 1
    assert "天树" in diag["text"]
    ok = w.client.post("/api/v1/rulebases/validate", json={"files": sample_files()}, headers=w.user("admin"))
    assert ok.status_code == 200 and ok.json()["ok"] is True


def test_a_broken_upload_is_refused_and_nothing_is_stored(rules_world: World) -> None:
    w = rules_world
    files = sample_files()
    files["base.rules"] += "\n规则 {"
    r = w.client.post("/api/v1/rulebases", json={"files": files}, headers=w.user("admin"))
    assert r.status_code == 422 and r.json()["diagnostics"]
    assert len(w.client.get("/api/v1/rulebases", headers=w.user("admin")).json()["versions"]) == 1


def test_unsafe_paths_are_refused_with_the_file_named(rules_world: World) -> None:
    r = rules_world.client.post("/api/v1/rulebases", json={"files": {"../evil.rules": "x"}},
                                headers=rules_world.user("admin"))
    assert r.status_code == 422 and r.json()["resourceType"] == "OperationOutcome"


def test_upload_dry_run_activate_and_roll_back(rules_world: World) -> None:
    w = rules_world
    admin = w.user("admin")
    old_version = w.client.get("/health").json()["rulebase"]["version"]
    # A prescription with a 14-day outpatient supply: level 4 now (explain), level 9 under the new version.
    first = w.client.post("/api/v1/reviews", json=load_fixture("flagged/form_outpatient_ibuprofen_14d.json"),
                          headers=w.his())
    assert first.status_code == 201
    assert first.json()["rulebase_version"] == old_version
    assert "DAYS-OUTPATIENT" in {f["rule_id"] for f in first.json()["findings"]}

    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for name, text in stricter_files().items():
            zf.writestr(f"county/{name}", text)
    up = w.client.post("/api/v1/rulebases?label=stricter", content=buf.getvalue(),
                       headers=admin | {"Content-Type": "application/zip"})
    assert up.status_code == 201, up.text
    new_version = up.json()["version"]
    assert new_version != old_version and up.json()["active"] is False

    dry = w.client.post(f"/api/v1/rulebases/{new_version}/dry-run", headers=admin).json()
    assert dry["examined"] == 1 and dry["verdict_changes"] == 1
    assert dry["changes"][0]["old_verdict"] == first.json()["verdict"]
    assert dry["changes"][0]["new_verdict"] == "block"
    assert w.client.get("/health").json()["rulebase"]["version"] == old_version  # dry-run changed nothing

    act = w.client.post(f"/api/v1/rulebases/{new_version}/activate", headers=admin)
    assert act.status_code == 200 and act.json()["serving"] == new_version
    assert w.client.get("/health").json()["rulebase"]["version"] == new_version
    second = w.client.post("/api/v1/reviews", json=renumbered("flagged/form_outpatient_ibuprofen_14d.json", "-2"),
                           headers=w.his())
    assert second.json()["rulebase_version"] == new_version and second.json()["verdict"] == "block"

    back = w.client.post("/api/v1/rulebases/rollback", headers=admin)
    assert back.status_code == 200 and back.json()["version"] == old_version
    assert w.client.get("/health").json()["rulebase"]["version"] == old_version
    # The earlier review still records the version that decided it.
    assert w.client.get(f"/api/v1/reviews/{first.json()['id']}", headers=w.his()).json()[
        "rulebase_version"] == old_version


def test_multipart_upload_of_rule_and_table_files(rules_world: World) -> None:
    w = rules_world
    files = [("files", (name, text.encode(), "text/plain")) for name, text in stricter_files().items()]
    # Multipart keeps only base names: tables go up as a zip member instead.
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for name, text in stricter_files().items():
            if name.startswith("tables/"):
                zf.writestr(name, text)
    files = [f for f in files if not f[1][0].startswith("tables/")] + [("files", ("tables.zip", buf.getvalue(),
                                                                                   "application/zip"))]
    r = w.client.post("/api/v1/rulebases", files=files, data={"label": "multipart"}, headers=w.user("admin"))
    assert r.status_code == 201, r.text
    assert r.json()["label"] == "multipart"


def test_another_process_picks_up_an_activation_from_the_database(rules_world: World, tmp_path: Any) -> None:
    from fastapi.testclient import TestClient

    from api.main import create_app
    from audit_engine.settings import Settings

    w = rules_world
    other = create_app(Settings(database_url=w.url, rulebase_store_dir=str(tmp_path / "other-store"),
                                rulebase_poll_seconds=0, rulebase_path=str(SAMPLE_RULEBASE)))
    with TestClient(other) as c2:
        before = c2.get("/health").json()["rulebase"]["version"]
        up = w.client.post("/api/v1/rulebases", json={"files": stricter_files()}, headers=w.user("admin")).json()
        w.client.post(f"/api/v1/rulebases/{up['version']}/activate", headers=w.user("admin"))
        after = c2.get("/health").json()["rulebase"]["version"]
    assert before != after == up["version"]


def _serving(url: str, store: Any, folder: Any) -> str:
    from fastapi.testclient import TestClient

    from api.main import create_app
    from audit_engine.settings import Settings

    app = create_app(Settings(database_url=url, rulebase_store_dir=str(store), rulebase_path=str(folder)))
    with TestClient(app) as c:
        return str(c.get("/health").json()["rulebase"]["version"])


def test_a_new_shipped_rulebase_takes_over_unless_an_admin_chose_one(rules_world: World, tmp_path: Any) -> None:
    w = rules_world
    shipped_v1 = w.client.get("/health").json()["rulebase"]["version"]
    release2 = tmp_path / "release2"
    for name, text in stricter_files().items():
        (release2 / name).parent.mkdir(parents=True, exist_ok=True)
        (release2 / name).write_text(text, encoding="utf-8")
    shipped_v2 = _serving(w.url, tmp_path / "s2", release2)
    assert shipped_v2 != shipped_v1  # a new release replaced a shipped version

    # The administrator goes back to v1 on purpose: a restart with release 2 keeps their choice.
    w.client.post(f"/api/v1/rulebases/{shipped_v1}/activate", headers=w.user("admin"))
    assert _serving(w.url, tmp_path / "s3", release2) == shipped_v1
