"""A drug dictionary that cannot be loaded stops the rulebase from loading: drug-name checking is
never silently switched off (``Vocabulary(open=True)`` is the only, explicit, way)."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from audit_engine.errors import RulebaseError
from audit_engine.knowledge import dictionary
from audit_engine.lang.checker import Vocabulary
from audit_engine.lang.commands import cmd_check
from audit_engine.lang.loader import load_rulebase

ROOT = Path(__file__).resolve().parents[2]
TABLES = ROOT / "rulebase" / "tables"


@pytest.fixture
def tables_at(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[Path]:
    """The default dictionary folder points at a copy of the shipped tables (caches emptied)."""
    folder = tmp_path / "tables"
    shutil.copytree(TABLES, folder)
    monkeypatch.setattr(dictionary, "default_tables_dir", lambda: folder)
    dictionary._cached.cache_clear()
    yield folder
    dictionary._cached.cache_clear()


def test_a_missing_dictionary_is_an_error_naming_the_file(tables_at: Path) -> None:
    (tables_at / "drugs.csv").unlink()
    with pytest.raises(RulebaseError) as err:
        Vocabulary.default()
    [diag] = err.value.diagnostics
    assert diag.file == str(tables_at / "drugs.csv")
    assert "药品字典无法读取" in diag.message


def test_a_dictionary_with_a_bad_cell_is_an_error_at_that_cell(tables_at: Path) -> None:
    drugs = tables_at / "drugs.csv"
    lines = drugs.read_text(encoding="utf-8-sig").splitlines()
    lines.append(lines[1])  # the first drug again: a duplicate id
    drugs.write_text("\n".join(lines) + "\n", encoding="utf-8")
    with pytest.raises(RulebaseError) as err:
        Vocabulary.default()
    assert any(d.file == str(drugs) and d.line == len(lines) for d in err.value.diagnostics)


def test_loading_the_shipped_rulebase_fails_loudly_without_its_dictionary(
        tables_at: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tables_at / "drugs.csv").unlink()
    with pytest.raises(RulebaseError, match="药品字典无法读取"):
        load_rulebase(ROOT / "rulebase")
    assert cmd_check(str(ROOT / "rulebase")) != 0
    assert "drugs.csv:1:1: 药品字典无法读取" in capsys.readouterr().out


def test_an_open_vocabulary_is_an_explicit_choice() -> None:
    assert Vocabulary(open=True).open
    assert not Vocabulary.default().open
