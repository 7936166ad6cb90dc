"""用药监测 bands and targets, the rule audit's noisy and silent rules, and 培训指导's top
problems — against hand-computed figures."""

from __future__ import annotations

from typing import Any

import pytest
import sqlalchemy as sa
from scenario import quality_principal, run_steps
from store_support import World

from audit_engine.stats.monitoring import band_of, match_monitored, monitoring
from audit_engine.stats.periods import month_period
from audit_engine.stats.prescriber_feedback import prescriber_feedback
from audit_engine.stats.rule_audit import rule_audit
from audit_engine.store.db import session_scope

AMOX = {"drug_id": "amoxicillin", "name": "阿莫西林", "route": "口服", "antimicrobial_grade": "非限制使用级", "essential": True}
AMLO = {"drug_id": "amlodipine", "name": "氨氯地平", "route": "口服", "essential": True}
OXI = {"written": "注射用奥拉西坦 4g", "route": "静滴"}


def _month(month: str, antimicrobial: int, total: int = 10, extra: list[dict[str, Any]] | None = None) -> list[dict[str, Any]]:
    steps = [{"rx": f"{month}-{k}", "institution": "M1", "at": f"{month}-10T0{k % 10}:{k // 10:02d}:00", "type": "门诊",
              "items": [AMOX if k < antimicrobial else AMLO]} for k in range(total)]
    return steps + (extra or [])


def test_a_rate_above_the_members_six_month_band_and_its_target_is_an_alert(engine: sa.Engine, world: World) -> None:
    # May–October: 1, 2, 1, 2, 1, 2 of 10 outpatient prescriptions hold an antimicrobial.
    steps = [s for m, k in zip(["2026-05", "2026-06", "2026-07", "2026-08", "2026-09", "2026-10"],
                               [1, 2, 1, 2, 1, 2], strict=True) for s in _month(m, k)]
    # November: 3 of 10, and one prescription with a key monitored drug the dictionary does not know.
    steps += _month("2026-11", 3, extra=[{"rx": "OXI", "institution": "M1", "at": "2026-11-11T02:00:00",
                                          "type": "门诊", "items": [OXI]}])
    run_steps(engine, world, steps)
    with session_scope(engine) as s:
        answer = monitoring(s, principal=quality_principal(engine, None), month="2026-11")
    (m1,) = answer["institutions"]
    outpatient = next(f for f in m1["figures"] if f["code"] == "antimicrobial_rate" and f["type"] == "门诊")
    assert (outpatient["numerator"], outpatient["denominator"]) == (3, 11)
    # mean 0.15, sample SD sqrt(6 × 0.05² / 5) = 0.0547723: band 0.0404555 … 0.2595445
    assert outpatient["band"] == {"mean": 0.15, "sd": 0.054772, "low": 0.040455, "high": 0.259545, "months": 6}
    assert outpatient["target"] == 0.2 and outpatient["flags"] == ["above_target", "above_band"]
    emergency = next(f for f in m1["figures"] if f["code"] == "antimicrobial_rate" and f["type"] == "急诊")
    assert emergency["value"] is None and emergency["flags"] == []  # no emergency prescriptions: null, no alert
    (oxi,) = m1["monitored_drugs"]
    assert oxi["name"] == "奥拉西坦" and oxi["prescriptions"] == 1 and oxi["flags"] == ["above_band"]
    flagged = {(a["code"], a["type"], a["flag"]) for a in answer["alerts"]}
    assert ("antimicrobial_rate", "门诊", "above_target") in flagged and ("monitored_drug", None, "above_band") in flagged


def test_a_band_needs_three_months_and_the_longest_listed_name_wins() -> None:
    assert band_of([0.1, None, 0.2]) is None
    assert band_of([0.1, 0.2, 0.3])["mean"] == pytest.approx(0.2)  # type: ignore[index]
    names = ["核糖核酸", "核糖核酸Ⅱ", "脑蛋白水解物", "曲克芦丁脑蛋白水解物"]
    assert match_monitored("注射用核糖核酸Ⅱ", names) == "核糖核酸Ⅱ"
    assert match_monitored("曲克芦丁脑蛋白水解物注射液", names) == "曲克芦丁脑蛋白水解物"
    assert match_monitored("阿莫西林", names) is None and match_monitored(None, names) is None


def test_a_rule_pharmacists_keep_approving_is_noisy_and_an_unfired_rule_is_silent(engine: sa.Engine,
                                                                                 world: World) -> None:
    steps: list[dict[str, Any]] = []
    for k in range(21):
        rx = f"N{k}"
        steps.append({"rx": rx, "institution": "M1", "at": f"2026-11-{1 + k:02d}T02:00:00", "type": "门诊",
                      "items": [AMLO], "findings": [{"rule": "R-NOISY", "level": 5}], "verdict": "recheck",
                      "prescriber": {"code": "D9", "name": "钱医生", "title": "住院医师"}})
        steps.append({"decide": rx, "decision": "reject" if k == 0 else "approve", "at": f"2026-11-{1 + k:02d}T03:00:00"})
    run_steps(engine, world, steps)
    with session_scope(engine) as s:
        audit = rule_audit(s, principal=quality_principal(engine, None), period=month_period("2026-11"),
                           active_rules=[("R-NOISY", "噪声规则"), ("R-SILENT", "沉默规则")])
    (row,) = audit["rules"]
    assert row["indicators"]["hits"]["numerator"] == 21
    assert (row["indicators"]["agreement_rate"]["numerator"], row["indicators"]["agreement_rate"]["denominator"]) == (1, 21)
    assert row["noisy"] and audit["noisy"] == ["R-NOISY"]
    assert all(e["pharmacist_decision"] == "approve" for e in row["examples"]) and len(row["examples"]) == 3
    assert audit["silent"] == [{"rule_id": "R-SILENT", "title": "沉默规则"}]
    with session_scope(engine) as s:
        fb = prescriber_feedback(s, principal=quality_principal(engine, "M1"), month="2026-11")
    (qian,) = fb["prescribers"]
    assert qian["name"] == "钱医生" and qian["flag_rate"]["value"] == 1.0
    assert [p["rule_id"] for p in qian["problems"]] == ["R-NOISY"] and qian["problems"][0]["prescriptions"] == 21
