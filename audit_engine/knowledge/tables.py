"""The knowledge tables the seed rules read: typed, validated, indexed by their key columns.

Each table in ``rulebase/tables`` has a :class:`TableSpec` here that names its columns, their
kinds and its key. :func:`load_tables` reads every file, checks every cell (numbers, enum
values, ICD-10 prefixes, non-empty ``来源``) and checks that every drug, ingredient, class
or herb it names is in the drug dictionary's vocabulary, with a "did you mean" hint. All
problems are raised together as one :class:`audit_engine.errors.RulebaseError`.

The column layouts are documented for rule authors in ``rulebase/tables/SOURCES.md``.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from audit_engine.knowledge.csvio import Collector, Row, did_you_mean, read_rows
from audit_engine.knowledge.dictionary import DrugDictionary, default_tables_dir, load_dictionary
from audit_engine.schema import ANTIMICROBIAL_GRADES, CONTROL_CLASSES, INSTITUTION_LEVELS, POPULATIONS

Kind = Literal["name", "herb", "level", "number", "text", "source", "enum", "icd", "target"]
ICD_RE = re.compile(r"^[A-Z]\d{2}(\.\d{1,2})?$")


@dataclass(frozen=True, slots=True)
class Column:
    """One column: ``name`` (header), ``kind`` and whether an empty cell is allowed."""

    name: str
    kind: Kind
    optional: bool = False
    values: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class TableSpec:
    """A table's file, columns and key; ``pair`` tables hold unordered pairs in their key."""

    name: str
    file: str
    columns: tuple[Column, ...]
    key: tuple[str, ...]
    pair: bool = False


def _c(name: str, kind: Kind, optional: bool = False, values: Iterable[str] = ()) -> Column:
    return Column(name, kind, optional, tuple(values))


DISPOSITION = ("禁用", "慎用", "限量")
LEVEL = _c("等级", "level")
SOURCE = _c("来源", "source")
NOTE = _c("说明", "text")

