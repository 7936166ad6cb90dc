"""Reading the knowledge CSV files with positions, so a bad cell is reported as file:line:col.

Every table under ``rulebase/tables`` is UTF-8 CSV with a header row. Lines starting with
``#`` are comments (a pharmacist may annotate a table); blank lines are skipped. Problems are
collected as :class:`audit_engine.errors.Diagnostic` and raised once, together, as a
:class:`audit_engine.errors.RulebaseError` (habit 4: check everything, then report once).
"""

from __future__ import annotations

import csv
import difflib
import io
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

from audit_engine.errors import Diagnostic, RulebaseError

LIST_SEP = "|"


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
    text = path.read_text(encoding="utf-8-sig")
    lines = text.splitlines()
    header_idx = next((i for i, ln in enumerate(lines) if ln.strip() and not ln.lstrip().startswith("#")), None)
    name = str(path)
    if header_idx is None:
        errors.error(None, None, "empty table: no header row", file=name)
        return
    header = next(csv.reader([lines[header_idx]]))
    columns = tuple(h.strip() for h in header)
    missing = [c for c in required if c not in columns]
    if missing:
        errors.error(None, None, f"missing column(s) {', '.join(missing)}; header is {', '.join(columns)}",
                     file=name, line=header_idx + 1)
        return
    for i in range(header_idx + 1, len(lines)):
        raw = lines[i]
        if not raw.strip() or raw.lstrip().startswith("#"):
            continue
        cells_list = next(csv.reader(io.StringIO(raw)))
        row = Row(name, i + 1, {}, columns, raw)
        if len(cells_list) != len(columns):
            errors.error(row, None, f"row has {len(cells_list)} cells, header has {len(columns)}")
            continue
        yield Row(name, i + 1, dict(zip(columns, cells_list, strict=True)), columns, raw)
