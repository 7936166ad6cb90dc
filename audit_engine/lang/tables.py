"""Knowledge tables: CSV files declared with ``表``, loaded once, read through lookups.

A lookup never becomes a network node: the interpreter and the compiled network both call
``TableData.lookup`` on the host, so 50,000 rows cost one dict probe, not 50,000 nodes.
"""

from __future__ import annotations

import csv
import difflib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from audit_engine import units
from audit_engine.errors import Diagnostic
from audit_engine.lang import nodes as n

_TRUE = {"是", "true", "True", "TRUE", "1", "Y", "y", "yes"}
_FALSE = {"否", "false", "False", "FALSE", "0", "N", "n", "no"}


@dataclass(frozen=True, slots=True)
class Quantity:
    """A table cell holding an amount: ``value`` in the dimension's base unit (``units``);
    ``text`` for messages: the cell and the declared unit (``2.4 g``) for a fixed-unit column,
    the cell alone (``2.4``) when the unit comes per row from another column."""

    value: float
    dimension: str
    text: str


def hint_for(word: str, choices: Iterable[str]) -> str | None:
    """A "did you mean" hint naming the closest of ``choices``, or None."""
    close = difflib.get_close_matches(word, sorted(choices), n=1, cutoff=0.5)
    return f"是否应为“{close[0]}”？" if close else None


@dataclass(frozen=True)
class TableData:
    """A loaded table. ``rows`` are dicts: key columns hold ``str`` or None (empty cell =
    wildcard), value columns hold typed values (absent key = empty cell), ``_line`` the CSV
    line number. See ``nodes.Lookup`` for the matching and winner rules."""

    decl: n.TableDecl
    path: str
    rows: tuple[dict[str, Any], ...]
    _index: dict[str, tuple[int, ...]] = field(default_factory=dict, repr=False)
    _wild: tuple[int, ...] = field(default=(), repr=False)
    _index_col: int = -1

    @classmethod
    def build(cls, decl: n.TableDecl, path: str, rows: list[dict[str, Any]]) -> TableData:
        """Index rows on the first exact key column so a lookup probes a dict, not a scan."""
        col = next((i for i, k in enumerate(decl.keys) if k.match == "exact"), -1)
        index: dict[str, list[int]] = {}
        wild: list[int] = []
        if col >= 0:
            name = decl.keys[col].name
            for i, row in enumerate(rows):
                cell = row.get(name)
                if cell is None:
                    wild.append(i)
                else:
                    index.setdefault(cell, []).append(i)
        return cls(decl, path, tuple(rows), {k: tuple(v) for k, v in index.items()}, tuple(wild), col)

    def _candidates(self, keys: Sequence[Any]) -> list[int]:
        if self._index_col < 0:
            return list(range(len(self.rows)))
        value = keys[self._index_col]
        values = [value] if isinstance(value, str) else list(value)
        found: set[int] = set(self._wild)
        for v in values:
            found.update(self._index.get(str(v), ()))
        return sorted(found)

    def lookup(self, keys: Sequence[Any]) -> dict[str, Any] | None:
        """The winning row for ``keys`` (one value per key column: text, a list/tuple of texts
        for a text set, or None when the fact is absent), or None when no row matches."""
        if len(keys) != len(self.decl.keys) or any(k is None for k in keys):
            return None
        matches: list[int] = []
        for i in self._candidates(keys):
            row = self.rows[i]
            if all(_cell_matches(row.get(kc.name), kc.match, keys[j]) for j, kc in enumerate(self.decl.keys)):
                matches.append(i)
        if not matches:
            return None
        return self.rows[min(matches, key=self._rank)]

    def _rank(self, i: int) -> tuple[Any, ...]:
        row = self.rows[i]
        specific = -sum(1 for kc in self.decl.keys if row.get(kc.name) is not None)
        prefer = self.decl.prefer
        if prefer is None or prefer.column is None or prefer.order == "first":
            return (specific, 0, 0.0, i)
        value = row.get(prefer.column)
        if isinstance(value, Quantity):
            value = value.value
        if not isinstance(value, int | float):
            return (specific, 1, 0.0, i)
        return (specific, 0, -float(value) if prefer.order == "highest" else float(value), i)


def _cell_matches(cell: str | None, match: str, value: Any) -> bool:
    if cell is None:
        return True
    values = [value] if isinstance(value, str) else value
    if match == "prefix":
        return any(isinstance(v, str) and v.startswith(cell) for v in values)
    return any(v == cell for v in values)


