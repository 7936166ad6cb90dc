"""The demo's history: months of data from the demo's real reviews, recorded exactly as real
reviews record them, with noisy rules and an outlier, and never generated twice."""

from __future__ import annotations

import io
from datetime import date
from typing import Any

import sqlalchemy as sa
from scenario import quality_principal, run_steps
from store_support import World

from audit_engine.stats.demo_history import load_history
from audit_engine.stats.indicators import indicators
from audit_engine.stats.periods import month_period
from audit_engine.stats.recording import stat_rows
from audit_engine.stats.rule_audit import rule_audit
from audit_engine.store.db import session_scope
from audit_engine.store.models import FindingRow, Prescription, Review
from audit_engine.store.stats_models import ReviewStat, ReviewStatItem, ReviewStatRule

AMOX = {"drug_id": "amoxicillin", "name": "阿莫西林", "route": "口服", "antimicrobial_grade": "非限制使用级", "essential": True}
AMLO = {"drug_id": "amlodipine", "name": "氨氯地平", "route": "口服", "essential": True}


def templates() -> list[dict[str, Any]]:
    steps: list[dict[str, Any]] = []
    for inst in ("C1", "M1", "C2", "M2"):
        for n, (items, findings, t) in enumerate((
            ([AMLO], [], "门诊"), ([AMOX], [], "门诊"), ([AMLO, AMOX], [{"rule": "R-NOISY", "level": 5}], "门诊"),
            ([AMLO], [{"rule": "R-REAL", "level": 6}], "急诊"), ([AMLO], [{"rule": "R-EXPLAIN", "level": 3}], "门诊"),
        )):
            steps.append({"rx": f"{inst}-T{n}", "institution": inst, "at": "2026-12-05T02:00:00", "type": t,
                          "items": items, "findings": findings})
    return steps


def test_the_history_fills_months_consistently_with_noise_and_is_made_once(engine: sa.Engine, world: World) -> None:
    run_steps(engine, world, templates())
    url = engine.url.render_as_string(hide_password=False)
    out = io.StringIO()
    written = load_history(url, out=out, today=date(2026, 12, 5))
    assert written > 1000 and "演示历史" in out.getvalue()
    assert load_history(url, out=io.StringIO(), today=date(2026, 12, 5)) == 0  # never twice

    principal = quality_principal(engine, None)
    with session_scope(engine) as s:
        for month in ("2026-09", "2026-10", "2026-11"):
            rows = {r["key"]: r["indicators"] for r in indicators(s, principal=principal, period=month_period(month),
                                                                 group_by="institution")["rows"]}
            assert set(rows) == {"C1", "M1", "C2", "M2"}
            # volumes differ by level: the county hospitals send several times what a village clinic sends
            assert rows["C1"]["prescriptions"]["value"] > 3 * rows["M2"]["prescriptions"]["value"]
            assert rows["C1"]["pharmacist_decided_rate"]["denominator"] > 0
        audit = rule_audit(s, principal=principal, period=month_period("2026-11"))
        assert "R-NOISY" in audit["noisy"]  # the rules that most often reach a pharmacist are made noisy

        # Every history review's statistics rows are what recording computes from its stored facts and findings.
        hist = s.scalars(sa.select(Review).join(Prescription, Prescription.id == Review.prescription_id)
                         .where(Prescription.identifier.startswith("HIST-")).limit(300)).all()
        assert len(hist) == 300
        for review in hist:
            findings = [(f.rule_id, f.implicated) for f in s.scalars(
                sa.select(FindingRow).where(FindingRow.review_id == review.id).order_by(FindingRow.position))]
            stat, items, rules = stat_rows(review_id=review.id, institution_id=review.institution_id,
                                           created_at=review.created_at, verdict=review.verdict, facts=review.facts,
                                           findings=findings)
            stored = s.execute(sa.select(ReviewStat.__table__).where(ReviewStat.review_id == review.id)).mappings().one()
            assert dict(stored) == stat
            assert [dict(r) for r in s.execute(sa.select(ReviewStatItem.__table__).where(
                ReviewStatItem.review_id == review.id).order_by(ReviewStatItem.position)).mappings()] == items
            assert len(s.execute(sa.select(ReviewStatRule.__table__).where(
                ReviewStatRule.review_id == review.id)).all()) == len(rules)
