"""Knowledge tables: CSV files declared with ``表``, loaded once, read through lookups.

A lookup never becomes a network node: the interpreter and the compiled network both call
``TableData.lookup`` on the host, so 50,000 rows cost one dict probe, not 50,000 nodes.

Cells are checked here in two steps. Loading checks what the declaration alone says: value
types and units, and that a ``来源`` column, when the CSV has one, is filled on every row.
What a *key* column holds is only known from the rules that look the table up (``T[甲.成分]``
feeds ingredient names), so the checker gathers that per column and calls ``check_cells``
once per column with a ``Domain`` (see ``checker.Checker.check_table_cells``).
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from audit_engine import schema, units
from audit_engine.errors import Diagnostic
from audit_engine.lang import nodes as n

_TRUE = {"是", "true", "True", "TRUE", "1", "Y", "y", "yes"}
_FALSE = {"否", "false", "False", "FALSE", "0", "N", "n", "no"}
SOURCE_COLUMN = "来源"  # knowledge without a citation cannot be reviewed by a pharmacist
_MEMO_LIMIT = 65_536  # remembered lookups per table; cleared, not evicted, when full
ICD10 = re.compile(r"^[A-Z]\d{2}(\.[0-9A-Za-z]{1,10})?$")  # J45, N18.4, E11.900x001


@dataclass(frozen=True, slots=True)
class Quantity:
    """A table cell holding an amount: ``value`` in the dimension's base unit (``units``);
    ``text`` for messages: the cell and the declared unit (``2.4 g``) for a fixed-unit column,
    the cell alone (``2.4``) when the unit comes per row from another column."""

    value: float
    dimension: str
    text: str


def hint_for(word: str, choices: Iterable[str]) -> str | None:
    """A "did you mean" hint naming the closest of ``choices`` (a known common name of a class
    first: ``抗生素`` → ``抗菌药物``, see ``synonyms``), or None."""
    from audit_engine.lang.synonyms import synonym_hint

    choices = list(choices)
    if (by_meaning := synonym_hint(word, choices)) is not None:
        return by_meaning
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
    header: tuple[str, ...] = ()  # the CSV's column names, to place a caret under a cell
    # Rows never change, so a lookup's answer depends on its keys alone. The same few keys
    # come back many times in one review (several rules test the same pair) and across
    # reviews (the county's common drugs), so answers are remembered, within a bound.
    _memo: dict[tuple[Any, ...], dict[str, Any] | None] = field(
        default_factory=dict, repr=False, compare=False)

    @classmethod
    def build(cls, decl: n.TableDecl, path: str, rows: list[dict[str, Any]],
              header: Sequence[str] = ()) -> TableData:
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
        return cls(decl, path, tuple(rows), {k: tuple(v) for k, v in index.items()}, tuple(wild), col,
                   tuple(header))

    def _candidates(self, keys: Sequence[Any]) -> list[int]:
        if self._index_col < 0:
            return list(range(len(self.rows)))
        value = keys[self._index_col]
        values = [value] if isinstance(value, str) else list(value)
        found: set[int] = set(self._wild)
        for v in values:
            found.update(self._index.get(str(v), ()))
        return sorted(found)

    def may_match(self, column: int, value: Any) -> bool:
        """False when no row can match with ``value`` in key column ``column`` (then every
        lookup with that key answers None); True when some row might. Only the indexed
        column is known without a scan: any other column answers True."""
        if column < 0 or column != self._index_col or self._wild:
            return True
        values = [value] if isinstance(value, str) else value
        return any(str(v) in self._index for v in values)

    @property
    def index_column(self) -> int:
        """The key column rows are indexed on (the first exact one), or -1."""
        return self._index_col

    def lookup(self, keys: Sequence[Any]) -> dict[str, Any] | None:
        """The winning row for ``keys`` (one value per key column: text, a list/tuple of texts
        for a text set, or None when the fact is absent), or None when no row matches."""
        try:  # the common case first: text keys asked before (only valid keys are ever stored)
            return self._memo[tuple(keys)]
        except (KeyError, TypeError):  # TypeError: a list key (a text set), unhashable as given
            pass
        if len(keys) != len(self.decl.keys) or any(k is None for k in keys):
            return None
        memo_key = tuple(tuple(k) if isinstance(k, list | tuple | set | frozenset) else k for k in keys)
        try:
            return self._memo[memo_key]
        except KeyError:
            pass
        if len(self._memo) >= _MEMO_LIMIT:
            self._memo.clear()
        row = self._memo[memo_key] = self._find(keys)
        return row

    def _find(self, keys: Sequence[Any]) -> dict[str, Any] | None:
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


def load_table(decl: n.TableDecl, base_dir: Path, diagnostics: list[Diagnostic],
               root: Path | None = None) -> TableData | None:
    """Read the CSV of ``decl`` (path relative to ``base_dir``); problems go to ``diagnostics``.

    The file must lie inside ``root`` (the rulebase folder, ``base_dir`` when not given): a
    source outside it is an error at the declaration, and the file is never opened."""
    from audit_engine.knowledge.csvio import parse_strict
    from audit_engine.lang.confine import confined

    path, problem = confined(decl.source, base_dir, root if root is not None else base_dir)
    if problem is not None:
        diagnostics.append(_at(decl.source_span or decl.span, f"表“{decl.name}”的文件{problem}"))
        return None
    assert path is not None
    shown = _shown(path)
    if not path.is_file():
        diagnostics.append(_at(decl.span, f"表“{decl.name}”的文件不存在：{decl.source}"))
        return None
    try:
        text = path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError:
        diagnostics.append(_at(decl.span, f"表“{decl.name}”的文件不是 UTF-8 编码：{decl.source}"))
        return None
    remember_source(str(path), text)
    remember_source(shown, text)
    table = parse_strict(text, shown)
    diagnostics.extend(table.diagnostics)
    lines = text.splitlines()
    if not table.header_line:
        diagnostics.append(Diagnostic(shown, 1, 1, f"表“{decl.name}”的文件是空的"))
        return None
    header = list(table.header)
    ok = True
    declared = [k.name for k in decl.keys] + [c.name for c in decl.columns]
    declared += [c.unit_column for c in decl.columns if c.unit_column]
    for name in declared:
        if name not in header:
            ok = False
            diagnostics.append(Diagnostic(shown, table.header_line, 1, f"表头缺少声明的列“{name}”",
                                          lines[table.header_line - 1], hint_for(name, header)))
    if not ok:
        return None
    pos = {h: i for i, h in enumerate(header)}
    rows: list[dict[str, Any]] = []
    for line in table.rows:
        cells = line.cells
        line_no = line.line
        if not any(c.strip() for c in cells):
            continue
        row: dict[str, Any] = {"_line": line_no}

        def cell(name: str, cells: tuple[str, ...] = cells) -> str:
            return cells[pos[name]].strip()

        for kc in decl.keys:
            v = cell(kc.name)
            row[kc.name] = v or None
        for vc in decl.columns:
            raw = cell(vc.name)
            if raw == "":
                continue
            value, problem = _convert(vc, raw, cell(vc.unit_column) if vc.unit_column else None)
            if problem:
                diagnostics.append(Diagnostic(shown, line_no, _col_of(line.raw, pos[vc.name]),
                                              f"列“{vc.name}”：{problem}", line.raw))
                continue
            row[vc.name] = value
        if SOURCE_COLUMN in pos:
            row["_source"] = cell(SOURCE_COLUMN)
            if not row["_source"]:
                diagnostics.append(Diagnostic(shown, line_no, _col_of(line.raw, pos[SOURCE_COLUMN]),
                                              f"列“{SOURCE_COLUMN}”为空：每行知识都须注明出处", line.raw))
        rows.append(row)
    return TableData.build(decl, str(path), rows, header)


@dataclass(frozen=True)
class Domain:
    """The values a key column may hold, learned from the lookups that feed it.

    ``sets``: named value sets (``("成分", names)``) of the fields passed as this key;
    ``icd``: a diagnosis code is passed, so a cell must look like an ICD-10 code or prefix;
    ``literals``: keys written as text in a rule (``肾功能[药品.成分, "禁用"]``), accepted too.
    A column fed only by literals must hold one of them: any other row is never read.
    """

    sets: tuple[tuple[str, frozenset[str]], ...] = ()
    icd: bool = False
    literals: tuple[str, ...] = ()
    dictionary_only: bool = False  # every named set comes from the drug dictionary
    elsewhere: tuple[tuple[str, frozenset[str]], ...] = ()  # dictionary sets no rule passes here

    def admits(self, value: str) -> bool:
        return (value in self.literals or any(value in known for _, known in self.sets)
                or (self.icd and ICD10.match(value) is not None))

    def judge(self, value: Any) -> tuple[str, str | None] | None:
        """None when ``value`` is admitted, else the problem and a "did you mean" hint."""
        text = str(value)
        if self.admits(text):
            return None
        labels = [label for label, _ in self.sets] + (["ICD-10 编码或前缀（如 J45、N18.4）"] if self.icd else [])
        if not labels:
            return (f"：“{text}”不是规则查询此列时用的值（{' / '.join(self.literals)}）",
                    hint_for(text, self.literals))
        said = labels[0] if len(labels) == 1 else "、".join(labels[:-1]) + "或" + labels[-1]
        other = next((label for label, known in self.elsewhere if text in known), None)
        if other is not None:
            # A real name of the wrong kind: the row can never match, and "did you mean" would mislead.
            return f"：“{text}”不是{said}：它是{other}，但没有规则按{other}查询此列", None
        hint = hint_for(text, {v for _, known in self.sets for v in known} | set(self.literals))
        if self.dictionary_only:
            return f"：药品字典中没有{said}“{text}”", hint
        return f"：“{text}”不是{' ' if said[0].isascii() else ''}{said}", hint


class Names(Protocol):
    """The dictionary's names (``checker.Vocabulary``); ``open`` when there is no dictionary."""

    @property
    def ingredients(self) -> frozenset[str]: ...
    @property
    def classes(self) -> frozenset[str]: ...
    @property
    def drugs(self) -> frozenset[str]: ...
    @property
    def open(self) -> bool: ...


