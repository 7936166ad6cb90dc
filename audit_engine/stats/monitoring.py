"""用药监测 (medication monitoring, INDICATORS.md F): per institution and month, the rates the
alliance watches and the use of the key monitored drugs, each flagged when it leaves the
member's own band or its target.

* Figures: outpatient and emergency antimicrobial rates (apart: their targets differ), the
  injection rate, the emergency IV-steroid rate, and per key monitored drug the number of
  prescriptions holding it.
* **Band**: mean ± 2 SD (sample standard deviation) of the member's own values over the six
  months before the month; computed once at least three of those months have a value.
* **Targets**: outpatient antimicrobial ≤ 20%, emergency ≤ 40% (``definitions.TARGETS``).
* **Key monitored drugs**: the alliance's table ``AUDIT_MONITORED_DRUGS`` (a CSV with
  ``name`` and ``来源`` columns), by default the shipped seed ``data/monitored_drugs.csv``
  (第一批国家重点监控合理用药药品目录, 国卫办医函〔2019〕558号). An item matches the longest
  listed name its drug name contains (the dictionary's name, or the name as written for a
  drug the dictionary cannot identify: most of these drugs are not in the county dictionary).
"""

from __future__ import annotations

import csv
import statistics
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Session

from audit_engine.auth import Principal, visible_institution_ids
from audit_engine.errors import InvalidRequestError
from audit_engine.settings import get_settings
from audit_engine.stats import queries as q
from audit_engine.stats.definitions import BY_CODE, TARGETS
from audit_engine.stats.indicators import institution_filter
from audit_engine.stats.periods import Period, month_period

SEED = Path(__file__).parent / "data" / "monitored_drugs.csv"
BAND_MONTHS = 6
BAND_MIN_MONTHS = 3
# (indicator code, visit type or None for both) in the order reports show them
FIGURES: tuple[tuple[str, str | None], ...] = (
    ("antimicrobial_rate", "门诊"),
    ("antimicrobial_rate", "急诊"),
    ("injection_rate", None),
    ("emergency_iv_steroid_rate", None),
)


@dataclass(frozen=True, slots=True)
class MonitoredDrug:
    name: str
    category: str
    source: str


def monitored_drugs(path: str | Path | None = None) -> tuple[MonitoredDrug, ...]:
    """The key monitored drugs table (``path``, else the setting ``AUDIT_MONITORED_DRUGS``, else the shipped seed)."""
    file = Path(path or get_settings().monitored_drugs or SEED)
    try:
        with file.open(encoding="utf-8", newline="") as fh:
            reader = csv.DictReader(fh)
            out = []
            for line, row in enumerate(reader, 2):
                name = (row.get("name") or "").strip()
                source = (row.get("来源") or "").strip()
                if not name or not source:
                    raise InvalidRequestError(f"{file}:{line}:1", "重点监控药品表每行须有 name 与 来源")
                out.append(MonitoredDrug(name, (row.get("category") or "").strip(), source))
    except OSError as exc:
        raise InvalidRequestError(str(file), f"无法读取重点监控药品表：{exc}") from exc
    return tuple(out)


def match_monitored(drug_name: str | None, names: Sequence[str]) -> str | None:
    """The longest listed name that ``drug_name`` contains, or None."""
    if not drug_name:
        return None
    hits = [n for n in names if n in drug_name]
    return max(hits, key=len) if hits else None


def _previous_months(month: str, n: int) -> list[str]:
    y, m = int(month[:4]), int(month[5:])
    out = []
    for _ in range(n):
        y, m = (y - 1, 12) if m == 1 else (y, m - 1)
        out.append(f"{y:04d}-{m:02d}")
    return list(reversed(out))


def band_of(history: Sequence[float | None]) -> dict[str, Any] | None:
    xs = [float(v) for v in history if v is not None]
    if len(xs) < BAND_MIN_MONTHS:
        return None
    mean = statistics.fmean(xs)
    sd = statistics.stdev(xs)
    return {"mean": round(mean, 6), "sd": round(sd, 6), "low": round(mean - 2 * sd, 6),
            "high": round(mean + 2 * sd, 6), "months": len(xs)}


def _flags(value: float | None, band: dict[str, Any] | None, target: float | None) -> list[str]:
    flags: list[str] = []
    if value is None:
        return flags
    if target is not None and value > target:
        flags.append("above_target")
    if band is not None:
        if value > band["high"] + 1e-12:
            flags.append("above_band")
        elif value < band["low"] - 1e-12:
            flags.append("below_band")
    return flags


_FLAG_ZH = {"above_target": "超过目标值", "above_band": "高于本机构近六个月波动范围",
            "below_band": "低于本机构近六个月波动范围"}


