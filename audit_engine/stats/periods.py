"""Periods of the statistics: the alliance's time zone, and month / half-year / year ranges.

A review belongs to the period of its creation time *in the alliance's time zone*
(INDICATORS.md, counting rules). The zone is the setting ``AUDIT_STATS_TIMEZONE`` (default
Asia/Shanghai; an unknown name stops the service at start); the review's local day is recorded with the review, so changing the
variable later does not move reviews already recorded.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

from audit_engine.errors import InvalidRequestError
from audit_engine.settings import get_settings


def alliance_zone() -> ZoneInfo:
    """The alliance's time zone (the setting ``AUDIT_STATS_TIMEZONE``, validated at start)."""
    return get_settings().time_zone


def local_date(at_utc: datetime) -> date:
    """The alliance-local calendar day of a naive-UTC instant."""
    return at_utc.replace(tzinfo=UTC).astimezone(alliance_zone()).date()


def month_key(day: date) -> str:
    return f"{day.year:04d}-{day.month:02d}"


@dataclass(frozen=True, slots=True)
class Period:
    """An inclusive range of local days, with the label a report prints."""

    start: date
    end: date
    label: str

    @property
    def months(self) -> list[str]:
        out: list[str] = []
        y, m = self.start.year, self.start.month
        while (y, m) <= (self.end.year, self.end.month):
            out.append(f"{y:04d}-{m:02d}")
            y, m = (y + 1, 1) if m == 12 else (y, m + 1)
        return out


def _month_end(y: int, m: int) -> date:
    first_next = date(y + 1, 1, 1) if m == 12 else date(y, m + 1, 1)
    return first_next - timedelta(days=1)


def month_period(text: str, *, where: str = "month") -> Period:
    m = re.fullmatch(r"(\d{4})-(\d{2})", text or "")
    if not m or not 1 <= int(m.group(2)) <= 12:
        raise InvalidRequestError(where, f"月份应为 YYYY-MM（如 2026-11），收到 {text!r}")
    y, mo = int(m.group(1)), int(m.group(2))
    return Period(date(y, mo, 1), _month_end(y, mo), text)


def half_period(text: str, *, where: str = "half") -> Period:
    m = re.fullmatch(r"(\d{4})-H([12])", text or "")
    if not m:
        raise InvalidRequestError(where, f"半年应为 YYYY-H1 或 YYYY-H2（如 2026-H2），收到 {text!r}")
    y = int(m.group(1))
    return Period(date(y, 1, 1), date(y, 6, 30), text) if m.group(2) == "1" else Period(date(y, 7, 1), date(y, 12, 31), text)


def year_period(text: str, *, where: str = "year") -> Period:
    if not re.fullmatch(r"\d{4}", text or ""):
        raise InvalidRequestError(where, f"年份应为 YYYY（如 2026），收到 {text!r}")
    y = int(text)
    return Period(date(y, 1, 1), date(y, 12, 31), text)


def one_period(*, month: str | None = None, half: str | None = None, year: str | None = None) -> Period:
    """Exactly one of month, half, year."""
    given = [(k, v) for k, v in (("month", month), ("half", half), ("year", year)) if v is not None]
    if len(given) != 1:
        raise InvalidRequestError("month", "请给出 month=YYYY-MM、half=YYYY-H1|H2 或 year=YYYY 中的一个")
    kind, value = given[0]
    return {"month": month_period, "half": half_period, "year": year_period}[kind](value, where=kind)


def day_range(start: str, end: str) -> Period:
    """``from``/``to`` query parameters (inclusive local days)."""
    try:
        a, b = date.fromisoformat(start), date.fromisoformat(end)
    except (TypeError, ValueError):
        raise InvalidRequestError("from", f"日期应为 YYYY-MM-DD，收到 from={start!r} to={end!r}") from None
    if b < a:
        raise InvalidRequestError("to", f"结束日期 {end} 早于开始日期 {start}")
    if (b - a).days > 3 * 366:
        raise InvalidRequestError("to", "查询区间最长三年")
    return Period(a, b, f"{a.isoformat()}~{b.isoformat()}")