def load_table(decl: n.TableDecl, base_dir: Path, diagnostics: list[Diagnostic]) -> TableData | None:
    """Read the CSV of ``decl`` (path relative to ``base_dir``); problems go to ``diagnostics``."""
    path = (base_dir / decl.source).resolve()
    shown = _shown(path)
    if not path.is_file():
        diagnostics.append(_at(decl.span, f"表“{decl.name}”的文件不存在：{decl.source}"))
        return None
    text = path.read_text(encoding="utf-8-sig")
    remember_source(str(path), text)
    lines = text.splitlines()
    reader = csv.reader(lines)
    try:
        header = [h.strip() for h in next(reader)]
    except StopIteration:
        diagnostics.append(Diagnostic(shown, 1, 1, f"表“{decl.name}”的文件是空的"))
        return None
    ok = True
    declared = [k.name for k in decl.keys] + [c.name for c in decl.columns]
    declared += [c.unit_column for c in decl.columns if c.unit_column]
    for name in declared:
        if name not in header:
            ok = False
            col = 1
            diagnostics.append(Diagnostic(shown, 1, col, f"表头缺少声明的列“{name}”", lines[0] if lines else "",
                                          hint_for(name, header)))
    if not ok:
        return None
    pos = {h: i for i, h in enumerate(header)}
    rows: list[dict[str, Any]] = []
    for cells in reader:
        line_no = reader.line_num
        if not any(c.strip() for c in cells):
            continue
        row: dict[str, Any] = {"_line": line_no}

        def cell(name: str, cells: list[str] = cells) -> str:
            i = pos[name]
            return cells[i].strip() if i < len(cells) else ""

        for kc in decl.keys:
            v = cell(kc.name)
            row[kc.name] = v or None
        for vc in decl.columns:
            raw = cell(vc.name)
            if raw == "":
                continue
            value, problem = _convert(vc, raw, cell(vc.unit_column) if vc.unit_column else None)
            if problem:
                src = lines[line_no - 1] if line_no - 1 < len(lines) else ""
                diagnostics.append(Diagnostic(shown, line_no, _col_of(src, pos[vc.name]),
                                              f"列“{vc.name}”：{problem}", src))
                continue
            row[vc.name] = value
        rows.append(row)
    return TableData.build(decl, str(path), rows)


def _convert(vc: n.ValueColumn, raw: str, row_unit: str | None) -> tuple[Any, str | None]:
    if vc.type == "text":
        return raw, None
    if vc.type == "textset":
        parts = [p.strip() for p in raw.replace("、", "|").split("|")]
        return tuple(sorted(p for p in parts if p)), None
    if vc.type == "bool":
        if raw in _TRUE:
            return True, None
        if raw in _FALSE:
            return False, None
        return None, f"“{raw}”不是 是/否"
    try:
        number = float(raw)
    except ValueError:
        return None, f"“{raw}”不是数字"
    if vc.type == "int":
        if not number.is_integer():
            return None, f"“{raw}”不是整数"
        return int(number), None
    unit = vc.unit or row_unit
    if vc.unit_column and not row_unit:
        return None, f"缺少单位（列“{vc.unit_column}”为空）"
    if unit is None:
        return number, None
    try:
        u = units.lookup(unit)
    except units.UnitError:
        return None, f"未知单位“{unit}”" + (f"（{h}）" if (h := hint_for(unit, units.known_units())) else "")
    # A per-row unit lives in its own column, which a message shows with {表.单位}; so only a
    # fixed (declared) unit is part of the cell's text.
    return Quantity(number * u.factor, u.dimension, f"{raw} {unit}" if vc.unit else raw), None


def _col_of(line: str, index: int) -> int:
    """1-based column where CSV field ``index`` starts (plain split; good enough for a caret)."""
    col = 1
    for _ in range(index):
        nxt = line.find(",", col - 1)
        if nxt < 0:
            break
        col = nxt + 2
    return col


def _at(span: n.Span, message: str, hint: str | None = None) -> Diagnostic:
    return Diagnostic(span.file, span.line, span.col, message, source_line(span.file, span.line), hint,
                      span.end_col if span.end_line == span.line else None)


def _shown(path: Path) -> str:
    try:
        return str(path.relative_to(Path.cwd()))
    except ValueError:
        return str(path)


_LINES: dict[str, list[str]] = {}


def remember_source(file: str, text: str) -> None:
    """Record the text of ``file`` so diagnostics can quote its lines."""
    _LINES[file] = text.splitlines()


def source_line(file: str, line: int) -> str:
    """Line ``line`` of ``file`` (cached), or "" when unavailable."""
    if file not in _LINES:
        try:
            _LINES[file] = Path(file).read_text(encoding="utf-8").splitlines()
        except OSError:
            _LINES[file] = []
    lines = _LINES[file]
    return lines[line - 1] if 0 < line <= len(lines) else ""
