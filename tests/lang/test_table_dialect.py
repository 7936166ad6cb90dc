"""Every knowledge CSV is read in one declared dialect: a malformed row is a file:line
diagnostic that says how to quote a cell, never a row silently shifted into the next column."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from hypothesis import given, settings
from hypothesis import strategies as st

from audit_engine.knowledge.csvio import parse_strict
from audit_engine.lang import nodes as n

from .conftest import rule

Load = Callable[..., n.Rulebase]
Errors = Callable[..., list[str]]

TABLE = '表 相互作用 来自 "ddi.csv" { 键 成分甲, 成分乙 列 等级 整数, 机制 文本, 来源 文本 }\n'
RULE = rule("R1", "对每对 甲, 乙 满足 相互作用[甲.成分, 乙.成分] 存在", "{相互作用.机制}")
HEADER = "成分甲,成分乙,等级,机制,来源\n"
GOOD = "辛伐他汀,克拉霉素,8,克拉霉素抑制 CYP3A4，辛伐他汀浓度升高,说明书\n"


def test_an_ascii_comma_inside_a_cell_is_one_cell_too_many_and_says_how_to_quote(errors: Errors) -> None:
    bad = "华法林,阿司匹林,6,出血风险增加,监测 INR,说明书\n"
    (msg,) = errors(TABLE + RULE, **{"ddi.csv": HEADER + GOOD + bad})
    head = msg.splitlines()[0]
    assert head.startswith("ddi.csv:3:")
    assert "此行有 6 个单元格，表头只有 5 列" in head
    assert '用英文双引号把整个单元格括起来' in head and '"机制A,机制B"' in head
    assert "华法林,阿司匹林,6,出血风险增加,监测 INR,说明书" in msg


def test_the_same_cell_quoted_loads_with_its_comma_kept(load: Load) -> None:
    quoted = '华法林,阿司匹林,6,"出血风险增加,监测 INR",说明书\n'
    rb = load(TABLE + RULE, **{"ddi.csv": HEADER + GOOD + quoted})
    row = rb.tables["相互作用"].lookup(["华法林", "阿司匹林"])
    assert row is not None and row["机制"] == "出血风险增加,监测 INR" and row["来源"] == "说明书"


def test_a_row_one_cell_short_is_an_error_not_an_empty_source(errors: Errors) -> None:
    (msg,) = errors(TABLE + RULE, **{"ddi.csv": HEADER + GOOD + "华法林,阿司匹林,6,出血风险增加\n"})
    assert msg.splitlines()[0].startswith("ddi.csv:3:")
    assert "此行只有 4 个单元格，表头有 5 列（少了 1 个）" in msg


def test_full_width_commas_used_as_separators_are_named(errors: Errors) -> None:
    (msg,) = errors(TABLE + RULE, **{"ddi.csv": HEADER + GOOD + "华法林，阿司匹林,6,出血风险增加,说明书\n"})
    assert "此行只有 4 个单元格" in msg
    assert "中文逗号“，”，它不分隔单元格" in msg


def test_an_unbalanced_quote_is_reported_at_the_quote(errors: Errors) -> None:
    (msg,) = errors(TABLE + RULE, **{"ddi.csv": HEADER + GOOD + '华法林,阿司匹林,6,"出血风险增加,说明书\n'})
    head = msg.splitlines()[0]
    assert head.startswith("ddi.csv:3:12: 引号不成对")
    assert "内部引号写两次" in head


def test_comment_and_blank_lines_keep_the_line_numbers_of_later_rows(errors: Errors) -> None:
    text = HEADER + "# 由县药事会 2026-10 增补\n\n" + GOOD + "华法林,阿司匹林,6\n"
    (msg,) = errors(TABLE + RULE, **{"ddi.csv": text})
    assert msg.startswith("ddi.csv:5:")


def test_every_shipped_table_is_well_formed_in_the_dialect() -> None:
    tables = Path(__file__).resolve().parents[2] / "rulebase" / "tables"
    for path in sorted(tables.glob("*.csv")):
        parsed = parse_strict(path.read_text(encoding="utf-8-sig"), path.name)
        assert parsed.diagnostics == (), [d.render() for d in parsed.diagnostics]
        assert parsed.rows, path.name


cell = st.text(alphabet=st.sampled_from(list('ab,"，甲 ')), max_size=6)


@given(st.lists(st.lists(cell, min_size=3, max_size=3), min_size=1, max_size=5))
@settings(max_examples=300)
def test_rows_written_by_a_standard_csv_writer_read_back_cell_for_cell(rows: list[list[str]]) -> None:
    import csv
    import io

    from audit_engine.knowledge.csvio import DIALECT

    def written(row: list[str]) -> str:
        buf = io.StringIO()
        csv.writer(buf, DIALECT).writerow(row)
        return buf.getvalue().rstrip("\n")

    lines = [written(["a", "b", "c"]), *(written(r) for r in rows)]
    parsed = parse_strict("\n".join(lines) + "\n", "t.csv")
    assert parsed.diagnostics == ()
    # A written line that is blank or starts with # reads as a comment: the dialect's one ambiguity.
    kept = [r for r in rows if written(r).strip() and not written(r).lstrip().startswith("#")]
    assert [list(r.cells) for r in parsed.rows] == kept
