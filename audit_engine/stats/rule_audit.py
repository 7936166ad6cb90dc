"""The rule audit (INDICATORS.md B): every rule's hits, agreement and overrides, the noisy and
the silent rules, and example reviews behind each figure (for the quality workspace).

* **noisy**: ``hits`` ≥ 20 and ``agreement_rate`` < 0.2 in the period (pharmacists mostly
  approve what it flags). A rule with no pharmacist-decided task has no agreement rate
  and is not called noisy.
* **silent**: a rule of the active rulebase with no hit over the 90 days that end on the
  period's last day (across the caller's institutions; 0 hits may mean a broken rule).

Examples are the latest reviews of the slice on which the rule fired, those the pharmacists
approved first (the ones that tell whether a rule is noise), each with its outcome.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Session

from audit_engine.auth import Principal, visible_institution_ids
from audit_engine.stats import queries as q
from audit_engine.stats.indicators import check_visit_type, institution_filter
from audit_engine.stats.periods import Period

NOISY_MIN_HITS = 20
NOISY_MAX_AGREEMENT = 0.2
SILENT_DAYS = 90
EXAMPLES = 3


def examples_for(s: Session, scope: q.Scope, rule_id: str, limit: int = EXAMPLES) -> list[dict[str, Any]]:
    """The latest reviews of the slice on which ``rule_id`` fired, pharmacist-approved first."""
    approved_first = sa.case((q.TASKS.c.decision == "approve", 0), else_=1)
    rows = s.execute(
        sa.select(q.RULES.c.review_id, q.RS.c.created_at, q.RS.c.verdict, q.TASKS.c.decision,
                  q.INSTITUTIONS.c.code)
        .select_from(
            q.RULES.join(q.RS, q.RS.c.review_id == q.RULES.c.review_id)
            .join(q.INSTITUTIONS, q.INSTITUTIONS.c.id == q.RULES.c.institution_id)
            .outerjoin(q.TASKS, q.TASKS.c.review_id == q.RULES.c.review_id)
        )
        .where(*q._flt(q.RULES, scope), q.RULES.c.rule_id == rule_id)
        .order_by(approved_first, q.RULES.c.local_date.desc(), q.RS.c.created_at.desc())
        .limit(limit)
    ).all()
    return [
        {"review_id": r.review_id, "institution": r.code, "created_at": r.created_at.isoformat() + "Z",
         "verdict": r.verdict, "pharmacist_decision": r.decision}
        for r in rows
    ]


def rule_audit(
    s: Session,
    *,
    principal: Principal,
    period: Period,
    active_rules: Iterable[tuple[str, str]] = (),
    institution: str | None = None,
    visit_type: str | None = None,
    with_examples: bool = True,
) -> dict[str, Any]:
    """Rows per rule (B indicators, ``noisy``, examples), the noisy list and the silent list."""
    check_visit_type(visit_type)
    visible = visible_institution_ids(s, principal)
    ids = institution_filter(s, institution, visible)
    scope = q.Scope(period, ids, visit_type)
    prescriptions = q.total(q.count_slices(s, scope, []).values()).n["prescriptions"]
    counts = q.count_rules(s, scope)
    titles = q.rule_titles(s, [k[0] for k in counts])
    active = dict(active_rules)
    rows: list[dict[str, Any]] = []
    for (rule,), rc in counts.items():
        values = q.rule_values(rc, prescriptions)
        agreement = values["agreement_rate"]["value"]
        noisy = rc.hits >= NOISY_MIN_HITS and agreement is not None and agreement < NOISY_MAX_AGREEMENT
        rows.append({
            "rule_id": rule,
            "title": titles.get(rule) or active.get(rule) or rule,
            "indicators": values,
            "noisy": noisy,
            "examples": examples_for(s, scope, rule) if with_examples and rc.hits else [],
        })
    rows.sort(key=lambda r: (-r["indicators"]["hits"]["numerator"], r["rule_id"]))
    window = q.Scope(Period(period.end - timedelta(days=SILENT_DAYS - 1), period.end, "silent"), ids, None)
    fired = {k[0] for k in q.count_rules(s, window)}
    silent = [{"rule_id": r, "title": t} for r, t in sorted(active.items()) if r not in fired]
    return {
        "from": period.start.isoformat(),
        "to": period.end.isoformat(),
        "prescriptions": prescriptions,
        "rules": rows,
        "noisy": [r["rule_id"] for r in rows if r["noisy"]],
        "silent": silent,
        "silent_window": {"from": window.period.start.isoformat(), "to": window.period.end.isoformat()},
        "thresholds": {"noisy_min_hits": NOISY_MIN_HITS, "noisy_max_agreement": NOISY_MAX_AGREEMENT,
                       "silent_days": SILENT_DAYS},
    }
