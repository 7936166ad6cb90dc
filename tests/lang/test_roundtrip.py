"""Every construct survives parse -> format -> parse unchanged (source positions aside)."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from audit_engine.lang import nodes as n
from audit_engine.lang.format import format_cond, format_file
from audit_engine.lang.parser import parse_text

ROOT = Path(__file__).resolve().parents[2]


def strip(x: Any) -> Any:
    """``x`` with every span replaced by NO_SPAN, so trees compare by content."""
    if isinstance(x, n.Span):
        return n.NO_SPAN
    if isinstance(x, tuple):
        return tuple(strip(y) for y in x)
    if dataclasses.is_dataclass(x) and not isinstance(x, type):
        return dataclasses.replace(x, **{f.name: strip(getattr(x, f.name)) for f in dataclasses.fields(x)
                                         if f.init})
    return x


def roundtrip(text: str) -> tuple[n.RuleFile, n.RuleFile]:
    first = parse_text(text, "a.rules")
    second = parse_text(format_file(first), "a.rules")
    return strip(first), strip(second)


CONSTRUCTS = {
    "header and import": '规则库 "县" 版本 "1" 导入 "base.rules"',
    "table": '表 T 来自 "t.csv" { 键 a, b 前缀 列 c 整数, d 数值 mg, e 数值 单位见 u, f 文本集, g 布尔 优先 c 最低 }',
    "table first": '表 T 来自 "t.csv" { 键 a 列 b 文本 优先 最先 }',
    "rule": '规则 R-1 "标\\"题" { 类别 适宜性.剂量 等级 6 依据 "书" 范围 机构级别 属于 (村卫生室, 乡镇卫生院), '
            '处方类型 = 门诊, 科室 = "儿科", 机构编码 = "A1", 生效 "2026-01-01", 失效 "2027-01-01" '
            '对每个 药品 满足 药品.日剂量 > 4 g 提示 "{药品.名称} {{x}}" 建议 "减量" }',
    "table level": '规则 R "t" { 等级 按表 T.c 否则 3 对每对 甲, 乙 满足 T[甲.成分, 乙.成分] 存在 }',
    "variable binder": '规则 R "t" { 对每个 x: 药品 满足 x.注射剂 且 任一 y: 药品 满足 (y.天数 > 7) }',
    "conditions": '规则 R "t" { 当 (患者.妊娠 或 患者.哺乳) 且 不 (患者.慢病 且 处方.长期处方) 且 患者.年龄 介于 1 岁 和 3 岁 '
                  '且 患者.诊断编码 开头为 ("N18", "N19") 且 药品数.x 包含 "a" 且 已知 患者.eGFR 且 患者.性别 != 女 '
                  '且 计数 诊断 满足 (诊断.慢病) >= 2 且 计数 药品 < 9 且 所有 药品 满足 (药品.基药 = 是) '
                  '且 T[患者.人群].上限 > 0.25 mg/kg }',
    "overrides": '覆盖 R 对 机构级别 = 村卫生室 { 等级 6 范围 科室 = "内科" } 覆盖 R 对 机构编码 属于 ("A", "B") { 停用 } '
                 '覆盖 R { 等级 按表 T.c }',
    "test": '测试 "例" { 患者 年龄 64 岁 过敏 "青霉素类" 药品 辛伐他汀 40 mg 每日1次 7 天 诊断 "N18.4" 慢病 '
            '期望 触发 A 等级 6, B 期望 不触发 C, D 期望 无 }',
}


@pytest.mark.parametrize("name", sorted(CONSTRUCTS))
def test_construct_round_trips(name: str) -> None:
    first, second = roundtrip(CONSTRUCTS[name])
    assert first == second


RULE_FILES = sorted((ROOT / "fixtures" / "rules").rglob("*.rules")) + sorted((ROOT / "rulebase").rglob("*.rules"))


@pytest.mark.parametrize("path", RULE_FILES, ids=lambda p: str(p.relative_to(ROOT)))
def test_rule_files_round_trip(path: Path) -> None:
    first, second = roundtrip(path.read_text(encoding="utf-8"))
    assert first == second


FIELDS = ["患者.年龄", "患者.体重", "药品.日剂量", "药品.天数", "处方.类型", "药品.成分", "患者.妊娠"]
atoms = st.one_of(
    st.builds(lambda f, op, v: f"{f} {op} {v}", st.sampled_from(FIELDS), st.sampled_from(["=", "!=", "<", ">=", "大于"]),
              st.sampled_from(["3", "4 g", "0.5 mg", '"门诊"', "门诊", "是", "T[药品.成分].上限", "计数 药品"])),
    st.builds(lambda f: f"已知 {f}", st.sampled_from(FIELDS)),
    st.sampled_from(FIELDS),
    st.builds(lambda f: f"{f} 属于 (门诊, \"急诊\")", st.sampled_from(FIELDS)),
    st.just("T[药品.成分, 患者.人群] 存在"),
)


def conds(inner: st.SearchStrategy[str]) -> st.SearchStrategy[str]:
    return st.one_of(
        st.builds(lambda a, b: f"{a} 且 {b}", inner, inner),
        st.builds(lambda a, b: f"{a} 或 {b}", inner, inner),
        st.builds(lambda a: f"不 {a}", inner),
        st.builds(lambda a: f"({a})", inner),
        st.builds(lambda a: f"任一 x: 药品 满足 ({a})", inner),
        st.builds(lambda a: f"计数 药品 满足 ({a}) > 1", inner),
    )


@settings(max_examples=150, deadline=None)
@given(st.recursive(atoms, conds, max_leaves=8))
def test_generated_conditions_round_trip(text: str) -> None:
    first = parse_text(f'规则 R "t" {{ 当 {text} }}', "g.rules").rules[0]
    assert isinstance(first.trigger, n.When)
    again = parse_text(f'规则 R "t" {{ 当 {format_cond(first.trigger.cond)} }}', "g.rules").rules[0]
    assert strip(first) == strip(again)
