"""Reading the knowledge CSV files with positions, so a bad cell is reported as file:line:col.

Every table under ``rulebase/tables`` is written in one declared dialect, :data:`DIALECT`:
UTF-8 (a BOM is tolerated), a header row, ASCII commas between cells, a cell holding a comma
or a quote enclosed in ASCII double quotes with an inner quote doubled (``"a,b"``,
``"写作""慎用""即可"``), one row per line (no line breaks inside a cell). Lines starting with ``#``
are comments (a pharmacist may annotate a table); blank lines are skipped. A data row whose first
cell starts with ``#`` must therefore quote that cell (``"#1",…``).

:func:`parse_strict` is the one reader of that dialect: a row with too many or too few cells,
or an unbalanced quote, is a ``file:line`` diagnostic that says how to quote a cell, never a
row silently shifted into the next column. Problems are collected as
:class:`audit_engine.errors.Diagnostic` and raised once, together, as a
:class:`audit_engine.errors.RulebaseError` (habit 4: check everything, then report once).
"""

from __future__ import annotations

import csv
import difflib
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

from audit_engine.errors import Diagnostic, RulebaseError

LIST_SEP = "|"


class Dialect(csv.Dialect):
    """The one CSV dialect of every knowledge table (see the module docstring)."""

    delimiter = ","
    quotechar = '"'
    doublequote = True
    skipinitialspace = False
    lineterminator = "\n"
    quoting = csv.QUOTE_MINIMAL
    strict = True


DIALECT = Dialect()
QUOTE_ADVICE = '单元格内含英文逗号或引号时，用英文双引号把整个单元格括起来，内部引号写两次，如 "机制A,机制B"、"他说""慎用"""'
FULL_WIDTH_COMMA = "，"


@dataclass(frozen=True, slots=True)
class CsvLine:
    """One data line of a strictly parsed table: its 1-based line number, cells and text."""

    line: int
    cells: tuple[str, ...]
    raw: str


@dataclass(frozen=True, slots=True)
class StrictTable:
    """A table read in :data:`DIALECT`: header (line ``header_line``) and the well-formed rows.

    A malformed row is left out of ``rows`` and reported in ``diagnostics``."""

    header: tuple[str, ...]
    header_line: int
    rows: tuple[CsvLine, ...]
    diagnostics: tuple[Diagnostic, ...]


def _split(raw: str) -> list[str]:
    return next(csv.reader([raw], DIALECT), [])


def parse_strict(text: str, file: str) -> StrictTable:
    """Read ``text`` (the content of ``file``) in :data:`DIALECT`; never raises.

    Every data row must have exactly as many cells as the header. A row with another count,
    or with a quote that does not close, is a diagnostic at ``file:line`` saying how to quote a
    cell; when the row holds a full-width comma "，" the message says that it does not separate
    cells (the usual cause of a row one cell short, or of a mix of "," and "，")."""
    lines = text.splitlines()
    diags: list[Diagnostic] = []
    header: tuple[str, ...] = ()
    header_line = 0
    rows: list[CsvLine] = []
    for i, raw in enumerate(lines, start=1):
        if not raw.strip() or raw.lstrip().startswith("#"):
            continue
        try:
            cells = _split(raw)
        except csv.Error:
            col = raw.find('"') + 1 or 1
            diags.append(Diagnostic(file, i, col, f"引号不成对：此处的英文双引号没有闭合。{QUOTE_ADVICE}", raw))
            continue
        if not header_line:
            header, header_line = tuple(c.strip() for c in cells), i
            if any(FULL_WIDTH_COMMA in c for c in header):
                diags.append(Diagnostic(file, i, raw.find(FULL_WIDTH_COMMA) + 1,
                                        "表头含中文逗号“，”：列之间须用英文逗号“,”分隔", raw))
            continue
        if len(cells) != len(header):
            diags.append(_shape(file, i, raw, cells, header))
            continue
        rows.append(CsvLine(i, tuple(cells), raw))
    return StrictTable(header, header_line, tuple(rows), tuple(diags))


def _shape(file: str, line: int, raw: str, cells: list[str], header: tuple[str, ...]) -> Diagnostic:
    """The diagnostic for a row whose cell count differs from the header's."""
    got, want = len(cells), len(header)
    if got > want:
        # The first cell past the header is where the stray comma pushed the row over.
        col = len(",".join(cells[:want])) + 1 if '"' not in raw else 1
        what = f"此行有 {got} 个单元格，表头只有 {want} 列（多了 {got - want} 个）：某个单元格里的英文逗号把它拆开了"
    else:
        col = len(raw) + 1 if '"' not in raw else 1
        what = f"此行只有 {got} 个单元格，表头有 {want} 列（少了 {want - got} 个）"
    if FULL_WIDTH_COMMA in raw:
        what += "；此行含中文逗号“，”，它不分隔单元格：分隔单元格请用英文逗号“,”，单元格内的中文逗号照写即可"
    hint = f"表头：{','.join(header)}"
    return Diagnostic(file, line, max(1, col), f"{what}。{QUOTE_ADVICE}", raw, hint)


@dataclass(frozen=True, slots=True)
class Row:
    """One data row: its cells by column name, and where it came from."""

    file: str
    line: int
    cells: dict[str, str]
    columns: tuple[str, ...]
    raw: str

    def col(self, name: str) -> int:
        """1-based column number of ``name`` (for diagnostics)."""
        return self.columns.index(name) + 1 if name in self.columns else 1

    def get(self, name: str) -> str:
        return self.cells.get(name, "").strip()

    def items(self, name: str) -> tuple[str, ...]:
        """A ``|``-separated list cell, stripped, empty entries dropped."""
        return tuple(p.strip() for p in self.get(name).split(LIST_SEP) if p.strip())


class Collector:
    """Collects diagnostics from every check; ``raise_if_any`` raises them all at once."""

    def __init__(self) -> None:
        self.diagnostics: list[Diagnostic] = []

    def error(self, row: Row | None, column: str | None, message: str, hint: str | None = None,
              *, file: str = "", line: int = 1) -> None:
        if row is None:
            self.diagnostics.append(Diagnostic(file, line, 1, message, hint=hint))
            return
        where = f"column {column!r}: " if column else ""
        self.diagnostics.append(
            Diagnostic(row.file, row.line, row.col(column) if column else 1, where + message,
                       source_line=row.raw, hint=hint)
        )

    def raise_if_any(self) -> None:
        if self.diagnostics:
            raise RulebaseError(self.diagnostics)


def did_you_mean(word: str, choices: Iterable[str]) -> str | None:
    """A "did you mean" hint for an unknown name, or None when nothing is close."""
    close = difflib.get_close_matches(word, list(choices), n=1, cutoff=0.5)
    return f"did you mean {close[0]!r}?" if close else None


def read_rows(path: Path, required: Iterable[str], errors: Collector) -> Iterator[Row]:
    """Yield the data rows of ``path``; a missing required column is one diagnostic for the file."""
    name = str(path)
    table = parse_strict(path.read_text(encoding="utf-8-sig"), name)
    errors.diagnostics.extend(table.diagnostics)
    if not table.header_line:
        errors.error(None, None, "empty table: no header row", file=name)
        return
    columns = table.header
    missing = [c for c in required if c not in columns]
    if missing:
        errors.error(None, None, f"missing column(s) {', '.join(missing)}; header is {', '.join(columns)}",
                     file=name, line=table.header_line)
        return
    for row in table.rows:
        yield Row(name, row.line, dict(zip(columns, row.cells, strict=True)), columns, row.raw)
