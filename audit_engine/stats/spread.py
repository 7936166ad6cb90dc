"""Homogenisation (同质化, INDICATORS.md D): the spread of one indicator across members.

Quartiles by linear interpolation between closest ranks (the same method as Excel's
QUARTILE.INC and ``percentile_cont``); CV = population standard deviation / mean (None
when the mean is 0 or fewer than two members have a value); outliers are members below
Q1 − 1.5·IQR or above Q3 + 1.5·IQR (Tukey's fences), looked for only among four or more
members. Members whose value is null (empty denominator) take no part.
"""

from __future__ import annotations

import statistics
from collections.abc import Mapping
from typing import Any

from audit_engine.stats.queries import percentile

MIN_FOR_OUTLIERS = 4


def spread_of(values: Mapping[str, float | None]) -> dict[str, Any]:
    """{median, q1, q3, cv, n, outliers: [member keys], low: [...], high: [...]} of member → value."""
    present = {k: float(v) for k, v in values.items() if v is not None}
    xs = sorted(present.values())
    if not xs:
        return {"n": 0, "median": None, "q1": None, "q3": None, "cv": None, "outliers": []}
    q1, med, q3 = percentile(xs, 0.25), percentile(xs, 0.5), percentile(xs, 0.75)
    assert q1 is not None and q3 is not None and med is not None
    mean = statistics.fmean(xs)
    cv = statistics.pstdev(xs) / mean if len(xs) >= 2 and mean != 0 else None
    outliers: list[str] = []
    if len(xs) >= MIN_FOR_OUTLIERS:
        iqr = q3 - q1
        lo, hi = q1 - 1.5 * iqr, q3 + 1.5 * iqr
        outliers = sorted(k for k, v in present.items() if v < lo or v > hi)
    return {
        "n": len(xs),
        "median": round(med, 6),
        "q1": round(q1, 6),
        "q3": round(q3, 6),
        "cv": None if cv is None else round(cv, 6),
        "outliers": outliers,
    }
