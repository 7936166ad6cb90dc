"""Reading doses, frequencies, routes and durations as written by HIS vendors.

Pure functions over plain values (no FHIR models), so they can be property-tested:

* :func:`dose_unit` maps a UCUM code or a written unit (mg, 毫克, {tbl}, 片, 万U ...) to a
  unit symbol of ``audit_engine.units``;
* :func:`frequency_from_text` reads qd / bid / tid / q8h / qn / prn / st / 每日三次 /
  一日2次 / 每8小时一次 / 3次/日 ...;
* :func:`frequency_from_repeat` reads FHIR ``Timing.repeat`` (frequency[Max] per
  period periodUnit, or ``when`` / ``timeOfDay`` lists);
* :func:`route_from_code` / :func:`route_from_text` give the Chinese route of the
  fact catalogue (口服 静滴 静注 肌注 皮下 外用 ...);
* :func:`duration_days` converts a Duration to days.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass

from audit_engine import schema, units

# --- units --------------------------------------------------------------------------------

# UCUM codes and vendor spellings that are not aliases in audit_engine.units.
_UNIT_ALIASES: dict[str, str] = {
    "[iU]": "IU", "[IU]": "IU", "iu": "IU", "[U]": "U", "u": "U", "unit": "U", "units": "U", "UNT": "U",
    "10*4.[iU]": "万IU", "10*4.[IU]": "万IU", "万iu": "万IU", "万国际单位": "万IU",
    "MG": "mg", "G": "g", "UG": "µg", "MCG": "µg", "ML": "mL", "gm": "g",
    "{tbl}": "片", "{tablet}": "片", "{tablets}": "片", "tablet": "片", "tablets": "片", "TAB": "片",
    "{tab}": "片", "{pill}": "片", "pill": "片", "{capsule}": "粒", "{cap}": "粒", "capsule": "粒",
    "capsules": "粒", "CAP": "粒", "颗": "粒", "{bag}": "袋", "包": "袋", "{amp}": "支", "ampoule": "支",
    "{vial}": "支", "vial": "支", "瓶": "支", "枚": "粒", "{pellet}": "丸",
}


def dose_unit(unit: str | None) -> str | None:
    """The ``audit_engine.units`` symbol for a written unit, or None when it is not known."""
    if unit is None:
        return None
    u = unit.strip()
    if not u:
        return None
    u = _UNIT_ALIASES.get(u, _UNIT_ALIASES.get(u.lower(), u))
    try:
        return units.lookup(u).symbol
    except units.UnitError:
        try:
            return units.lookup(u.lower()).symbol
        except units.UnitError:
            return None


# --- frequency ----------------------------------------------------------------------------

DAYS_PER_UNIT: dict[str, float] = {"s": 1 / 86400, "min": 1 / 1440, "h": 1 / 24, "d": 1.0, "wk": 7.0,
                                   "mo": 30.0, "a": 365.0}

_ZH_DIGITS = {"一": 1, "二": 2, "两": 2, "俩": 2, "三": 3, "四": 4, "五": 5, "六": 6, "七": 7, "八": 8,
              "九": 9, "十": 10, "十二": 12, "半": 0.5}
_NUM = r"(\d+(?:\.\d+)?|十二|[一二两俩三四五六七八九十半])"


def _num(text: str) -> float:
    return float(_ZH_DIGITS[text]) if text in _ZH_DIGITS else float(text)


@dataclass(frozen=True, slots=True)
class FrequencyReading:
    """What a frequency expression says: administrations per day, as-needed, a single dose."""

    per_day: float | None
    prn: bool = False
    once: bool = False  # st / stat / 立即 / 顿服: one administration


# Abbreviations, matched as whole tokens after lower-casing and removing dots.
_ABBREV: dict[str, float] = {
    "qd": 1, "od": 1, "daily": 1, "qam": 1, "qpm": 1, "qm": 1, "qn": 1, "qhs": 1, "hs": 1, "am": 1, "pm": 1,
    "bed": 1, "bid": 2, "tid": 3, "qid": 4, "qod": 0.5, "qad": 0.5, "qw": 1 / 7, "qwk": 1 / 7, "wk": 1 / 7,
    "biw": 2 / 7, "tiw": 3 / 7, "qmo": 1 / 30,
}
_ONCE_TOKENS = ("st", "stat", "once")
_ONCE_ZH = ("立即", "即刻", "顿服", "临时一次", "单次")
_PRN = ("prn", "必要时", "需要时", "按需", "疼痛时", "发热时")

_TEXT_PATTERNS: tuple[tuple[re.Pattern[str], str], ...] = (
    (re.compile(r"(?<![a-z])q\s*(\d+(?:\.\d+)?)\s*h(?![a-z])"), "q_hours"),
    (re.compile(r"(?<![a-z])q\s*(\d+)\s*d(?![a-z])"), "q_days"),
    (re.compile(r"每\s*" + _NUM + r"\s*(?:个)?(?:小时|h(?![a-z]))\s*(?:" + _NUM + r"\s*次)?"), "zh_hours"),
    (re.compile(r"(?:每|一|1)\s*(?:日|天)\s*" + _NUM + r"\s*次"), "zh_per_day"),
    (re.compile(r"(?<![\d.])" + _NUM + r"\s*次\s*/\s*(?:日|天|d)"), "per_day_slash"),
    (re.compile(r"(?:每|一)\s*(?:周|星期)\s*" + _NUM + r"\s*次"), "zh_per_week"),
    (re.compile(r"(?<![\d.])" + _NUM + r"\s*次\s*/\s*(?:周|星期|wk|w)(?![a-z])"), "zh_per_week"),
    (re.compile(r"每\s*" + _NUM + r"\s*(?:周|星期)\s*" + _NUM + r"\s*次"), "zh_every_n_weeks"),
    (re.compile(r"(?:每|一)\s*(?:个)?\s*月\s*" + _NUM + r"\s*次|(?<![\d.])" + _NUM + r"\s*次\s*/\s*月"), "zh_per_month"),
    (re.compile(r"(?:每|一)\s*年\s*" + _NUM + r"\s*次|(?<![\d.])" + _NUM + r"\s*次\s*/\s*年"), "zh_per_year"),
    (re.compile(r"每\s*" + _NUM + r"\s*(?:日|天)\s*" + _NUM + r"\s*次"), "zh_every_n_days"),
    (re.compile(r"隔日\s*(?:一|1)?\s*次|隔天\s*(?:一|1)?\s*次"), "every_other_day"),
    (re.compile(r"每晚|每早|每日睡前|睡前|晨起|每晨"), "nightly"),
    (re.compile(r"早晚各\s*(?:一|1)\s*次"), "twice"),
    (re.compile(r"三餐(?:前|后|时)"), "thrice"),
)


def frequency_from_text(text: str | None) -> FrequencyReading | None:
    """Administrations per day read from free text; None when the text says nothing recognisable.

    A text naming two different frequencies (``bid 每日三次``) is ambiguous and also gives None.
    """
    if not text:
        return None
    t = text.strip().lower()
    if not t:
        return None
    found: set[float] = set()
    prn = any(p in t for p in _PRN)
    tokens = re.findall(r"[a-z]+(?:\.[a-z]+)*\.?", t)
    once = any(o in t for o in _ONCE_ZH) or any(tok.replace(".", "") in _ONCE_TOKENS for tok in tokens)
    for tok in tokens:
        key = tok.replace(".", "")
        if key in _ABBREV:
            found.add(float(_ABBREV[key]))
    for pattern, kind in _TEXT_PATTERNS:
        for m in pattern.finditer(t):
            value = _pattern_value(kind, m)
            if value is not None:
                found.add(value)
    if len(found) > 1:
        return None
    if found:
        return FrequencyReading(found.pop(), prn=prn)
    if once:
        return FrequencyReading(1.0, prn=prn, once=True)
    if prn:
        return FrequencyReading(None, prn=True)
    return None


def _pattern_value(kind: str, m: re.Match[str]) -> float | None:
    g = [x for x in m.groups() if x is not None]
    if kind in ("q_hours", "zh_hours"):
        hours = _num(g[0])
        return 24.0 / hours if hours > 0 else None
    if kind == "q_days":
        days = _num(g[0])
        return 1.0 / days if days > 0 else None
    if kind in ("zh_per_day", "per_day_slash"):
        return _num(g[0])
    if kind == "zh_per_week":
        return _num(g[0]) / 7.0
    if kind == "zh_every_n_weeks":
        weeks = _num(g[0])
        return _num(g[1]) / (7.0 * weeks) if weeks > 0 else None
    if kind == "zh_per_month":
        return _num(g[0]) / 30.0
    if kind == "zh_per_year":
        return _num(g[0]) / 365.0
    if kind == "zh_every_n_days":
        days = _num(g[0])
        return _num(g[1]) / days if days > 0 else None
    return {"every_other_day": 0.5, "nightly": 1.0, "twice": 2.0, "thrice": 3.0}.get(kind)


# HL7 EventTiming codes that name one distinct time of day (generic meal codes do not).
_WHEN_SPECIFIC = frozenset({
    "MORN", "MORN.early", "MORN.late", "NOON", "AFT", "AFT.early", "AFT.late", "EVE", "EVE.early",
    "EVE.late", "NIGHT", "PHS", "HS", "WAKE", "ACM", "ACD", "ACV", "PCM", "PCD", "PCV", "CM", "CD", "CV",
})


def frequency_from_repeat(
    frequency: int | None,
    frequency_max: int | None,
    period: float | None,
    period_unit: str | None,
    when: list[str] | None = None,
    time_of_day: list[str] | None = None,
) -> float | None:
    """Administrations per day from Timing.repeat; the maximum when a range is given (conservative)."""
    if period is not None and period_unit in DAYS_PER_UNIT and period > 0:
        n = frequency_max if frequency_max is not None else (frequency if frequency is not None else 1)
        return float(n) / (float(period) * DAYS_PER_UNIT[period_unit])
    times = len(set(time_of_day or ()))
    specific = len({w for w in (when or ()) if w in _WHEN_SPECIFIC})
    per_day = max(times, specific)
    if per_day and frequency is None:
        return float(per_day)
    return None


# HL7 TimingAbbreviation codes (http://terminology.hl7.org/CodeSystem/v3-GTSAbbreviation).
_TIMING_CODES: dict[str, float] = {
    "QD": 1, "BID": 2, "TID": 3, "QID": 4, "AM": 1, "PM": 1, "BED": 1, "QOD": 0.5, "WK": 1 / 7, "MO": 1 / 30,
    "Q1H": 24, "Q2H": 12, "Q3H": 8, "Q4H": 6, "Q6H": 4, "Q8H": 3, "Q12H": 2, "Q24H": 1,
}


def frequency_from_code(code: str | None) -> FrequencyReading | None:
    """A Timing.code (BID, Q8H, 或 一日三次 in a local code's text) as administrations per day."""
    if not code:
        return None
    known = _TIMING_CODES.get(code.strip().upper())
    if known is not None:
        return FrequencyReading(float(known))
    return frequency_from_text(code)


# --- route --------------------------------------------------------------------------------

# SNOMED CT route codes (http://snomed.info/sct) and HL7 v3 RouteOfAdministration codes.
_ROUTE_CODES: dict[str, str] = {
    "26643006": "口服", "PO": "口服", "ORAL": "口服", "ORALTAB": "口服", "ORALCAP": "口服",
    "47625008": "静注", "IV": "静注", "IVINJ": "静注", "IVPUSH": "静注", "IVINJBOL": "静注",
    "IVINFUS": "静滴", "IVDRIP": "静滴", "IVDRIPB": "静滴", "IVINFUSION": "静滴",
    "78421000": "肌注", "IM": "肌注", "IMINJ": "肌注",
    "34206005": "皮下", "SC": "皮下", "SQ": "皮下", "SUBQ": "皮下", "SCINJ": "皮下",
    "6064005": "外用", "45890007": "外用", "TOP": "外用", "TOPICAL": "外用", "TRNSDERM": "外用", "DERM": "外用",
    "447694001": "吸入", "18679011000001101": "吸入", "IPINHL": "吸入", "NASINHL": "吸入", "ORINHL": "吸入",
    "INHL": "吸入", "37839007": "舌下", "SL": "舌下", "54471007": "含服", "BUC": "含服",
    "37161004": "直肠", "PR": "直肠", "RECTAL": "直肠", "54485002": "滴眼", "OPTHALTA": "滴眼", "OPHTHALMIC": "滴眼",
    "46713006": "滴鼻", "NASAL": "滴鼻", "NASINSTIL": "滴鼻", "16857009": "外用", "PV": "外用",
}

# Longest first, so 静脉滴注 wins over 静脉 and 舌下含服 over 含服.
_ROUTE_WORDS: tuple[tuple[str, str], ...] = (
    ("静脉滴注", "静滴"), ("静脉点滴", "静滴"), ("静脉输注", "静滴"), ("静滴", "静滴"), ("输液", "静滴"),
    ("静脉注射", "静注"), ("静脉推注", "静注"), ("静推", "静注"), ("静注", "静注"),
    ("肌内注射", "肌注"), ("肌肉注射", "肌注"), ("肌注", "肌注"),
    ("皮下注射", "皮下"), ("皮下", "皮下"), ("雾化吸入", "吸入"), ("吸入", "吸入"), ("雾化", "吸入"),
    ("舌下含服", "舌下"), ("舌下", "舌下"), ("含服", "含服"), ("含化", "含服"), ("嚼服", "口服"),
    ("水煎服", "煎服"), ("煎服", "煎服"), ("口服", "口服"), ("冲服", "口服"), ("吞服", "口服"),
    ("滴眼", "滴眼"), ("点眼", "滴眼"), ("滴鼻", "滴鼻"), ("纳肛", "直肠"), ("塞肛", "直肠"), ("灌肠", "直肠"),
    ("直肠", "直肠"), ("外用", "外用"), ("外敷", "外用"), ("外涂", "外用"), ("涂抹", "外用"), ("贴敷", "外用"),
    ("intravenous infusion", "静滴"), ("intravenous", "静注"), ("intramuscular", "肌注"),
    ("subcutaneous", "皮下"), ("sublingual", "舌下"), ("inhalation", "吸入"), ("topical", "外用"),
    ("transdermal", "外用"), ("rectal", "直肠"), ("ophthalmic", "滴眼"), ("nasal", "滴鼻"), ("oral", "口服"),
    ("by mouth", "口服"),
)
_ROUTE_TOKENS: dict[str, str] = {"po": "口服", "iv": "静注", "ivgtt": "静滴", "ivdrip": "静滴", "im": "肌注",
                                 "ih": "皮下", "sc": "皮下", "sl": "舌下", "pr": "直肠", "inh": "吸入"}


def route_from_code(code: str | None) -> str | None:
    """The route of a SNOMED CT or HL7 v3 route code."""
    if not code:
        return None
    return _ROUTE_CODES.get(code.strip()) or _ROUTE_CODES.get(code.strip().upper())


def route_from_text(text: str | None) -> str | None:
    """The route named in free text (口服, 静脉滴注, ivgtt, intravenous ...), or None."""
    if not text:
        return None
    t = text.strip().lower()
    if t in ("口服", "静滴", "静注", "肌注", "皮下", "外用", "吸入", "舌下", "直肠", "滴眼", "滴鼻", "含服", "煎服", "其他"):
        return t
    for word, route in _ROUTE_WORDS:
        if word in t:
            return route
    for tok in re.findall(r"[a-z]+", t):
        if tok in _ROUTE_TOKENS:
            return _ROUTE_TOKENS[tok]
    return None


# --- durations ----------------------------------------------------------------------------

_DURATION_UNITS: dict[str, float] = {
    **DAYS_PER_UNIT, "day": 1.0, "days": 1.0, "天": 1.0, "日": 1.0, "week": 7.0, "weeks": 7.0, "周": 7.0,
    "month": 30.0, "months": 30.0, "月": 30.0, "hour": 1 / 24, "hours": 1 / 24, "小时": 1 / 24,
    "year": 365.0, "年": 365.0,
}


def duration_days(value: float | None, unit: str | None) -> float | None:
    """A Duration (value + UCUM code or written unit) in days; None when it cannot be read."""
    if value is None or unit is None:
        return None
    factor = _DURATION_UNITS.get(unit.strip()) or _DURATION_UNITS.get(unit.strip().lower())
    if factor is None or value < 0:
        return None
    return float(value) * factor


# dimension -> flat fact key, as the catalogue defines the multi-unit dose fields
def _variants(name: str) -> dict[str, str]:
    fld = schema.field_of("item", name)
    assert fld is not None and fld.variants, name
    return fld.variants


DOSE_KEYS = _variants("dose")
DAILY_DOSE_KEYS = _variants("daily_dose")


def dose_facts(dose: Mapping[str, float], daily: Mapping[str, float], weight_kg: float | None) -> dict[str, float]:
    """The item fact keys of a dose: ``dose_*`` and ``daily_dose_*`` per dimension (values in
    the dimension's base unit, by ``schema``'s variants), and per-kg doses for a mass dose
    when the weight is known. Values are rounded to 6 decimals, so float noise never decides
    a comparison at a limit."""
    out = {DOSE_KEYS[dim]: round(v, 6) for dim, v in dose.items()}
    out.update({DAILY_DOSE_KEYS[dim]: round(v, 6) for dim, v in daily.items()})
    if weight_kg is not None and weight_kg > 0 and "mass" in dose:
        out["dose_per_kg"] = round(dose["mass"] / weight_kg, 6)
        if "mass" in daily:
            out["daily_dose_per_kg"] = round(daily["mass"] / weight_kg, 6)
    return out