_DIAGNOSIS_CODES = {("patient", "diagnosis_codes"), ("diagnosis", "code")}


@dataclass
class Feeds:
    """What the lookups of a rulebase pass for one key column: fields and literal texts."""

    fields: dict[tuple[str, str], schema.Field] = field(default_factory=dict)
    literals: dict[str, None] = field(default_factory=dict)
    unknown: bool = False  # something with no known set of values (free text, a column, …)

    def add(self, key: n.Expr, fld: schema.Field | None) -> None:
        """Record one key expression of a checked lookup; ``fld`` is the field it reads."""
        if isinstance(key, n.Text | n.Symbol):
            self.literals[key.value] = None
        elif isinstance(key, n.FieldRef) and fld is not None:
            self.fields[(fld.entity, fld.name)] = fld
        else:
            self.unknown = True

    def domain(self, vocab: Names) -> Domain | None:
        """The values the column may hold, or None when that cannot be known."""
        if self.unknown:
            return None
        sets: dict[str, frozenset[str]] = {}
        icd = False
        from_dictionary = True
        for (entity, name), fld in self.fields.items():
            if (entity, name) in _DIAGNOSIS_CODES:
                icd, from_dictionary = True, False
            elif fld.type == "enum":
                sets[f"{schema.ENTITIES[entity]}{fld.zh}"] = frozenset(fld.values)
                from_dictionary = False
            elif vocab.open:
                return None
            elif (entity, name) == ("item", "ingredients"):
                sets["成分"] = vocab.ingredients
            elif (entity, name) == ("item", "classes"):
                sets["药物类别"] = vocab.classes
            elif (entity, name) == ("item", "name"):
                sets["药品名称"] = vocab.drugs
            elif (entity, name) == ("patient", "allergies"):
                sets["成分"], sets["药物类别"] = vocab.ingredients, vocab.classes
            else:
                return None
        elsewhere = () if vocab.open else tuple(
            (label, known) for label, known in (("成分", vocab.ingredients), ("药物类别", vocab.classes),
                                                ("药品名称", vocab.drugs)) if label not in sets)
        return Domain(tuple(sets.items()), icd, tuple(self.literals), from_dictionary and bool(sets), elsewhere)


