"""The indicators use case (``GET /api/v1/stats/indicators``): who may see what, the rows of
one grouping, the alliance's figures and the members' spread.

Visibility (CONTRACT.md): a quality user bound to a member institution sees only that
institution's rows; the centre's users see the centre and its members; users with no
institution see every institution. Two figures are not rows and are shown to every caller
of the alliance, because comparing oneself with them is their purpose (同质化; 培训指导 shows a
prescriber "beside the alliance"): the ``alliance`` block (totals over all members of the
caller's alliance) and the spread's median, quartiles and CV. The spread's ``outliers``
list names only institutions the caller may see.
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Session

from audit_engine.auth import Principal, visible_institution_ids
from audit_engine.errors import InvalidRequestError, NotFoundError
from audit_engine.stats import queries as q
from audit_engine.stats.definitions import SPREAD_CODES
from audit_engine.stats.periods import Period
from audit_engine.stats.recording import VISIT_TYPES
from audit_engine.stats.spread import spread_of
from audit_engine.store.models import Institution

NO_DEPARTMENT = "（未填科室）"
NO_PRESCRIBER = "（未识别医师）"


def alliance_ids(s: Session, principal: Principal) -> frozenset[int] | None:
    """The institutions of the caller's alliance (its centre and the centre's members); None = all."""
    if principal.institution_id is None:
        return None
    inst = s.get(Institution, principal.institution_id)
    if inst is None:
        return frozenset()
    centre_id = inst.id if inst.is_centre else inst.centre_id
    if centre_id is None:
        return frozenset({inst.id})
    members = s.scalars(sa.select(Institution.id).where(Institution.centre_id == centre_id)).all()
    return frozenset({centre_id, *members})


def institution_filter(s: Session, code: str | None, visible: frozenset[int] | None) -> frozenset[int] | None:
    """The ids a request's ``institution=CODE`` leaves (404 for a code unknown or not visible)."""
    if code is None:
        return visible
    found = s.scalar(sa.select(Institution.id).where(Institution.code == code))
    if found is None or (visible is not None and found not in visible):
        raise NotFoundError(f"Institution/{code}", "没有这个机构，或无权查看")
    return frozenset({int(found)})


def check_visit_type(visit_type: str | None) -> str | None:
    if visit_type is not None and visit_type not in VISIT_TYPES:
        raise InvalidRequestError("type", f"type 应为 门诊 或 急诊，收到 {visit_type!r}")
    return visit_type


def spread_for(
    s: Session, period: Period, alliance: frozenset[int] | None, visit_type: str | None,
    visible: frozenset[int] | None, *, per_institution: dict[q.Key, q.Counts] | None = None,
) -> dict[str, Any]:
    """Per indicator of SPREAD_CODES: the spread across the alliance's members in the period."""
    counts = per_institution if per_institution is not None else q.count_slices(
        s, q.Scope(period, alliance, visit_type), ["institution"])
    names = q.institution_names(s, [k[0] for k in counts])
    values = {names[k[0]][0]: q.values_of(c) for k, c in counts.items() if k[0] in names}
    visible_codes = None if visible is None else {names[i][0] for i in visible if i in names}
    out: dict[str, Any] = {}
    for code in SPREAD_CODES:
        sp = spread_of({inst: v[code]["value"] for inst, v in values.items()})
        if visible_codes is not None:
            sp["outliers"] = [o for o in sp["outliers"] if o in visible_codes]
        out[code] = sp
    return out


def indicators(
    s: Session,
    *,
    principal: Principal,
    period: Period,
    group_by: str,
    institution: str | None = None,
    visit_type: str | None = None,
) -> dict[str, Any]:
    """The ``GET /api/v1/stats/indicators`` answer (CONTRACT.md "Statistics")."""
    if group_by not in q.GROUP_BYS:
        raise InvalidRequestError("group_by", f"group_by 应为 {'、'.join(q.GROUP_BYS)} 之一，收到 {group_by!r}")
    check_visit_type(visit_type)
    visible = visible_institution_ids(s, principal)
    rows_ids = institution_filter(s, institution, visible)
    alliance = alliance_ids(s, principal)
    scope = q.Scope(period, rows_ids, visit_type)
    alliance_scope = q.Scope(period, alliance, visit_type)

    per_institution = q.count_slices(s, alliance_scope, ["institution"])
    alliance_total = q.total(per_institution.values())
    rows = _rows(s, scope, group_by, per_institution if rows_ids == alliance else None)
    return {
        "from": period.start.isoformat(),
        "to": period.end.isoformat(),
        "group_by": group_by,
        "filters": {"institution": institution, "type": visit_type},
        "rows": rows,
        "alliance": {"indicators": q.values_of(alliance_total)},
        "spread": spread_for(s, period, alliance, visit_type, visible, per_institution=per_institution),
    }


