"""The period report (月报、半年报、年报): one gathering of the figures, three renderings.

:func:`report_data` computes everything once — per institution and for the alliance, in
three scopes (合计, 门诊, 急诊), the members' spread, the rules and, for a month, the
monitoring table — with the same queries as ``GET /api/v1/stats/indicators``, so the API,
the XLSX (``report_xlsx``), the CSV (:func:`render_csv`) and the FHIR MeasureReport
(``measure_report``) cannot disagree.
"""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal

from sqlalchemy.orm import Session

from audit_engine.auth import Principal, visible_institution_ids
from audit_engine.stats import queries as q
from audit_engine.stats.definitions import BY_CODE, SLICE_CODES
from audit_engine.stats.indicators import alliance_ids, institution_filter, rule_rows, spread_for
from audit_engine.stats.periods import Period
from audit_engine.store.db import utcnow
from audit_engine.store.models import Institution

ReportFormat = Literal["xlsx", "csv", "measure-report"]
FORMATS: tuple[str, ...] = ("xlsx", "csv", "measure-report")
SCOPES: tuple[tuple[str, str | None], ...] = (("合计", None), ("门诊", "门诊"), ("急诊", "急诊"))
ALLIANCE_KEY = "ALLIANCE"
ALLIANCE_LABEL = "医共体合计"
MEDIA_TYPES = {
    "xlsx": "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
    "csv": "text/csv; charset=utf-8",
    "measure-report": "application/fhir+json",
}
EXTENSIONS = {"xlsx": "xlsx", "csv": "csv", "measure-report": "json"}


@dataclass(slots=True)
class ScopeFigures:
    """One scope's figures: institution code → indicator values, and the alliance's."""

    rows: dict[str, dict[str, dict[str, Any]]] = field(default_factory=dict)
    alliance: dict[str, dict[str, Any]] = field(default_factory=dict)


@dataclass(slots=True)
class ReportData:
    period: Period
    generated_at: datetime
    reporter: tuple[str, str]  # (code, name) of the reporting organisation
    institutions: dict[str, str]  # code → name, in report order
    scopes: dict[str, ScopeFigures]
    spread: dict[str, Any]
    rules: list[dict[str, Any]]
    monitoring: dict[str, Any] | None


def _reporter(s: Session, principal: Principal) -> tuple[str, str]:
    inst = s.get(Institution, principal.institution_id) if principal.institution_id else None
    if inst is not None:
        return inst.code, inst.name
    centre = s.query(Institution).filter(Institution.is_centre).order_by(Institution.id).first()
    return (centre.code, centre.name) if centre is not None else ("ALLIANCE", "医共体")


def report_data(s: Session, *, principal: Principal, period: Period, institution: str | None = None,
                with_monitoring: bool | None = None) -> ReportData:
    """Every figure of the report for ``period`` and the caller's institutions."""
    visible = visible_institution_ids(s, principal)
    ids = institution_filter(s, institution, visible)
    alliance = alliance_ids(s, principal)
    scopes: dict[str, ScopeFigures] = {}
    codes: dict[str, str] = {}
    # One pass grouped by (institution, 门诊/急诊) gives all three scopes: 合计 adds both (and the
    # reviews whose type is unknown), 门诊 and 急诊 take their own — as the type filter does.
    per = q.count_slices(s, q.Scope(period, alliance, None), ["institution", "visit_type"])
    names = q.institution_names(s, {k[0] for k in per})
    per_total: dict[q.Key, q.Counts] = {}
    for label, vt in SCOPES:
        per_alliance: dict[q.Key, q.Counts] = {}
        for (iid, v), c in per.items():
            if vt is None or v == vt:
                per_alliance.setdefault((iid,), q.Counts()).add(c)
        fig = ScopeFigures(alliance=q.values_of(q.total(per_alliance.values())))
        for (iid,), c in per_alliance.items():
            if ids is None or iid in ids:
                code, name = names[iid]
                fig.rows[code] = q.values_of(c)
                codes[code] = name
        scopes[label] = fig
        if vt is None:
            per_total = per_alliance
    spread = spread_for(s, period, alliance, None, visible, per_institution=per_total)
    rules = rule_rows(s, q.Scope(period, ids, None))
    monitoring = None
    is_month = period.start.day == 1 and len(period.months) == 1
    if with_monitoring if with_monitoring is not None else is_month:
        from audit_engine.stats.monitoring import monitoring as monitor

        monitoring = monitor(s, principal=principal, month=period.months[0], institution=institution)
    return ReportData(period, utcnow(), _reporter(s, principal), dict(sorted(codes.items())), scopes, spread,
                      rules, monitoring)


# --------------------------------------------------------------------------- CSV
CSV_COLUMNS = ("period_from", "period_to", "scope", "institution_code", "institution_name", "indicator",
               "indicator_name", "numerator", "denominator", "value", "source")


def long_rows(data: ReportData) -> list[dict[str, Any]]:
    """One row per (scope, institution or alliance, indicator): what the CSV holds, and the XLSX's 指标明细 sheet."""
    out: list[dict[str, Any]] = []
    for scope, fig in data.scopes.items():
        targets = [*((c, data.institutions[c], fig.rows[c]) for c in data.institutions if c in fig.rows),
                   (ALLIANCE_KEY, ALLIANCE_LABEL, fig.alliance)]
        for code, name, values in targets:
            for ind in SLICE_CODES:
                v = values[ind]
                out.append({
                    "period_from": data.period.start.isoformat(), "period_to": data.period.end.isoformat(),
                    "scope": scope, "institution_code": code, "institution_name": name, "indicator": ind,
                    "indicator_name": BY_CODE[ind].name, "numerator": v["numerator"],
                    "denominator": v["denominator"], "value": v["value"], "source": BY_CODE[ind].source_label,
                })
    return out


def render_csv(data: ReportData) -> bytes:
    """UTF-8 with a byte-order mark (so Excel opens the Chinese text right); empty cell = null."""
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=CSV_COLUMNS, lineterminator="\r\n")
    writer.writeheader()
    for row in long_rows(data):
        writer.writerow({k: ("" if row[k] is None else row[k]) for k in CSV_COLUMNS})
    return ("\ufeff" + buf.getvalue()).encode("utf-8")


def file_name(data: ReportData, fmt: str) -> str:
    return f"audit-stats-{data.period.label}.{EXTENSIONS.get(fmt, 'bin')}"