def judge_level(value: Any) -> tuple[str, str | None] | None:
    """A column read by ``等级 按表`` must hold integers 0–9."""
    if isinstance(value, int) and not isinstance(value, bool) and 0 <= value <= 9:
        return None
    shown = value.text if isinstance(value, Quantity) else value
    return f"用作等级，但值“{shown}”不是 0–9 的整数", None


def check_cells(data: TableData, column: str,
                judge: Callable[[Any], tuple[str, str | None] | None]) -> list[Diagnostic]:
    """A diagnostic at the CSV cell for every non-empty cell of ``column`` that ``judge`` rejects.

    ``judge`` returns None for a good value, else the message's tail after 列“…” and a hint."""
    index = data.header.index(column) if column in data.header else 0
    shown = _shown(Path(data.path))
    out: list[Diagnostic] = []
    for row in data.rows:
        value = row.get(column)
        if value is None:
            continue
        verdict = judge(value)
        if verdict is None:
            continue
        line = row["_line"]
        src = source_line(data.path, line)
        col, end = _cell_span(src, index)
        out.append(Diagnostic(shown, line, col, f"列“{column}”{verdict[0]}", src, verdict[1], end))
    return out


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


def _cell_span(line: str, index: int) -> tuple[int, int | None]:
    """1-based start and end column of CSV field ``index`` on ``line`` (None: empty cell)."""
    col = _col_of(line, index)
    end = line.find(",", col - 1)
    end = len(line) + 1 if end < 0 else end + 1
    return col, end if end > col else None


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
