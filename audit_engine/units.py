"""Units of measure shared by the rule language and the fact normaliser.

A unit belongs to one dimension and has a factor to that dimension's base unit.
Conversion between two units of the same dimension is ``value * factor(a) / factor(b)``.
Chinese spellings are aliases of the same unit.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Unit:
    """A unit: its canonical symbol, its dimension and its factor to the dimension's base unit."""

    symbol: str
    dimension: str
    factor: float


# dimension -> base unit symbol
BASE_UNITS: dict[str, str] = {
    "mass": "mg",
    "volume": "mL",
    "activity": "IU",
    "time": "天",
    "age_years": "岁",
    "age_months": "月",
    "mass_per_kg": "mg/kg",
    "frequency": "次/日",
    "egfr": "mL/min/1.73m²",
    "clearance": "mL/min",
    "length": "cm",
    "count": "片",
}

_UNITS: list[tuple[tuple[str, ...], str, float]] = [
    (("mg", "毫克"), "mass", 1.0),
    (("g", "克"), "mass", 1000.0),
    (("µg", "ug", "mcg", "μg", "微克"), "mass", 0.001),
    (("kg", "千克", "公斤"), "mass", 1_000_000.0),
    (("mL", "ml", "毫升"), "volume", 1.0),
    (("L", "l", "升"), "volume", 1000.0),
    (("IU", "U", "单位", "国际单位"), "activity", 1.0),
    (("万IU", "万U", "万单位"), "activity", 10_000.0),
    (("天", "日", "d"), "time", 1.0),
    (("周", "wk"), "time", 7.0),
    (("h", "小时"), "time", 1.0 / 24.0),
    (("岁", "y", "a"), "age_years", 1.0),
    (("月", "mo"), "age_months", 1.0),
    (("mg/kg", "毫克/千克"), "mass_per_kg", 1.0),
    (("µg/kg", "ug/kg", "mcg/kg"), "mass_per_kg", 0.001),
    (("g/kg",), "mass_per_kg", 1000.0),
    (("次/日", "次/天", "/d"), "frequency", 1.0),
    (("mL/min/1.73m²", "mL/min/1.73m2", "ml/min/1.73m2"), "egfr", 1.0),
    (("mL/min", "ml/min"), "clearance", 1.0),
    (("cm", "厘米"), "length", 1.0),
    (("m", "米"), "length", 100.0),
    (("片", "粒", "袋", "支", "丸", "tab", "cap"), "count", 1.0),
]

UNITS: dict[str, Unit] = {
    alias: Unit(aliases[0], dimension, factor)
    for aliases, dimension, factor in _UNITS
    for alias in aliases
}


class UnitError(ValueError):
    """Two units cannot be converted into each other, or a unit is not known."""


def lookup(symbol: str) -> Unit:
    """The unit spelled ``symbol`` (any alias); raises UnitError for an unknown spelling."""
    try:
        return UNITS[symbol]
    except KeyError:
        raise UnitError(f"unknown unit {symbol!r}") from None


def convert(value: float, from_unit: str, to_unit: str) -> float:
    """``value`` in ``from_unit`` expressed in ``to_unit``; both must share a dimension."""
    a, b = lookup(from_unit), lookup(to_unit)
    if a.dimension != b.dimension:
        raise UnitError(f"cannot convert {a.symbol} ({a.dimension}) to {b.symbol} ({b.dimension})")
    return value * a.factor / b.factor


def known_units() -> list[str]:
    """Every accepted spelling, for "did you mean" suggestions."""
    return sorted(UNITS)
