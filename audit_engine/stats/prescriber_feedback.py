"""培训指导 (prescriber feedback, INDICATORS.md F): per prescriber and month, their
prescriptions and flag rate beside their institution's and the alliance's, and their three
most frequent problems (the rules that fired most often on their prescriptions), each with
one example review to discuss at the monthly feedback meeting.

The institution's and the alliance's rates are over the same month and scope; the alliance
rate is shown to every caller (it is the yardstick, not another member's row).
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Session

from audit_engine.auth import Principal, visible_institution_ids
from audit_engine.stats import queries as q
from audit_engine.stats.indicators import NO_PRESCRIBER, alliance_ids, check_visit_type, institution_filter
from audit_engine.stats.periods import month_period

TOP_PROBLEMS = 3


def prescriber_feedback(
    s: Session,
    *,
    principal: Principal,
    month: str,
    institution: str | None = None,
    prescriber: str | None = None,
    visit_type: str | None = None,
) -> dict[str, Any]:
    period = month_period(month)
    check_visit_type(visit_type)
    visible = visible_institution_ids(s, principal)
    ids = institution_filter(s, institution, visible)
    scope = q.Scope(period, ids, visit_type)
    alliance = q.total(q.count_slices(s, q.Scope(period, alliance_ids(s, principal), visit_type), []).values())
    per_inst = q.count_slices(s, scope, ["institution"])
    per_prescriber = q.count_slices(s, scope, ["prescriber"])
    labels = q.prescriber_labels(s, scope)
    names = q.institution_names(s, {k[0] for k in per_inst})

    rs, rr = q.RS, q.RULES
    conds = q._flt(rs, scope)
    if prescriber is not None:
        conds.append(rs.c.prescriber_code == prescriber)
    problem_rows = s.execute(
        sa.select(rs.c.institution_id, rs.c.prescriber_code, rr.c.rule_id, sa.func.count().label("n"),
                  sa.func.max(rr.c.review_id).label("example"))
        .select_from(rr.join(rs, rs.c.review_id == rr.c.review_id))
        .where(*conds)
        .group_by(rs.c.institution_id, rs.c.prescriber_code, rr.c.rule_id)
    ).all()
    problems: dict[tuple[int, str | None], list[Any]] = {}
    for r in problem_rows:
        problems.setdefault((r.institution_id, r.prescriber_code), []).append(r)
    titles = q.rule_titles(s, {r.rule_id for r in problem_rows})

    alliance_flag = q.values_of(alliance)["flag_rate"]
    out: list[dict[str, Any]] = []
    for (iid, pcode), c in per_prescriber.items():
        if prescriber is not None and pcode != prescriber:
            continue
        code, iname = names.get(iid, (str(iid), str(iid)))
        pname, title = labels.get((iid, pcode), (None, None))
        top = sorted(problems.get((iid, pcode), []), key=lambda r: (-r.n, r.rule_id))[:TOP_PROBLEMS]
        values = q.values_of(c)
        out.append({
            "institution": code,
            "institution_name": iname,
            "prescriber": pcode,
            "name": pname or pcode or NO_PRESCRIBER,
            "title": title,
            "prescriptions": values["prescriptions"],
            "flag_rate": values["flag_rate"],
            "institution_flag_rate": q.values_of(per_inst[(iid,)])["flag_rate"],
            "alliance_flag_rate": alliance_flag,
            "antimicrobial_rate": values["antimicrobial_rate"],
            "injection_rate": values["injection_rate"],
            "problems": [
                {"rule_id": r.rule_id, "title": titles.get(r.rule_id, r.rule_id), "prescriptions": int(r.n),
                 "example_review_id": r.example}
                for r in top
            ],
        })
    out.sort(key=lambda p: (p["institution"], -(p["flag_rate"]["value"] or 0), str(p["prescriber"])))
    return {"month": month, "filters": {"institution": institution, "prescriber": prescriber, "type": visit_type},
            "prescribers": out}
