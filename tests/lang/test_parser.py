"""The parser builds the right nodes for every construct and reports syntax errors precisely."""

from __future__ import annotations

import pytest

from audit_engine.errors import RulebaseError
from audit_engine.lang import nodes as n
from audit_engine.lang.parser import parse_text


def one_rule(body: str) -> n.Rule:
    f = parse_text(f'规则 R1 "标题" {{ {body} }}', "t.rules")
    assert len(f.rules) == 1
    return f.rules[0]


def cond_of(text: str) -> n.Cond:
    trig = one_rule(f"当 {text}").trigger
    assert isinstance(trig, n.When)
    return trig.cond


def test_rule_clauses_are_collected_in_any_order() -> None:
    r = one_rule('提示 "m {药品.名称}" 依据 "说明书" 等级 6 类别 适宜性.剂量 建议 "s" '
                 '范围 处方类型 = 门诊, 机构级别 属于 (村卫生室, 乡镇卫生院) 对每个 药品 满足 药品.注射剂')
    assert r.id == "R1" and r.title == "标题"
    assert r.category == n.Category("适宜性", "剂量", r.category.span)  # type: ignore[union-attr]
    assert isinstance(r.level, n.FixedLevel) and r.level.value == 6
    assert r.evidence == "说明书"
    assert [(s.key, s.values) for s in r.scope] == [("prescription_type", ("门诊",)),
                                                    ("institution_level", ("村卫生室", "乡镇卫生院"))]
    assert isinstance(r.trigger, n.ForEach) and r.trigger.var == "药品"
    assert r.message is not None and r.message.parts[0] == "m "
    ph = r.message.parts[1]
    assert isinstance(ph, n.Placeholder) and (ph.target, ph.name) == ("药品", "名称")
    assert r.suggestion is not None and r.suggestion.parts == ("s",)


def test_english_twins_build_the_same_nodes_as_chinese_keywords() -> None:
    zh = parse_text('规则 R "t" { 类别 适宜性.x 等级 3 依据 "e" 对每个 药品 满足 药品.天数 > 7 且 不 患者.慢病 提示 "m" }')
    en = parse_text('rule R "t" { category 适宜性.x level 3 evidence "e" for each 药品 where 药品.天数 > 7 and not 患者.慢病 message "m" }')
    strip = lambda r: (r.id, r.category.main, r.level.value, type(r.trigger.cond).__name__,  # noqa: E731
                       [type(o).__name__ for o in r.trigger.cond.operands])
    assert strip(zh.rules[0]) == strip(en.rules[0]) == ("R", "适宜性", 3, "And", ["Compare", "Not"])


def test_precedence_is_or_then_and_then_not() -> None:
    c = cond_of("患者.妊娠 或 患者.哺乳 且 不 患者.慢病")
    assert isinstance(c, n.Or)
    assert isinstance(c.operands[0], n.Truthy)
    right = c.operands[1]
    assert isinstance(right, n.And) and isinstance(right.operands[1], n.Not)


def test_parentheses_group_conditions() -> None:
    c = cond_of("不 (患者.慢病 或 处方.长期处方)")
    assert isinstance(c, n.Not) and isinstance(c.operand, n.Or)


@pytest.mark.parametrize(("word", "op"), [("=", "="), ("等于", "="), ("≠", "!="), ("不等于", "!="), ("超过", ">"),
                                          ("大于等于", ">="), ("≤", "<="), ("不超过", "<="), ("低于", "<"), ("至少", ">=")])
def test_comparison_words_map_to_operators(word: str, op: str) -> None:
    c = cond_of(f"药品.天数 {word} 7")
    assert isinstance(c, n.Compare) and c.op == op


def test_numbers_carry_their_units() -> None:
    c = cond_of("药品.日剂量 > 4 g 且 患者.eGFR < 30 mL/min/1.73m² 且 药品.天数 > 7")
    assert isinstance(c, n.And)
    units_ = [o.right.unit for o in c.operands if isinstance(o, n.Compare) and isinstance(o.right, n.Number)]
    assert units_ == ["g", "mL/min/1.73m²", None]


