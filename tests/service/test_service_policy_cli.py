"""``audit-engine policy show|set``: the same policy administration as the API, from a shell."""

from __future__ import annotations

import json
import subprocess
import sys

from svcutil import ROOT, Deployment, cli


def test_policy_set_changes_only_the_named_fields_and_show_reads_them_back(deployment: Deployment) -> None:
    out = cli(deployment.env, "policy", "set", "TOWN01", "--fail-mode", "open", "--work-days", "1,2,3,4,5",
              "--work-start", "08:00", "--work-end", "17:30")
    changed = json.loads(out)
    assert changed["fail_mode"] == "open" and changed["work_days"] == [1, 2, 3, 4, 5]
    shown = json.loads(cli(deployment.env, "policy", "show", "TOWN01"))
    assert shown == changed
    assert shown["recheck_at"] == 5  # untouched
    assert json.loads(cli(deployment.env, "policy", "show", "LEAD001"))["fail_mode"] == "closed"


def test_policy_set_refuses_an_unusable_policy_and_says_why(deployment: Deployment) -> None:
    r = subprocess.run([sys.executable, "-m", "audit_engine.cli", "policy", "set", "TOWN01", "--work-start", "18:00",
                        "--work-end", "08:00"], env=deployment.env, cwd=ROOT, capture_output=True, text=True,
                       timeout=120)
    assert r.returncode == 1
    assert "work_end 须晚于 work_start" in r.stderr and "Traceback" not in r.stderr
    assert json.loads(cli(deployment.env, "policy", "show", "TOWN01"))["work_start"] == "00:00"
