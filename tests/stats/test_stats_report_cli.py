"""``audit-engine report`` writes the same report as the API to a file, and refuses bad input
with a message and exit status 1."""

from __future__ import annotations

import csv
import io
import subprocess
import sys
from pathlib import Path

import sqlalchemy as sa
from openpyxl import load_workbook
from scenario import run_scenario
from store_support import World


def _run(db_url: str, *args: str) -> subprocess.CompletedProcess[str]:
    env = {"AUDIT_DATABASE_URL": db_url, "PATH": "/usr/bin:/bin", "HOME": "/tmp"}
    return subprocess.run([sys.executable, "-m", "audit_engine.cli", "report", *args], capture_output=True,
                          text=True, env=env, timeout=120, check=False)


def test_the_cli_writes_the_monthly_xlsx_and_csv(engine: sa.Engine, world: World, db_url: str, tmp_path: Path) -> None:
    run_scenario(engine, world, "prescribing_indicators_from_the_items.json", checks_too=False)
    out = tmp_path / "2026-11.xlsx"
    done = _run(db_url, "--month", "2026-11", "--format", "xlsx", "-o", str(out))
    assert done.returncode == 0, done.stderr
    wb = load_workbook(out, read_only=True)
    overview = list(wb["总览"].iter_rows(min_row=4, values_only=True))
    assert [r[0] for r in overview] == ["M1", "ALLIANCE"]
    csv_out = tmp_path / "2026-H2.csv"
    assert _run(db_url, "--half", "2026-H2", "--format", "csv", "-o", str(csv_out)).returncode == 0
    rows = list(csv.DictReader(io.StringIO(csv_out.read_text(encoding="utf-8-sig"))))
    m1 = {(r["scope"], r["indicator"]): r for r in rows if r["institution_code"] == "M1"}
    assert (m1[("合计", "antimicrobial_rate")]["numerator"], m1[("合计", "antimicrobial_rate")]["denominator"]) == ("2", "6")
    assert m1[("门诊", "emergency_iv_steroid_rate")]["value"] == ""  # empty denominator: null, not 0


def test_the_cli_refuses_a_bad_month_and_an_unwritable_file(db_url: str, tmp_path: Path) -> None:
    bad = _run(db_url, "--month", "2026-13", "-o", str(tmp_path / "x.xlsx"))
    assert bad.returncode == 1 and "YYYY-MM" in bad.stderr and "Traceback" not in bad.stderr
    nowhere = _run(db_url, "--month", "2026-11", "-o", str(tmp_path / "missing" / "x.xlsx"))
    assert nowhere.returncode == 1 and "无法写入" in nowhere.stderr and "Traceback" not in nowhere.stderr
