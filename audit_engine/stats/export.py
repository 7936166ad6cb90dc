"""A report in the format asked for: CSV, XLSX or a FHIR MeasureReport Bundle.

The renderers depend on ``reports`` (the data and its rows); this module picks one, so that
``reports`` depends on none of them.
"""

from __future__ import annotations

import json

from audit_engine.errors import InvalidRequestError
from audit_engine.stats.measure_report import measure_report_bundle
from audit_engine.stats.report_xlsx import render_xlsx
from audit_engine.stats.reports import FORMATS, ReportData, render_csv


def render(data: ReportData, fmt: str) -> bytes:
    if fmt == "csv":
        return render_csv(data)
    if fmt == "xlsx":
        return render_xlsx(data)
    if fmt == "measure-report":
        return json.dumps(measure_report_bundle(data), ensure_ascii=False, indent=1).encode("utf-8")
    raise InvalidRequestError("format", f"format 应为 {'、'.join(FORMATS)} 之一，收到 {fmt!r}")