def test_membership_range_contains_prefix_known_and_exists() -> None:
    c = cond_of('处方.类型 属于 (门诊, "急诊") 且 患者.年龄 介于 1 岁 和 3 岁 且 药品.类别 包含 "他汀类" '
                '且 患者.诊断编码 开头为 ("N18", "N19") 且 已知 患者.体重 且 相互作用[甲.成分, 乙.成分] 存在')
    assert isinstance(c, n.And)
    kinds = [type(o) for o in c.operands]
    assert kinds == [n.In, n.Between, n.Contains, n.StartsWith, n.Known, n.Exists]
    member = c.operands[0]
    assert isinstance(member, n.In) and [type(o) for o in member.options] == [n.Symbol, n.Text]
    assert isinstance(c.operands[1], n.Between) and c.operands[1].high.unit == "岁"  # type: ignore[union-attr]
    exists = c.operands[5]
    assert isinstance(exists, n.Exists) and exists.lookup.table == "相互作用" and len(exists.lookup.keys) == 2


def test_quantifiers_and_count_bind_variables() -> None:
    c = cond_of("任一 x: 药品 满足 (x.注射剂) 且 所有 诊断 满足 (诊断.慢病) 且 计数 药品 满足 (药品.注射剂) > 2 且 计数 药品 >= 5")
    assert isinstance(c, n.And)
    anyq, allq, cnt, total = c.operands
    assert isinstance(anyq, n.Quantified) and (anyq.kind, anyq.var, anyq.collection) == ("any", "x", "item")
    assert isinstance(allq, n.Quantified) and (allq.kind, allq.collection) == ("all", "diagnosis")
    assert isinstance(cnt, n.Compare) and isinstance(cnt.left, n.Count) and cnt.left.cond is not None
    assert isinstance(total, n.Compare) and isinstance(total.left, n.Count) and total.left.cond is None


def test_pairs_and_table_columns() -> None:
    r = one_rule("等级 按表 相互作用.等级 否则 4 对每对 甲, 乙 满足 相互作用[甲.成分, 乙.成分].等级 >= 5")
    assert isinstance(r.level, n.TableLevel) and (r.level.table, r.level.column, r.level.default) == ("相互作用", "等级", 4)
    assert isinstance(r.trigger, n.ForEachPair) and (r.trigger.first, r.trigger.second) == ("甲", "乙")
    cmp_ = r.trigger.cond
    assert isinstance(cmp_, n.Compare) and isinstance(cmp_.left, n.Column) and cmp_.left.column == "等级"


def test_table_declaration() -> None:
    f = parse_text('表 最大日剂量 来自 "tables/max.csv" { 键 成分, ICD 前缀 列 上限 数值 单位见 单位, 下限 数值 mg, '
                   '备注 文本, 类 文本集 优先 上限 最低 }')
    (t,) = f.tables
    assert (t.name, t.source) == ("最大日剂量", "tables/max.csv")
    assert [(k.name, k.match) for k in t.keys] == [("成分", "exact"), ("ICD", "prefix")]
    assert [(c.name, c.type, c.unit, c.unit_column) for c in t.columns] == [
        ("上限", "number", None, "单位"), ("下限", "number", "mg", None), ("备注", "text", None, None),
        ("类", "textset", None, None)]
    assert t.prefer is not None and (t.prefer.column, t.prefer.order) == ("上限", "lowest")


def test_header_import_override_and_test_case() -> None:
    f = parse_text('规则库 "县库" 版本 "1.0" 导入 "base.rules" '
                   '覆盖 R1 对 机构级别 = 村卫生室 { 等级 6 范围 科室 = "儿科" } 覆盖 R2 { 停用 } '
                   '测试 "例" { 患者 年龄 6 岁 过敏 "青霉素类" 药品 阿莫西林 250 mg tid 5 天 期望 触发 R1 等级 6, R3 '
                   '期望 不触发 R2 期望 无 }')
    assert f.header is not None and (f.header.name, f.header.version) == ("县库", "1.0")
    assert [i.path for i in f.imports] == ["base.rules"]
    o1, o2 = f.overrides
    assert o1.target is not None and (o1.target.key, o1.target.values) == ("institution_level", ("村卫生室",))
    assert isinstance(o1.level, n.FixedLevel) and o1.scope[0].values == ("儿科",)
    assert o2.disable and o2.target is None
    (t,) = f.tests
    assert [b.entity for b in t.briefs] == ["patient", "item"]
    assert [w.text for w in t.briefs[1].words] == ["阿莫西林", "250", "mg", "tid", "5", "天"]
    assert t.briefs[0].words[4].quoted and not t.briefs[0].words[3].quoted
    e1, e2, e3 = t.expectations
    assert (e1.fires, e1.rule_ids, e1.levels) == (True, ("R1", "R3"), (6, None))
    assert (e2.fires, e2.rule_ids) == (False, ("R2",))
    assert (e3.fires, e3.rule_ids) == (False, ())