def _rows(s: Session, scope: q.Scope, group_by: str, per_institution: dict[q.Key, q.Counts] | None
          ) -> list[dict[str, Any]]:
    if group_by == "rule":
        return rule_rows(s, scope)
    counts = per_institution if group_by == "institution" and per_institution is not None else (
        q.count_slices(s, scope, [group_by]))
    inst_ids = {k[0] for k in counts} if group_by in ("institution", "department", "prescriber") else set()
    names = q.institution_names(s, inst_ids) if inst_ids else {}
    rows: list[dict[str, Any]] = []
    if group_by == "institution":
        for (iid,), c in counts.items():
            code, name = names.get(iid, (str(iid), str(iid)))
            rows.append({"key": code, "label": name, "indicators": q.values_of(c)})
    elif group_by == "department":
        for (iid, dept), c in counts.items():
            code, name = names.get(iid, (str(iid), str(iid)))
            rows.append({"key": f"{code}/{dept or NO_DEPARTMENT}", "label": f"{dept or NO_DEPARTMENT}（{name}）",
                         "institution": code, "indicators": q.values_of(c)})
    elif group_by == "prescriber":
        labels = q.prescriber_labels(s, scope)
        for (iid, pcode), c in counts.items():
            code, name = names.get(iid, (str(iid), str(iid)))
            pname, title = labels.get((iid, pcode), (None, None))
            rows.append({"key": f"{code}/{pcode or NO_PRESCRIBER}",
                         "label": f"{pname or pcode or NO_PRESCRIBER}（{name}）",
                         "institution": code, "prescriber": pcode, "title": title, "indicators": q.values_of(c)})
    elif group_by == "month":
        for (month,), c in counts.items():
            rows.append({"key": month, "label": month, "indicators": q.values_of(c)})
    else:  # drug
        drugs = q.drug_labels(s, scope)
        for (drug,), c in counts.items():
            rows.append({"key": drug, "label": drugs.get(drug, drug), "indicators": q.values_of(c)})
    if group_by == "drug":
        rows.sort(key=lambda r: (-r["indicators"]["prescriptions"]["numerator"], r["key"]))
    else:
        rows.sort(key=lambda r: r["key"])
    return rows


def rule_rows(s: Session, scope: q.Scope) -> list[dict[str, Any]]:
    """One row per rule that fired (or got feedback) in the slice: section B indicators."""
    prescriptions = q.total(q.count_slices(s, scope, []).values()).n["prescriptions"]
    counts = q.count_rules(s, scope)
    titles = q.rule_titles(s, [k[0] for k in counts])
    rows = [
        {"key": rule, "label": titles.get(rule, rule), "indicators": q.rule_values(rc, prescriptions)}
        for (rule,), rc in counts.items()
    ]
    rows.sort(key=lambda r: (-r["indicators"]["hits"]["numerator"], r["key"]))
    return rows


def spread_by_month(
    s: Session, *, principal: Principal, period: Period, visit_type: str | None = None,
) -> dict[str, Any]:
    """同质化 month by month: per month, each indicator's spread across the alliance's members,
    and the values of the members the caller may see (beside the alliance median)."""
    check_visit_type(visit_type)
    visible = visible_institution_ids(s, principal)
    alliance = alliance_ids(s, principal)
    per = q.count_slices(s, q.Scope(period, alliance, visit_type), ["month", "institution"])
    names = q.institution_names(s, {k[1] for k in per})
    months: dict[str, dict[q.Key, q.Counts]] = {}
    for (month, iid), c in per.items():
        months.setdefault(month, {})[(iid,)] = c
    out = []
    for month in period.months:
        counts = months.get(month, {})
        members = {
            names[k[0]][0]: {code: v["value"] for code, v in q.values_of(c).items() if code in SPREAD_CODES}
            for k, c in counts.items() if visible is None or k[0] in visible
        }
        out.append({
            "month": month,
            "spread": spread_for(s, period, alliance, visit_type, visible, per_institution=counts),
            "members": dict(sorted(members.items())),
            "member_names": {names[k[0]][0]: names[k[0]][1] for k in counts if visible is None or k[0] in visible},
        })
    return {"from": period.start.isoformat(), "to": period.end.isoformat(), "type": visit_type, "months": out}
