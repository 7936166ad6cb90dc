"""The report as an Excel workbook (openpyxl, write-only mode: rows are streamed), for the
quality manager's monthly submission.

Sheets: 总览 (each institution's value of every indicator, 合计 scope), 指标明细 (every
figure with its numerator and denominator, per scope — the same rows as the CSV), 同质化
(the members' spread), 规则效果 (per rule), 用药监测 (month reports: figures, bands, alerts)
and 指标定义 (per indicator: numerator, denominator, definition, source; "本医共体口径" where
the definition is the alliance's own).
"""

from __future__ import annotations

import io
from typing import Any

from openpyxl import Workbook
from openpyxl.cell import WriteOnlyCell
from openpyxl.styles import Alignment, Font, PatternFill
from openpyxl.utils import get_column_letter

from audit_engine.stats.definitions import BY_CODE, INDICATORS, SLICE_CODES, SPREAD_CODES
from audit_engine.stats.reports import ALLIANCE_KEY, ALLIANCE_LABEL, CSV_COLUMNS, ReportData, long_rows

HEADER_FONT = Font(bold=True)
HEADER_FILL = PatternFill("solid", fgColor="DDEBF7")
ALERT_FILL = PatternFill("solid", fgColor="FCE4D6")
WRAP = Alignment(wrap_text=True, vertical="top")
PERCENT = "0.00%"

DETAIL_HEADERS = ("开始日期", "结束日期", "范围", "机构编码", "机构名称", "指标编码", "指标名称", "分子", "分母", "值", "来源")


class _Sheet:
    """A write-only worksheet with the few cell styles the report uses."""

    def __init__(self, wb: Workbook, title: str, widths: dict[int, int], freeze: str | None = "A2") -> None:
        self.ws: Any = wb.create_sheet(title)
        for col, width in widths.items():
            self.ws.column_dimensions[get_column_letter(col)].width = width
        if freeze:
            self.ws.freeze_panes = freeze

    def header(self, headers: list[str] | tuple[str, ...]) -> None:
        cells = []
        for h in headers:
            c = WriteOnlyCell(self.ws, value=h)
            c.font, c.fill, c.alignment = HEADER_FONT, HEADER_FILL, WRAP
            cells.append(c)
        self.ws.append(cells)

    def row(self, values: list[Any], formats: dict[int, str] | None = None, *, alert: int | None = None,
            wrap: bool = False) -> None:
        """``formats`` maps 1-based columns to number formats; ``alert`` highlights one column."""
        if not formats and alert is None and not wrap:
            self.ws.append(values)
            return
        cells: list[Any] = []
        for n, v in enumerate(values, 1):
            fmt = formats.get(n) if formats else None
            if v is None or (fmt is None and alert != n and not wrap):
                cells.append(v)  # a plain value: no cell object, no style lookup
                continue
            c = WriteOnlyCell(self.ws, value=v)
            if fmt is not None:
                c.number_format = fmt
            if alert == n:
                c.fill = ALERT_FILL
            if wrap:
                c.alignment = WRAP
            cells.append(c)
        self.ws.append(cells)


def _number_format(code: str) -> str:
    kind = BY_CODE[code].kind if code in BY_CODE else "count"
    return PERCENT if kind == "proportion" else ("0.00" if kind in ("mean", "time") else "0")


def render_xlsx(data: ReportData) -> bytes:
    wb = Workbook(write_only=True)
    _overview(wb, data)
    _detail(wb, data)
    _spread(wb, data)
    _rules(wb, data)
    if data.monitoring is not None:
        _monitoring(wb, data.monitoring)
    _definitions(wb)
    wb.properties.title = f"审方统计报表 {data.period.label}"
    wb.properties.creator = "audit-engine"
    buf = io.BytesIO()
    wb.save(buf)
    return buf.getvalue()


def _overview(wb: Workbook, data: ReportData) -> None:
    sh = _Sheet(wb, "总览", {1: 12, 2: 28, **{n: 14 for n in range(3, 3 + len(SLICE_CODES))}}, freeze="C4")
    sh.row([f"审方统计报表 {data.period.label}（{data.period.start} 至 {data.period.end}）"])
    sh.row([f"报告机构：{data.reporter[1]}（{data.reporter[0]}）；生成时间（UTC）：{data.generated_at:%Y-%m-%d %H:%M}；"
            "范围：门诊与急诊合计；比例以小数表示，分母为 0 时留空"])
    sh.header(["机构编码", "机构名称", *[BY_CODE[c].name for c in SLICE_CODES]])
    fig = data.scopes["合计"]
    formats = {n: _number_format(c) for n, c in enumerate(SLICE_CODES, 3)}
    targets = [*((c, data.institutions[c], fig.rows[c]) for c in data.institutions if c in fig.rows),
               (ALLIANCE_KEY, ALLIANCE_LABEL, fig.alliance)]
    for code, name, values in targets:
        sh.row([code, name, *[values[c]["value"] for c in SLICE_CODES]], formats)


