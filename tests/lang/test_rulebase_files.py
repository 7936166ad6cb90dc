"""Which files a rulebase reads: every .rules file under the folder loads or is named as not
imported, and paths in rule text (导入, 表 … 来自) never leave the rulebase."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import pytest

from audit_engine.errors import RulebaseError
from audit_engine.lang.loader import load_rulebase

from .conftest import VOCAB, rule

Write = Callable[[str, str], Path]

MAIN = rule("R1", "当 处方.药品数 > 5")
VILLAGE = '导入 "../main.rules"\n覆盖 R1 对 机构级别 = 村卫生室 { 等级 6 }\n'


def diagnostics(path: Path) -> list[str]:
    with pytest.raises(RulebaseError) as info:
        load_rulebase(path, vocabulary=VOCAB)
    return [d.render() for d in info.value.diagnostics]


def test_an_institution_file_nobody_imports_fails_check_with_the_line_to_add(write: Write, tmp_path: Path) -> None:
    write("main.rules", MAIN)
    write("overrides.rules", '导入 "institutions/a.rules"\n')
    write("institutions/a.rules", VILLAGE)
    write("institutions/b.rules", VILLAGE.replace("村卫生室", "乡镇卫生院"))
    (msg,) = diagnostics(tmp_path)
    assert msg.startswith("institutions/b.rules:1:1: 此文件未被导入")
    assert '请在 overrides.rules 中加一行 导入 "institutions/b.rules"' in msg


def test_with_the_import_added_the_same_folder_loads(write: Write, tmp_path: Path) -> None:
    write("main.rules", MAIN)
    write("overrides.rules", '导入 "institutions/a.rules"\n导入 "institutions/b.rules"\n')
    write("institutions/a.rules", VILLAGE)
    write("institutions/b.rules", VILLAGE.replace("村卫生室", "乡镇卫生院"))
    rb = load_rulebase(tmp_path, vocabulary=VOCAB)
    (r1,) = rb.rules
    assert len(r1.variants) == 2


def test_without_an_importing_file_the_suggestion_names_a_top_level_file(write: Write, tmp_path: Path) -> None:
    write("main.rules", MAIN)
    write("deep/more/x.rules", rule("R2", "当 处方.药品数 > 6"))
    (msg,) = diagnostics(tmp_path)
    assert msg.startswith("deep/more/x.rules:1:1:") and '在 main.rules 中加一行 导入 "deep/more/x.rules"' in msg


def test_a_single_file_is_checked_without_looking_for_orphans(write: Write, tmp_path: Path) -> None:
    write("main.rules", MAIN)
    write("institutions/b.rules", VILLAGE)
    assert load_rulebase(tmp_path / "main.rules", vocabulary=VOCAB).rules


def test_an_institution_file_given_alone_may_import_the_files_above_it(write: Write, tmp_path: Path) -> None:
    write("main.rules", MAIN)
    write("overrides.rules", '导入 "institutions/a.rules"\n')
    write("institutions/a.rules", VILLAGE)
    rb = load_rulebase(tmp_path / "institutions" / "a.rules", vocabulary=VOCAB)
    assert [r.id for r in rb.rules] == ["R1"]


SECRET = "root:x:0:0:SECRET-FIRST-LINE\n"


@pytest.fixture
def outside(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A file outside the rulebase whose content must never appear in a diagnostic."""
    p = tmp_path_factory.mktemp("outside") / "passwd"
    p.write_text(SECRET, encoding="utf-8")
    return p


def assert_refused(msgs: list[str], where: str) -> None:
    assert any(m.startswith(where) for m in msgs), msgs
    assert all("SECRET" not in m and "root:x" not in m for m in msgs)


def test_an_absolute_import_is_refused_at_its_position_without_reading_it(write: Write, tmp_path: Path,
                                                                        outside: Path) -> None:
    write("main.rules", f'导入 "{outside}"\n' + MAIN)
    msgs = diagnostics(tmp_path)
    assert_refused(msgs, "main.rules:1:4: 导入的路径必须是规则库内的相对路径，不能是绝对路径")


def test_an_import_climbing_out_with_dotdot_is_refused(write: Write, tmp_path: Path, outside: Path) -> None:
    rel = os.path.relpath(outside, tmp_path / "rb")
    write("rb/main.rules", f'导入 "{rel}"\n' + MAIN)
    msgs = diagnostics(tmp_path / "rb")
    assert_refused(msgs, "rb/main.rules:1:4: 导入的路径指向规则库目录之外")


def test_a_symlink_inside_the_rulebase_leading_out_is_refused(write: Write, tmp_path: Path, outside: Path) -> None:
    write("main.rules", '导入 "shared.rules"\n' + MAIN)
    (tmp_path / "shared.rules").symlink_to(outside)
    msgs = diagnostics(tmp_path)
    assert_refused(msgs, "main.rules:1:4: 导入的路径指向规则库目录之外")


def test_proc_is_refused_for_imports_and_table_sources(write: Write, tmp_path: Path) -> None:
    write("main.rules", '导入 "/proc/self/environ"\n'
          '表 环境 来自 "/proc/self/environ" { 键 甲 列 乙 文本 }\n' + MAIN)
    msgs = diagnostics(tmp_path)
    assert_refused(msgs, "main.rules:1:4: 导入的路径必须是规则库内的相对路径")
    assert_refused(msgs, "main.rules:2:9: 表“环境”的文件路径必须是规则库内的相对路径")
    assert all("PATH=" not in m for m in msgs)


def test_a_table_source_climbing_out_is_refused(write: Write, tmp_path: Path, outside: Path) -> None:
    rel = os.path.relpath(outside.parent / "x.csv", tmp_path)
    (outside.parent / "x.csv").write_text("甲,乙\nSECRET,1\n", encoding="utf-8")
    write("main.rules", f'表 外部 来自 "{rel}" {{ 键 甲 列 乙 文本 }}\n' + MAIN)
    assert_refused(diagnostics(tmp_path), "main.rules:1:9: 表“外部”的文件路径指向规则库目录之外")


def test_a_syntax_error_in_the_importing_file_is_not_followed_by_orphan_noise(write: Write, tmp_path: Path) -> None:
    write("main.rules", MAIN)
    write("overrides.rules", '导入 "institutions/a.rules"\n覆盖 {\n')
    write("institutions/a.rules", VILLAGE)
    msgs = diagnostics(tmp_path)
    assert msgs and all(m.startswith("overrides.rules:") for m in msgs), msgs
