"""The report as an Excel workbook (openpyxl), for the quality manager's monthly submission.

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
from openpyxl.styles import Alignment, Font, PatternFill
from openpyxl.utils import get_column_letter
from openpyxl.worksheet.worksheet import Worksheet

from audit_engine.stats.definitions import BY_CODE, INDICATORS, SLICE_CODES, SPREAD_CODES
from audit_engine.stats.reports import ALLIANCE_KEY, ALLIANCE_LABEL, CSV_COLUMNS, ReportData, long_rows

HEADER_FONT = Font(bold=True)
HEADER_FILL = PatternFill("solid", fgColor="DDEBF7")
ALERT_FILL = PatternFill("solid", fgColor="FCE4D6")

DETAIL_HEADERS = ("开始日期", "结束日期", "范围", "机构编码", "机构名称", "指标编码", "指标名称", "分子", "分母", "值", "来源")


def _header(ws: Worksheet, headers: tuple[str, ...] | list[str]) -> None:
    ws.append(list(headers))
    for cell in ws[1]:
        cell.font = HEADER_FONT
        cell.fill = HEADER_FILL
        cell.alignment = Alignment(wrap_text=True, vertical="top")
    ws.freeze_panes = "A2"


def _widths(ws: Worksheet, widths: dict[int, int]) -> None:
    for col, width in widths.items():
        ws.column_dimensions[get_column_letter(col)].width = width


def _fmt(ws: Worksheet, row: int, col: int, code: str) -> None:
    kind = BY_CODE[code].kind if code in BY_CODE else "count"
    ws.cell(row=row, column=col).number_format = "0.00%" if kind == "proportion" else (
        "0.00" if kind in ("mean", "time") else "0")


def render_xlsx(data: ReportData) -> bytes:
    wb = Workbook()
    overview: Any = wb.active
    overview.title = "总览"
    _overview(overview, data)
    _detail(wb.create_sheet("指标明细"), data)
    _spread(wb.create_sheet("同质化"), data)
    _rules(wb.create_sheet("规则效果"), data)
    if data.monitoring is not None:
        _monitoring(wb.create_sheet("用药监测"), data.monitoring)
    _definitions(wb.create_sheet("指标定义"))
    wb.properties.title = f"审方统计报表 {data.period.label}"
    wb.properties.creator = "audit-engine"
    buf = io.BytesIO()
    wb.save(buf)
    return buf.getvalue()


def _overview(ws: Worksheet, data: ReportData) -> None:
    ws.append([f"审方统计报表 {data.period.label}（{data.period.start} 至 {data.period.end}）"])
    ws.append([f"报告机构：{data.reporter[1]}（{data.reporter[0]}）；生成时间（UTC）：{data.generated_at:%Y-%m-%d %H:%M}；"
               "范围：门诊与急诊合计；比例以小数表示，分母为 0 时留空"])
    headers = ["机构编码", "机构名称", *[BY_CODE[c].name for c in SLICE_CODES]]
    ws.append(headers)
    for cell in ws[3]:
        cell.font = HEADER_FONT
        cell.fill = HEADER_FILL
        cell.alignment = Alignment(wrap_text=True, vertical="top")
    fig = data.scopes["合计"]
    targets = [*((c, data.institutions[c], fig.rows[c]) for c in data.institutions if c in fig.rows),
               (ALLIANCE_KEY, ALLIANCE_LABEL, fig.alliance)]
    for code, name, values in targets:
        ws.append([code, name, *[values[c]["value"] for c in SLICE_CODES]])
        for n, c in enumerate(SLICE_CODES, 3):
            _fmt(ws, ws.max_row, n, c)
    ws.freeze_panes = "C4"
    _widths(ws, {1: 12, 2: 28, **{n: 14 for n in range(3, 3 + len(SLICE_CODES))}})


def _detail(ws: Worksheet, data: ReportData) -> None:
    _header(ws, DETAIL_HEADERS)
    for row in long_rows(data):
        ws.append([row[k] for k in CSV_COLUMNS])
        _fmt(ws, ws.max_row, 10, row["indicator"])
    _widths(ws, {1: 12, 2: 12, 3: 6, 4: 12, 5: 28, 6: 28, 7: 28, 8: 10, 9: 10, 10: 12, 11: 50})


def _spread(ws: Worksheet, data: ReportData) -> None:
    _header(ws, ["指标编码", "指标名称", "成员数", "中位数", "Q1", "Q3", "变异系数", "离群机构", "医共体值",
                 *[f"{c} {n}" for c, n in data.institutions.items()]])
    fig = data.scopes["合计"]
    for code in SPREAD_CODES:
        sp = data.spread.get(code, {})
        ws.append([code, BY_CODE[code].name, sp.get("n"), sp.get("median"), sp.get("q1"), sp.get("q3"), sp.get("cv"),
                   "、".join(sp.get("outliers", [])), fig.alliance[code]["value"],
                   *[fig.rows[c][code]["value"] if c in fig.rows else None for c in data.institutions]])
        if sp.get("outliers"):
            ws.cell(row=ws.max_row, column=8).fill = ALERT_FILL
    _widths(ws, {1: 28, 2: 28, 8: 20})


def _rules(ws: Worksheet, data: ReportData) -> None:
    _header(ws, ["规则", "标题", "命中处方数", "命中率", "药师认同率（分子/分母）", "药师认同率", "医生忽略率（分子/分母）", "医生忽略率"])
    for r in data.rules:
        ind = r["indicators"]
        ws.append([r["key"], r["label"], ind["hits"]["value"], ind["hit_rate"]["value"],
                   f"{ind['agreement_rate']['numerator']}/{ind['agreement_rate']['denominator']}",
                   ind["agreement_rate"]["value"],
                   f"{ind['override_rate']['numerator']}/{ind['override_rate']['denominator']}",
                   ind["override_rate"]["value"]])
        for col in (4, 6, 8):
            ws.cell(row=ws.max_row, column=col).number_format = "0.00%"
    _widths(ws, {1: 24, 2: 40, 5: 16, 7: 16})


def _monitoring(ws: Worksheet, monitoring: dict[str, Any]) -> None:
    _header(ws, ["机构编码", "机构名称", "监测项", "范围", "分子", "分母", "值", "近六个月均值", "下限（均值−2SD）",
                 "上限（均值+2SD）", "目标值", "提示"])
    flag_zh = {"above_target": "超过目标", "above_band": "高于波动范围", "below_band": "低于波动范围"}
    for inst in monitoring["institutions"]:
        for f in inst["figures"]:
            band = f["band"] or {}
            ws.append([inst["institution"], inst["name"], f["name"], f["type"] or "合计", f["numerator"], f["denominator"],
                       f["value"], band.get("mean"), band.get("low"), band.get("high"), f["target"],
                       "、".join(flag_zh[x] for x in f["flags"])])
            for col in (7, 8, 9, 10, 11):
                ws.cell(row=ws.max_row, column=col).number_format = "0.00%"
            if f["flags"]:
                ws.cell(row=ws.max_row, column=12).fill = ALERT_FILL
        for d in inst["monitored_drugs"]:
            band = d["band"] or {}
            ws.append([inst["institution"], inst["name"], f"重点监控药品：{d['name']}", "合计", d["prescriptions"], None,
                       d["prescriptions"], band.get("mean"), band.get("low"), band.get("high"), None,
                       "、".join(flag_zh[x] for x in d["flags"])])
            if d["flags"]:
                ws.cell(row=ws.max_row, column=12).fill = ALERT_FILL
    _widths(ws, {2: 28, 3: 36, 12: 20})


def _definitions(ws: Worksheet) -> None:
    _header(ws, ["指标编码", "指标名称", "类别", "分子", "分母", "定义", "来源"])
    section = {"A": "审方运行", "B": "规则效果", "C": "处方指标"}
    for ind in INDICATORS:
        ws.append([ind.code, ind.name, section[ind.section], ind.numerator, ind.denominator, ind.definition,
                   ind.source_label or "—"])
        for cell in ws[ws.max_row]:
            cell.alignment = Alignment(wrap_text=True, vertical="top")
    ws.append([])
    ws.append(["计数规则", "", "", "处方为一次提交的处方版本（一条审核记录）；修改后重新提交再计一张，幂等重放不计。"
               "按审核创建时间（医共体时区，默认 Asia/Shanghai）归入期间；药师决定、医生答复与 CDS 反馈迟到也计入该处方所在期间。"
               "门诊、急诊分开并合计报告。分母为 0 时值为空（null），不记为 0。"])
    _widths(ws, {1: 28, 2: 26, 3: 10, 4: 36, 5: 24, 6: 50, 7: 50})