def _detail(wb: Workbook, data: ReportData) -> None:
    sh = _Sheet(wb, "指标明细", {1: 12, 2: 12, 3: 6, 4: 12, 5: 28, 6: 28, 7: 28, 8: 10, 9: 10, 10: 12, 11: 50})
    sh.header(DETAIL_HEADERS)
    for row in long_rows(data):
        sh.row([row[k] for k in CSV_COLUMNS], {10: _number_format(row["indicator"])})


def _spread(wb: Workbook, data: ReportData) -> None:
    sh = _Sheet(wb, "同质化", {1: 28, 2: 28, 8: 20})
    sh.header(["指标编码", "指标名称", "成员数", "中位数", "Q1", "Q3", "变异系数", "离群机构", "医共体值",
               *[f"{c} {n}" for c, n in data.institutions.items()]])
    fig = data.scopes["合计"]
    for code in SPREAD_CODES:
        sp = data.spread.get(code, {})
        sh.row([code, BY_CODE[code].name, sp.get("n"), sp.get("median"), sp.get("q1"), sp.get("q3"), sp.get("cv"),
                "、".join(sp.get("outliers", [])), fig.alliance[code]["value"],
                *[fig.rows[c][code]["value"] if c in fig.rows else None for c in data.institutions]],
               alert=8 if sp.get("outliers") else None)


def _rules(wb: Workbook, data: ReportData) -> None:
    sh = _Sheet(wb, "规则效果", {1: 24, 2: 40, 5: 16, 7: 16})
    sh.header(["规则", "标题", "命中处方数", "命中率", "药师认同率（分子/分母）", "药师认同率", "医生忽略率（分子/分母）", "医生忽略率"])
    for r in data.rules:
        ind = r["indicators"]
        sh.row([r["key"], r["label"], ind["hits"]["value"], ind["hit_rate"]["value"],
                f"{ind['agreement_rate']['numerator']}/{ind['agreement_rate']['denominator']}",
                ind["agreement_rate"]["value"],
                f"{ind['override_rate']['numerator']}/{ind['override_rate']['denominator']}",
                ind["override_rate"]["value"]], {4: PERCENT, 6: PERCENT, 8: PERCENT})


def _monitoring(wb: Workbook, monitoring: dict[str, Any]) -> None:
    sh = _Sheet(wb, "用药监测", {2: 28, 3: 36, 12: 20})
    sh.header(["机构编码", "机构名称", "监测项", "范围", "分子", "分母", "值", "近六个月均值", "下限（均值−2SD）",
               "上限（均值+2SD）", "目标值", "提示"])
    flag_zh = {"above_target": "超过目标", "above_band": "高于波动范围", "below_band": "低于波动范围"}
    rates = {c: PERCENT for c in (7, 8, 9, 10, 11)}
    for inst in monitoring["institutions"]:
        for f in inst["figures"]:
            band = f["band"] or {}
            sh.row([inst["institution"], inst["name"], f["name"], f["type"] or "合计", f["numerator"], f["denominator"],
                    f["value"], band.get("mean"), band.get("low"), band.get("high"), f["target"],
                    "、".join(flag_zh[x] for x in f["flags"])], rates, alert=12 if f["flags"] else None)
        for d in inst["monitored_drugs"]:
            band = d["band"] or {}
            sh.row([inst["institution"], inst["name"], f"重点监控药品：{d['name']}", "合计", d["prescriptions"], None,
                    d["prescriptions"], band.get("mean"), band.get("low"), band.get("high"), None,
                    "、".join(flag_zh[x] for x in d["flags"])], alert=12 if d["flags"] else None)


def _definitions(wb: Workbook) -> None:
    sh = _Sheet(wb, "指标定义", {1: 28, 2: 26, 3: 10, 4: 36, 5: 24, 6: 50, 7: 50})
    sh.header(["指标编码", "指标名称", "类别", "分子", "分母", "定义", "来源"])
    section = {"A": "审方运行", "B": "规则效果", "C": "处方指标"}
    for ind in INDICATORS:
        sh.row([ind.code, ind.name, section[ind.section], ind.numerator, ind.denominator, ind.definition,
                ind.source_label or "—"], wrap=True)
    sh.row([])
    sh.row(["计数规则", "", "", "处方为一次提交的处方版本（一条审核记录）；修改后重新提交再计一张，幂等重放不计。"
            "按审核创建时间（医共体时区，默认 Asia/Shanghai）归入期间；药师决定、医生答复与 CDS 反馈迟到也计入该处方所在期间。"
            "门诊、急诊分开并合计报告。分母为 0 时值为空（null），不记为 0。"], wrap=True)
