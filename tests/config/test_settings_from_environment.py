"""The one settings object: AUDIT_* variables, validated at start, a bad value named clearly."""

from __future__ import annotations

import logging
import re
import subprocess
import sys
from pathlib import Path

import pytest

from api.deps import SettingsDep
from audit_engine import auth
from audit_engine.cli import main
from audit_engine.intake.limits import get_limits
from audit_engine.settings import ConfigurationError, Settings, get_settings, known_variables, load_settings

ROOT = Path(__file__).resolve().parents[2]


def test_every_setting_is_read_from_its_audit_variable(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    drugs = tmp_path / "monitored.csv"
    drugs.write_text("name,category,batch,来源\n头孢,抗菌,1,测试\n", encoding="utf-8")
    for name, value in {
        "AUDIT_DATABASE_URL": "postgresql+psycopg://u@h/db", "AUDIT_RULEBASE": "/srv/rules",
        "AUDIT_RULEBASE_STORE": "/srv/store", "AUDIT_AUTH_DISABLED": "1", "AUDIT_MAX_ORDERS": "12",
        "AUDIT_WORKER_INTERVAL": "0.5", "AUDIT_CHAIN_CHECK_SECONDS": "30", "AUDIT_LOG_LEVEL": "WARNING",
        "AUDIT_STATS_TIMEZONE": "Asia/Urumqi", "AUDIT_MONITORED_DRUGS": str(drugs),
        "AUDIT_ADMIN_USER": "zhuren", "AUDIT_ADMIN_PASSWORD": "pw",
    }.items():
        monkeypatch.setenv(name, value)
    s = load_settings()
    assert (s.database_url, s.rulebase_path, s.rulebase_store_dir) == ("postgresql+psycopg://u@h/db", "/srv/rules",
                                                                        "/srv/store")
    assert s.auth_disabled and s.max_orders == 12 and get_limits().max_orders == 12
    assert (s.worker_interval, s.chain_check_seconds, s.log_level) == (0.5, 30, "warning")
    assert str(s.time_zone) == "Asia/Urumqi" and s.monitored_drugs == drugs
    assert s.admin_user == "zhuren" and s.admin_password is not None and s.admin_password.get_secret_value() == "pw"
    assert "pw" not in repr(s)  # the password never shows in a log line


def test_an_empty_variable_means_the_default(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AUDIT_MAX_ORDERS", "")
    monkeypatch.setenv("AUDIT_DATABASE_URL", "")
    s = load_settings()
    assert s.max_orders == 60 and s.database_url == "sqlite:///data/audit.sqlite"


def test_variables_without_the_prefix_are_not_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("AUDIT_MAX_ORDERS", raising=False)
    monkeypatch.setenv("MAX_ORDERS", "3")
    monkeypatch.setenv("RULEBASE_PATH", "/elsewhere")
    s = load_settings()
    assert s.max_orders == 60 and s.rulebase_path is None


def test_a_bad_value_is_an_error_naming_the_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AUDIT_MAX_ORDERS", "sixty")
    with pytest.raises(ConfigurationError) as err:
        load_settings()
    assert err.value.problems == [
        "AUDIT_MAX_ORDERS: Input should be a valid integer, unable to parse string as an integer (got 'sixty')"]


def test_every_bad_value_is_reported_at_once(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AUDIT_MAX_BODY_BYTES", "0")
    monkeypatch.setenv("AUDIT_STATS_TIMEZONE", "Asia/Beijing")
    monkeypatch.setenv("AUDIT_AUTH_DISABLED", "maybe")
    monkeypatch.setenv("AUDIT_DATABASE_URL", "audit.sqlite")
    monkeypatch.setenv("AUDIT_REQUESTS_PER_CREDENTIAL", "lots")
    with pytest.raises(ConfigurationError) as err:
        load_settings()
    named = sorted(p.split(":")[0] for p in err.value.problems)
    assert named == ["AUDIT_AUTH_DISABLED", "AUDIT_DATABASE_URL", "AUDIT_MAX_BODY_BYTES",
                     "AUDIT_REQUESTS_PER_CREDENTIAL", "AUDIT_STATS_TIMEZONE"]
    text = str(err.value)
    assert "AUDIT_STATS_TIMEZONE: unknown time zone 'Asia/Beijing'" in text
    assert "AUDIT_DATABASE_URL: must be a SQLAlchemy URL" in text


def test_a_missing_monitored_drugs_file_is_an_error(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("AUDIT_MONITORED_DRUGS", str(tmp_path / "nope.csv"))
    with pytest.raises(ConfigurationError, match="AUDIT_MONITORED_DRUGS: no such file"):
        load_settings()


def test_the_command_line_refuses_to_start_with_a_bad_value(monkeypatch: pytest.MonkeyPatch,
                                                            capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("AUDIT_WORKER_INTERVAL", "soon")
    assert main(["audit", "verify"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("audit-engine: bad configuration:\n  AUDIT_WORKER_INTERVAL: Input should be a valid number")
    assert "Traceback" not in err


def test_the_installed_command_names_the_variable_not_a_traceback(tmp_path: Path) -> None:
    env = {"PATH": "/usr/bin:/bin", "AUDIT_MAX_DEPTH": "-1", "HOME": str(tmp_path)}
    r = subprocess.run([sys.executable, "-m", "audit_engine.cli", "check", str(ROOT / "rulebase")],
                       capture_output=True, text=True, env=env, cwd=ROOT, timeout=120)
    assert r.returncode == 2
    assert "AUDIT_MAX_DEPTH: Input should be greater than 0 (got '-1')" in r.stderr
    assert "Traceback" not in r.stderr


def test_an_unknown_audit_variable_is_a_warning_with_the_closest_name(
        monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    monkeypatch.setenv("AUDIT_MAX_ORDER", "5")
    with caplog.at_level(logging.WARNING, logger="audit_engine.settings"):
        s = load_settings()
    assert s.max_orders == 60
    assert "AUDIT_MAX_ORDER is not a setting (did you mean AUDIT_MAX_ORDERS?)" in caplog.text


def test_the_variables_the_contract_and_readme_document_are_all_known() -> None:
    rows = [line for line in (ROOT / "README.md").read_text(encoding="utf-8").splitlines() if line.startswith("| `AUDIT_")]
    documented = {name for row in rows for name in re.findall(r"`(AUDIT_[A-Z_]+)", row.split("|")[1])}
    assert len(documented) > 25
    assert documented <= known_variables(), documented - known_variables()
    assert {"AUDIT_DATABASE_URL", "AUDIT_RULEBASE", "AUDIT_AUTH_DISABLED"} <= known_variables()


def test_get_settings_is_loaded_once_per_process(monkeypatch: pytest.MonkeyPatch) -> None:
    first = get_settings()
    monkeypatch.setenv("AUDIT_MAX_ORDERS", "7")
    assert get_settings() is first
    get_settings.cache_clear()
    assert get_settings().max_orders == 7


def test_settings_are_frozen() -> None:
    s = Settings(database_url="sqlite://")
    with pytest.raises(ValueError):
        s.max_orders = 3  # type: ignore[misc]


def test_tokens_live_twelve_hours_and_no_setting_says_otherwise() -> None:
    assert auth.TOKEN_TTL.total_seconds() == 12 * 3600
    assert not any("ttl" in name for name in Settings.model_fields)


def test_routes_get_the_apps_settings_as_a_dependency(tmp_path: Path) -> None:
    from fastapi.testclient import TestClient

    from api.main import create_app

    app = create_app(Settings(database_url=f"sqlite:///{tmp_path / 'x.sqlite'}", max_orders=7))

    @app.get("/_settings_probe")
    async def probe(settings: SettingsDep) -> dict[str, int]:
        return {"max_orders": settings.max_orders}

    assert TestClient(app).get("/_settings_probe").json() == {"max_orders": 7}