def monitoring(
    s: Session, *, principal: Principal, month: str, institution: str | None = None,
    drugs: Sequence[MonitoredDrug] | None = None,
) -> dict[str, Any]:
    """The monitoring table of one month for the caller's institutions, with alerts."""
    target_period = month_period(month)
    months = [*_previous_months(month, BAND_MONTHS), month]
    start = month_period(months[0]).start
    visible = visible_institution_ids(s, principal)
    ids = institution_filter(s, institution, visible)
    scope = q.Scope(Period(start, target_period.end, "monitoring"), ids, None)
    per = q.count_slices(s, scope, ["month", "institution", "visit_type"])
    # (institution, month) -> (figure) -> value dict
    grouped: dict[tuple[int, str], dict[str | None, q.Counts]] = {}
    for (m, iid, vt), c in per.items():
        slot = grouped.setdefault((iid, m), {})
        slot[vt] = c
    drug_list = tuple(drugs if drugs is not None else monitored_drugs())
    names = [d.name for d in drug_list]
    drug_counts = _monitored_counts(s, scope, names)
    institutions = sorted({iid for iid, _ in grouped} | {iid for iid, _, _ in drug_counts})
    labels = q.institution_names(s, institutions)
    rows: list[dict[str, Any]] = []
    alerts: list[dict[str, Any]] = []
    for iid in institutions:
        code, name = labels.get(iid, (str(iid), str(iid)))

        def value(fig: tuple[str, str | None], m: str, iid: int = iid) -> dict[str, Any]:
            slot = grouped.get((iid, m), {})
            code_, vt = fig
            c = q.total(v for k, v in slot.items() if vt is None or k == vt)
            return q.values_of(c)[code_]

        figures = []
        for fig in FIGURES:
            now = value(fig, month)
            band = band_of([value(fig, m)["value"] for m in months[:-1]])
            target = TARGETS.get(fig)
            flags = _flags(now["value"], band, target)
            figures.append({"code": fig[0], "name": BY_CODE[fig[0]].name, "type": fig[1], **now, "band": band,
                            "target": target, "flags": flags})
            for f in flags:
                alerts.append({"institution": code, "institution_name": name, "code": fig[0], "type": fig[1],
                               "value": now["value"], "flag": f,
                               "message": f"{name}{fig[1] or ''}{BY_CODE[fig[0]].name} {now['value']:.1%}：{_FLAG_ZH[f]}"})
        drugs_out = []
        for d in drug_list:
            history = [drug_counts.get((iid, m, d.name), 0) for m in months[:-1]]
            now_n = drug_counts.get((iid, month, d.name), 0)
            months_with_data = [m for m in months[:-1] if grouped.get((iid, m))]
            band = band_of([drug_counts.get((iid, m, d.name), 0) for m in months_with_data])
            flags = _flags(float(now_n), band, None) if (now_n or any(history)) else []
            if now_n or any(history):
                drugs_out.append({"name": d.name, "category": d.category, "prescriptions": now_n,
                                  "history": dict(zip(months[:-1], history, strict=True)), "band": band,
                                  "flags": flags})
            for f in flags:
                alerts.append({"institution": code, "institution_name": name, "code": "monitored_drug",
                               "drug": d.name, "type": None, "value": now_n, "flag": f,
                               "message": f"{name}重点监控药品{d.name} {now_n} 张处方：{_FLAG_ZH[f]}"})
        rows.append({"institution": code, "name": name, "figures": figures, "monitored_drugs": drugs_out})
    return {
        "month": month,
        "band_months": months[:-1],
        "institutions": rows,
        "alerts": alerts,
        "monitored_list": [{"name": d.name, "category": d.category, "source": d.source} for d in drug_list],
    }


def _monitored_counts(s: Session, scope: q.Scope, names: Sequence[str]) -> dict[tuple[int, str, str], int]:
    """(institution, month, monitored name) → prescriptions holding such an item."""
    if not names:
        return {}
    items = q.ITEMS
    rows = s.execute(
        sa.select(items.c.institution_id, q.RS.c.local_month, items.c.drug_name, items.c.review_id)
        .select_from(items.join(q.RS, q.RS.c.review_id == items.c.review_id))
        .where(*q._flt(items, scope), sa.or_(*[items.c.drug_name.contains(n, autoescape=True) for n in names]))
    ).all()
    seen: set[tuple[str, str]] = set()
    out: dict[tuple[int, str, str], int] = {}
    for r in rows:
        hit = match_monitored(r.drug_name, names)
        if hit is None or (r.review_id, hit) in seen:
            continue
        seen.add((r.review_id, hit))
        key = (r.institution_id, r.local_month, hit)
        out[key] = out.get(key, 0) + 1
    return out