SPECS: tuple[TableSpec, ...] = (
    TableSpec("剂量上限", "dose_limits.csv", (
        _c("药品", "name"), _c("人群", "enum", values=POPULATIONS), _c("单次上限", "number", True),
        _c("日上限", "number", True), _c("单位", "enum", True, ("mg", "IU", "mL")),
        _c("单次上限每公斤", "number", True), _c("日上限每公斤", "number", True), SOURCE), ("药品", "人群")),
    TableSpec("肾功能", "renal.csv", (
        _c("药品", "name"), _c("处置", "enum", values=DISPOSITION), _c("eGFR低于", "number"),
        _c("日上限", "number", True), _c("单位", "enum", True, ("mg", "IU", "mL")), LEVEL, NOTE, SOURCE),
        ("药品", "处置")),
    TableSpec("肝功能", "hepatic.csv", (
        _c("药品", "name"), _c("处置", "enum", values=("禁用", "慎用")), LEVEL, NOTE, SOURCE), ("药品",)),
    TableSpec("老年用药", "elderly.csv", (
        _c("药品", "name"), _c("处置", "enum", values=("禁用", "慎用")), LEVEL, NOTE, SOURCE), ("药品",)),
    TableSpec("儿童禁忌", "pediatric.csv", (
        _c("药品", "name"), _c("年龄低于", "number"), _c("年龄单位", "enum", values=("岁", "月", "天")),
        LEVEL, NOTE, SOURCE), ("药品",)),
    TableSpec("妊娠哺乳", "pregnancy_lactation.csv", (
        _c("药品", "name"), _c("人群", "enum", values=("妊娠", "哺乳")), _c("处置", "enum", values=DISPOSITION),
        LEVEL, NOTE, SOURCE), ("药品", "人群")),
    TableSpec("过敏交叉", "allergy_cross.csv", (
        _c("过敏原", "name"), _c("药品类别", "name"), _c("处置", "enum", values=DISPOSITION), LEVEL, NOTE, SOURCE),
        ("过敏原", "药品类别")),
    TableSpec("药物诊断禁忌", "drug_diagnosis.csv", (
        _c("药品", "name"), _c("ICD前缀", "icd"), _c("疾病", "text"), _c("处置", "enum", values=DISPOSITION),
        LEVEL, NOTE, SOURCE), ("药品", "ICD前缀")),
    TableSpec("重复用药", "duplicate_classes.csv", (
        _c("类别甲", "name"), _c("类别乙", "name"), LEVEL, NOTE, SOURCE), ("类别甲", "类别乙"), pair=True),
    TableSpec("相互作用", "interactions.csv", (
        _c("成分甲", "name"), _c("成分乙", "name"), LEVEL, _c("机制", "text"), _c("建议", "text"), SOURCE),
        ("成分甲", "成分乙"), pair=True),
    TableSpec("相互作用剂量", "interaction_dose_limits.csv", (
        _c("成分甲", "name"), _c("成分乙", "name"), _c("甲日剂量上限", "number"), _c("单位", "enum", values=("mg",)),
        LEVEL, NOTE, SOURCE), ("成分甲", "成分乙")),
    TableSpec("配伍禁忌", "iv_incompatibility.csv", (
        _c("药品甲", "name"), _c("药品乙", "name"), LEVEL, NOTE, SOURCE), ("药品甲", "药品乙"), pair=True),
    TableSpec("中药配伍禁忌", "tcm_incompatibility.csv", (
        _c("药材甲", "herb"), _c("药材乙", "herb"), _c("类型", "enum", values=("十八反", "十九畏")), LEVEL, NOTE, SOURCE),
        ("药材甲", "药材乙"), pair=True),
    TableSpec("中药妊娠禁忌", "tcm_pregnancy.csv", (
        _c("药材", "herb"), _c("处置", "enum", values=("禁用", "慎用")), LEVEL, NOTE, SOURCE), ("药材",)),
    TableSpec("毒性药材剂量", "toxic_herb_doses.csv", (
        _c("药材", "herb"), _c("日下限", "number"), _c("日上限", "number"), _c("单位", "enum", values=("g",)),
        LEVEL, NOTE, SOURCE), ("药材",)),
    TableSpec("机构限制", "institution_restrictions.csv", (
        _c("机构级别", "enum", values=INSTITUTION_LEVELS),
        _c("对象类型", "enum", values=("抗菌级别", "管制类别", "类别", "药品")), _c("对象", "target"),
        LEVEL, NOTE, SOURCE), ("机构级别", "对象类型", "对象")),
    TableSpec("麻精天数", "controlled_limits.csv", (
        _c("管制类别", "enum", values=CONTROL_CLASSES), _c("剂型分类", "enum", values=("注射剂", "缓控释制剂", "其他剂型")),
        _c("癌痛或慢性痛", "enum", values=("是", "否")), _c("天数上限", "number"), NOTE, SOURCE),
        ("管制类别", "剂型分类", "癌痛或慢性痛")),
)
SPEC_BY_NAME: dict[str, TableSpec] = {s.name: s for s in SPECS}


@dataclass(frozen=True)
class Table:
    """Rows of one table (typed: numbers are float, levels int, empty optional cells None)."""

    spec: TableSpec
    rows: tuple[dict[str, Any], ...]
    index: dict[tuple[str, ...], dict[str, Any]] = field(repr=False)

    def __len__(self) -> int:
        return len(self.rows)

    def get(self, *key: str) -> dict[str, Any] | None:
        """The row whose key columns equal ``key`` (pair tables: in either order)."""
        return self.index.get(tuple(key))

    def matches(self, *name_sets: Iterable[str]) -> list[dict[str, Any]]:
        """Rows whose key cells fall in the given sets, e.g. (ingredients | classes) of two items.

        For pair tables both orders are tried, so ``matches(a, b) == matches(b, a)``.
        """
        sets = [set(s) for s in name_sets]
        out: list[dict[str, Any]] = []
        for row in self.rows:
            key = [row[k] for k in self.spec.key]
            if all(k in s for k, s in zip(key, sets, strict=False)) or (
                self.spec.pair and len(sets) == 2 and key[0] in sets[1] and key[1] in sets[0]
            ):
                out.append(row)
        return out


@dataclass(frozen=True)
class KnowledgeTables:
    """Every knowledge table by its Chinese table name (see SPECS)."""

    tables: dict[str, Table]

    def __getitem__(self, name: str) -> Table:
        return self.tables[name]

    def __iter__(self) -> Any:
        return iter(self.tables.values())


def _vocab(d: DrugDictionary) -> set[str]:
    return d.ingredient_names() | d.class_names() | d.drug_names()