def test_spans_point_at_the_source() -> None:
    f = parse_text('# 注释\n规则 R1 "t" {\n  当 患者.年龄 < 12 岁\n}\n', "x.rules")
    r = f.rules[0]
    assert (r.span.file, r.span.line, r.span.col) == ("x.rules", 2, 4)
    trig = r.trigger
    assert isinstance(trig, n.When) and isinstance(trig.cond, n.Compare)
    assert (trig.cond.left.span.line, trig.cond.left.span.col, trig.cond.left.span.end_col) == (3, 5, 10)


def test_keywords_inside_names_stay_names() -> None:
    c = cond_of("药品.类别 包含 不良反应类")
    assert isinstance(c, n.Contains) and isinstance(c.item, n.Symbol) and c.item.value == "不良反应类"


def test_template_escapes_and_placeholder_positions() -> None:
    r = one_rule('提示 "{{字面}} {甲.名称}"')
    assert r.message is not None
    assert r.message.parts[0] == "{字面} "
    ph = r.message.parts[1]
    assert isinstance(ph, n.Placeholder) and ph.span.col == r.message.span.col + 1 + len("{{字面}} ")


def render_error(text: str) -> str:
    with pytest.raises(RulebaseError) as info:
        parse_text(text, "bad.rules")
    (d,) = info.value.diagnostics
    return d.render()


def test_syntax_error_shows_location_caret_and_expected_words() -> None:
    assert render_error('规则 R1 "t" { 类别 适宜性.x 等级 }') == (
        'bad.rules:1:25: 语法错误：此处不应出现“}” (应为 “按表”、整数)\n'
        '    规则 R1 "t" { 类别 适宜性.x 等级 }\n'
        '    ' + ' ' * 33 + '^')


def test_syntax_error_on_a_later_line_quotes_that_line() -> None:
    assert render_error('规则 R1 "t" {\n  当 患者.年龄 > > 3\n}') == (
        'bad.rules:2:13: 语法错误：此处不应出现“>” (应为 “假”、“否”、“是”、“真”、“计数”、名称、带引号的文字、数字)\n'
        '      当 患者.年龄 > > 3\n'
        '    ' + ' ' * 17 + '^')


def test_unfinished_file_is_reported_with_chinese_keywords_expected() -> None:
    assert render_error('规则 R1 "t" {').startswith(
        "bad.rules:1:11: 语法错误：文件意外结束 (应为 “依据”、“对每个”、“对每对”、“建议”、“当”、“提示”、“等级”、“类别”、“范围”、“}”)")


def test_missing_rule_id_names_what_was_expected() -> None:
    assert "(应为 规则编号)" in render_error('规则 "t" { }')


def test_english_test_briefs_and_expectations() -> None:
    (t,) = parse_text('test "e" { patient age 64 岁 drug 辛伐他汀 40 mg qd expect fire R1 level 6 '
                      'expect nofire R2 expect none }').tests
    assert [b.entity for b in t.briefs] == ["patient", "item"]
    assert [(e.fires, e.rule_ids, e.levels) for e in t.expectations] == [
        (True, ("R1",), (6,)), (False, ("R2",), (None,)), (False, (), ())]


def test_english_pairs_quantifiers_and_overrides() -> None:
    f = parse_text('rule R "t" { for each pair a, b where any x: item where (x.injection) and a.ingredients = b.ingredients } '
                   'override R for institution_level = 村卫生室 { disable }')
    trig = f.rules[0].trigger
    assert isinstance(trig, n.ForEachPair) and (trig.first, trig.second) == ("a", "b")
    assert isinstance(trig.cond, n.And) and isinstance(trig.cond.operands[0], n.Quantified)
    assert f.overrides[0].disable and f.overrides[0].target is not None
