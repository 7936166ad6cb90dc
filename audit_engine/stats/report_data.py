"""What a period report holds, whatever it is rendered as: the figures per scope and institution,
and their long form (one row per scope, institution and indicator). ``reports`` gathers it;
``report_xlsx``, ``measure_report`` and the CSV render it."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from audit_engine.stats.definitions import BY_CODE, SLICE_CODES
from audit_engine.stats.periods import Period

ALLIANCE_KEY = "ALLIANCE"
ALLIANCE_LABEL = "医共体合计"


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