def _typed(row: Row, col: Column, value: str, ctx: _Ctx) -> Any:
    if not value:
        if not col.optional:
            ctx.errors.error(row, col.name, "must not be empty")
        return None
    if col.kind == "level":
        if not value.isdigit() or not 0 <= int(value) <= 9:
            ctx.errors.error(row, col.name, f"level {value!r} must be an integer 0-9")
            return None
        return int(value)
    if col.kind == "number":
        try:
            return float(value)
        except ValueError:
            ctx.errors.error(row, col.name, f"{value!r} is not a number")
            return None
    if col.kind == "enum" and value not in col.values:
        ctx.errors.error(row, col.name, f"{value!r} is not one of {', '.join(col.values)}",
                         did_you_mean(value, col.values))
    elif col.kind == "icd" and not ICD_RE.match(value):
        ctx.errors.error(row, col.name, f"{value!r} is not an ICD-10 code or prefix (e.g. J45, N18.4)")
    elif col.kind == "name" and value not in ctx.vocab:
        ctx.errors.error(row, col.name, f"unknown drug, ingredient or class {value!r}",
                         did_you_mean(value, ctx.vocab))
    elif col.kind == "herb" and value not in ctx.herbs:
        ctx.errors.error(row, col.name, f"unknown decoction piece {value!r}", did_you_mean(value, ctx.herbs))
    return value


@dataclass
class _Ctx:
    errors: Collector
    vocab: set[str]
    herbs: set[str]


def _check_target(row: Row, values: dict[str, Any], ctx: _Ctx) -> None:
    kind, target = values.get("对象类型"), values.get("对象")
    allowed = {"抗菌级别": set(ANTIMICROBIAL_GRADES), "管制类别": set(CONTROL_CLASSES),
               "类别": ctx.vocab, "药品": ctx.vocab}.get(kind or "")
    if target and allowed is not None and target not in allowed:
        ctx.errors.error(row, "对象", f"{target!r} is not a known {kind}", did_you_mean(target, allowed))


def read_table(spec: TableSpec, folder: Path, ctx: _Ctx) -> Table:
    """Read and check one table (diagnostics go to ``ctx.errors``)."""
    rows: list[dict[str, Any]] = []
    index: dict[tuple[str, ...], dict[str, Any]] = {}
    path = folder / spec.file
    if not path.exists():
        ctx.errors.error(None, None, f"missing table file {spec.file}", file=str(path))
        return Table(spec, (), {})
    for row in read_rows(path, [c.name for c in spec.columns], ctx.errors):
        values = {c.name: _typed(row, c, row.get(c.name), ctx) for c in spec.columns}
        values["_line"] = row.line
        amounts = [c for c in ("单次上限", "日上限", "甲日剂量上限", "日下限") if values.get(c) is not None]
        if "单位" in values and amounts and not values["单位"]:
            ctx.errors.error(row, "单位", f"{amounts[0]} is given, so 单位 must not be empty")
        if any(c.kind == "target" for c in spec.columns):
            _check_target(row, values, ctx)
        key = tuple(str(values[k]) for k in spec.key)
        keys = [key, key[::-1]] if spec.pair else [key]
        if any(k in index for k in keys):
            prior = next(index[k] for k in keys if k in index)
            ctx.errors.error(row, spec.key[0], f"duplicate key {' + '.join(key)} (first at line {prior['_line']})")
            continue
        rows.append(values)
        for k in keys:
            index[k] = values
    return Table(spec, tuple(rows), index)


def build_tables(folder: Path, dictionary: DrugDictionary) -> KnowledgeTables:
    """Read every table in SPECS from ``folder`` and check it against ``dictionary``."""
    ctx = _Ctx(Collector(), _vocab(dictionary), {d.name_zh for d in dictionary.all() if d.herbal})
    tables = {spec.name: read_table(spec, folder, ctx) for spec in SPECS}
    ctx.errors.raise_if_any()
    return KnowledgeTables(tables)


@functools.lru_cache(maxsize=8)
def _cached(folder: str) -> KnowledgeTables:
    return build_tables(Path(folder), load_dictionary(folder))


def load_tables(path: str | Path | None = None) -> KnowledgeTables:
    """The knowledge tables in ``path`` (default: the shipped rulebase/tables), cached."""
    folder = Path(path) if path is not None else default_tables_dir()
    if not (folder / "drugs.csv").exists() and (folder / "tables" / "drugs.csv").exists():
        folder = folder / "tables"
    return _cached(str(folder.resolve()))
