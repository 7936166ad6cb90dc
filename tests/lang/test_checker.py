"""The checker reports every problem at once, each with file:line:col, the line, a caret and a hint."""

from __future__ import annotations

from collections.abc import Callable

from hypothesis import given, settings
from hypothesis import strategies as st

from audit_engine.errors import Diagnostic, display_width
from audit_engine.lang import nodes as n
from audit_engine.lang.checker import Checker
from audit_engine.lang.parser import parse_text

from .conftest import VOCAB, rule

Errors = Callable[..., list[str]]


def test_unknown_field_suggests_closest_name(errors: Errors) -> None:
    assert errors(rule("R1", "当 患者.体种 > 3 kg")) == [
        'main.rules:1:45: 未知字段“患者.体种” (是否应为“患者.体重”？)\n'
        '    规则 R1 "R1 标题" { 类别 适宜性.测试 等级 5 依据 "测试依据"  当 患者.体种 > 3 kg 提示 "触发" }\n'
        '    ' + ' ' * 64 + '^' * 9]  # the caret follows display width: a CJK character takes two columns


def test_unknown_entity_suggests_closest_entity(errors: Errors) -> None:
    (msg,) = errors(rule("R1", "当 患着.年龄 > 3 岁"))
    assert msg.startswith("main.rules:1:45: 未知的实体或变量“患着” (是否应为“患者”？)")


def test_item_fields_outside_a_quantifier_are_rejected(errors: Errors) -> None:
    (msg,) = errors(rule("R1", "当 药品.注射剂"))
    assert msg.startswith("main.rules:1:45: “药品”须在“对每个 / 对每对 / 任一 / 所有 / 计数”之内使用")


def test_dose_compared_without_a_unit_is_an_error(errors: Errors) -> None:
    (msg,) = errors(rule("R1", "对每个 药品 满足 药品.日剂量 > 4"))
    assert msg.splitlines()[0] == "main.rules:1:62: 与“药品.日剂量”比较的数值需写明单位（如 IU、mg、mL）"
    assert msg.splitlines()[2].endswith("^")


def test_unit_dimension_mismatch_names_both_sides(errors: Errors) -> None:
    (msg,) = errors(rule("R1", "对每个 药品 满足 药品.日剂量 > 5 天"))
    assert msg.splitlines()[0] == (
        "main.rules:1:62: 单位不匹配：“药品.日剂量”的单位是 IU、mg、mL 一类，“5 天”是 天 一类")
    assert msg.splitlines()[2].endswith("^^^")


def test_unknown_unit_suggests_a_known_one(errors: Errors) -> None:
    (msg,) = errors(rule("R1", "对每个 药品 满足 药品.日剂量 > 5 mgg"))
    assert msg.splitlines()[0] == "main.rules:1:62: 未知单位“mgg” (是否应为“mg”？)"


def test_text_compared_with_a_number_is_a_type_mismatch(errors: Errors) -> None:
    (msg,) = errors(rule("R1", "当 患者.妊娠 = 3"))
    assert msg.splitlines()[0] == "main.rules:1:53: 类型不匹配：“患者.妊娠”是是/否，“3”是数值"


def test_count_compared_with_a_unit_is_an_error(errors: Errors) -> None:
    (msg,) = errors(rule("R1", "当 计数 药品 > 3 天"))
    assert msg.splitlines()[0] == "main.rules:1:45: “计数 药品”没有单位，不能与带单位的量比较"


def test_unordered_text_cannot_use_less_than(errors: Errors) -> None:
    (msg,) = errors(rule("R1", "对每对 甲, 乙 满足 甲.名称 > 乙.名称"))
    assert msg.splitlines()[0] == "main.rules:1:55: 文本只能用 = 或 != 比较"


def test_ordered_enum_may_use_less_than(load: Callable[..., n.Rulebase]) -> None:
    rb = load(rule("R1", "对每个 药品 满足 药品.抗菌级别 > 医师.抗菌药物权限 且 药品.抗菌级别 >= 限制使用级"))
    assert [r.id for r in rb.rules] == ["R1"]


def test_unknown_enum_value_suggests_a_member(errors: Errors) -> None:
    (msg,) = errors(rule("R1", "当 患者.性别 = 男士"))
    assert msg.splitlines()[0] == "main.rules:1:53: “男士”不是“性别”的取值，可选：男 / 女 / 未知 (是否应为“男”？)"


def test_unknown_ingredient_and_class_come_from_the_dictionary(errors: Errors) -> None:
    msgs = errors(rule("R1", '对每个 药品 满足 药品.成分 = "辛伐他丁" 且 药品.类别 包含 "他丁类"'))
    assert [m.splitlines()[0] for m in msgs] == [
        "main.rules:1:61: 药品字典中没有成分“辛伐他丁” (是否应为“辛伐他汀”？)",
        "main.rules:1:79: 药品字典中没有药物类别“他丁类” (是否应为“他汀类”？)"]


def test_bare_non_boolean_field_cannot_be_a_condition(errors: Errors) -> None:
    (msg,) = errors(rule("R1", "当 患者.年龄"))
    assert msg.splitlines()[0] == "main.rules:1:45: “患者.年龄”不是是/否字段，不能单独作为条件，请写出比较"


def test_duplicate_rule_ids_point_at_the_first_definition(errors: Errors) -> None:
    (msg,) = errors(rule("R1", "当 患者.妊娠") + rule("R1", "当 患者.哺乳"))
    assert msg.splitlines()[0] == "main.rules:2:4: 规则编号 R1 重复（首次定义于 main.rules:1）"


def test_duplicate_rule_ids_across_imports_are_found(errors: Errors) -> None:
    (msg,) = errors('导入 "base.rules"\n' + rule("R1", "当 患者.妊娠"), **{"base.rules": rule("R1", "当 患者.哺乳")})
    assert msg.splitlines()[0] == "main.rules:2:4: 规则编号 R1 重复（首次定义于 base.rules:1）"


def test_missing_evidence_category_and_message_are_each_reported(errors: Errors) -> None:
    msgs = errors('规则 R1 "t" { 等级 3 当 患者.妊娠 }')
    assert [m.splitlines()[0] for m in msgs] == [
        "main.rules:1:4: 规则 R1 缺少类别", "main.rules:1:4: 规则 R1 缺少依据", "main.rules:1:4: 规则 R1 缺少提示"]


def test_level_outside_zero_to_nine(errors: Errors) -> None:
    msgs = errors('规则 R1 "t" { 类别 适宜性.x 等级 12 依据 "e" 当 患者.妊娠 提示 "m" }')
    assert [m.splitlines()[0] for m in msgs] == ["main.rules:1:25: 等级 12 超出范围 0–9"]


def test_unknown_category_suggests_one(errors: Errors) -> None:
    (msg,) = errors('规则 R1 "t" { 类别 合法.x 等级 1 依据 "e" 当 患者.妊娠 提示 "m" }')
    assert msg.splitlines()[0] == "main.rules:1:16: 未知类别“合法”，应为 合法性 / 规范性 / 适宜性 (是否应为“合法性”？)"


def test_duplicate_clause_is_reported(errors: Errors) -> None:
    (msg,) = errors('规则 R1 "t" { 类别 适宜性.x 等级 1 等级 2 依据 "e" 当 患者.妊娠 提示 "m" }')
    assert msg.splitlines()[0] == "main.rules:1:30: 规则 R1 的这一子句重复出现"


def test_bad_placeholders_are_reported(errors: Errors) -> None:
    msgs = errors(rule("R1", "对每个 药品 满足 药品.注射剂", message="{药品.名程} {甲.名称} {名称}"))
    assert [m.splitlines()[0] for m in msgs] == [
        "main.rules:1:64: 药品没有字段“名程” (是否应为“名称”？)",
        "main.rules:1:72: 占位符中的“甲”既不是实体、变量，也不是表",
        "main.rules:1:79: 占位符“{名称}”应写成 {实体.字段} 或 {表.列}"]


def test_override_of_a_missing_rule_suggests_an_existing_one(errors: Errors) -> None:
    (msg,) = errors(rule("DAYS-7", "当 患者.妊娠") + "覆盖 DAYS-8 { 停用 }\n")
    assert msg == "main.rules:2:4: 覆盖的规则 DAYS-8 不存在 (是否应为“DAYS-7”？)\n    覆盖 DAYS-8 { 停用 }\n         ^^^^^^"


def test_scope_values_and_dates_are_checked(errors: Errors) -> None:
    msgs = errors(rule("R1", "当 患者.妊娠", extra='范围 机构级别 = 村卫生所, 处方类型 = 住院, 生效 "2026-13"'))
    assert [m.splitlines()[0] for m in msgs] == [
        "main.rules:1:45: 未知的机构级别“村卫生所”，可选：县级医院 / 乡镇卫生院 / 社区卫生服务中心 / 村卫生室 (是否应为“村卫生室”？)",
        "main.rules:1:58: 未知的处方类型“住院”，可选：门诊 / 急诊",
        "main.rules:1:69: 日期“2026-13”应写成 YYYY-MM-DD"]


TABLE = '表 相互作用 来自 "tables/ddi.csv" { 键 成分甲, 成分乙 列 等级 整数, 机制 文本 }\n'
CSV = "成分甲,成分乙,等级,机制\n辛伐他汀,克拉霉素,8,CYP3A4\n"


def test_unknown_table_and_column_suggest_names(errors: Errors) -> None:
    msgs = errors(TABLE + rule("R1", "对每对 甲, 乙 满足 相互作用x[甲.成分, 乙.成分] 存在 且 相互作用[甲.成分, 乙.成分].机理 = \"x\""),
                  **{"tables__ddi.csv": CSV})
    source, caret = msgs[1].splitlines()[1:3]
    bad = "相互作用[甲.成分, 乙.成分].机理"
    # the caret sits under the bad column by display width (a CJK character takes two columns)
    assert caret == " " * display_width(source[: source.index(bad)]) + "^" * display_width(bad)
    assert [m.splitlines()[0] for m in msgs] == [
        "main.rules:2:55: 未知的表“相互作用x” (是否应为“相互作用”？)",
        "main.rules:2:78: 表“相互作用”没有列“机理” (是否应为“机制”？)"]


def test_lookup_with_the_wrong_number_of_keys(errors: Errors) -> None:
    (msg,) = errors(TABLE + rule("R1", "对每个 药品 满足 相互作用[药品.成分] 存在"), **{"tables__ddi.csv": CSV})
    assert msg.splitlines()[0] == "main.rules:2:53: 表“相互作用”有 2 个键（成分甲、成分乙），这里给了 1 个"


def test_table_placeholder_needs_a_rule_level_lookup(errors: Errors) -> None:
    (msg,) = errors(TABLE + rule("R1", "当 患者.妊娠", message="{相互作用.机制}"), **{"tables__ddi.csv": CSV})
    assert msg.splitlines()[0] == "main.rules:2:55: 条件中没有在规则层面查询表“相互作用”，无法取其列“机制”"


def test_csv_problems_report_the_csv_line(errors: Errors) -> None:
    msgs = errors(TABLE + rule("R1", "当 患者.妊娠"), **{"tables__ddi.csv": CSV + "华法林,阿司匹林,高,出血\n"})
    assert msgs == ["tables/ddi.csv:3:10: 列“等级”：“高”不是数字\n    华法林,阿司匹林,高,出血\n                    ^^"]


def test_csv_missing_declared_column_suggests_a_header(errors: Errors) -> None:
    (msg,) = errors(TABLE.replace("机制 文本", "机理 文本") + rule("R1", "当 患者.妊娠"), **{"tables__ddi.csv": CSV})
    assert msg == "tables/ddi.csv:1:1: 表头缺少声明的列“机理” (是否应为“机制”？)\n    成分甲,成分乙,等级,机制\n    ^^"


def test_missing_csv_file_points_at_the_declaration(errors: Errors) -> None:
    (msg,) = errors(TABLE + rule("R1", "当 患者.妊娠"))
    assert msg.splitlines()[0] == "main.rules:1:3: 表“相互作用”的文件不存在：tables/ddi.csv"


def test_table_level_column_values_must_be_levels(errors: Errors) -> None:
    msgs = errors(TABLE + '规则 R1 "t" { 类别 适宜性.x 等级 按表 相互作用.等级 依据 "e" '
                  '对每对 甲, 乙 满足 相互作用[甲.成分, 乙.成分] 存在 提示 "m" }',
                  **{"tables__ddi.csv": CSV + "华法林,阿司匹林,12,出血\n"})
    assert [m.splitlines()[0] for m in msgs] == ["tables/ddi.csv:3:10: 列“等级”用作等级，但值“12”不是 0–9 的整数"]


def test_all_errors_are_reported_together(errors: Errors) -> None:
    msgs = errors(rule("R1", "当 患者.体种 > 3 kg") + rule("R2", "当 患者.性别 = 男士") + "覆盖 R9 { 停用 }\n")
    assert [m.split(":")[1] for m in msgs] == ["1", "2", "3"]


# --- robustness: any syntactically valid rule is checked without crashing ------------------------


_FIELDS = ["患者.年龄", "患者.体重", "药品.日剂量", "药品.天数", "处方.类型", "药品.成分", "患者.妊娠", "甲.名称",
           "药品.抗菌级别", "医师.抗菌药物权限", "诊断.编码", "x.类别", "患者.不存在", "T.列"]
_VALUES = ["3", "4 g", "0.5 mg/kg", '"门诊"', "门诊", "是", "T[药品.成分].上限", "计数 药品", "12 岁", "5 天", '"他汀类"']
_atoms = st.one_of(
    st.builds(lambda f, op, v: f"{f} {op} {v}", st.sampled_from(_FIELDS), st.sampled_from(["=", "!=", "<", ">="]),
              st.sampled_from(_VALUES + _FIELDS)),
    st.builds(lambda f: f"已知 {f}", st.sampled_from(_FIELDS)),
    st.sampled_from(_FIELDS),
    st.builds(lambda f, v: f"{f} 包含 {v}", st.sampled_from(_FIELDS), st.sampled_from(_VALUES)),
    st.builds(lambda f: f"{f} 介于 1 和 3 g", st.sampled_from(_FIELDS)),
    st.just("T[药品.成分, 患者.人群] 存在"),
)
_conds = st.recursive(_atoms, lambda inner: st.one_of(
    st.builds(lambda a, b: f"{a} 且 {b}", inner, inner),
    st.builds(lambda a: f"不 ({a})", inner),
    st.builds(lambda a: f"任一 x: 药品 满足 ({a})", inner),
    st.builds(lambda a: f"计数 诊断 满足 ({a}) > 1", inner)), max_leaves=6)


@settings(max_examples=150, deadline=None)
@given(trigger=st.sampled_from(["当", "对每个 药品 满足", "对每对 甲, 乙 满足", "对每个 诊断 满足"]), cond=_conds,
       message=st.sampled_from(["{药品.名称}", "{甲.名称}", "{T.列}", "{患者.年龄}", "{x}", "纯文字"]))
def test_checker_never_crashes_on_a_parsed_rule(trigger: str, cond: str, message: str) -> None:
    (parsed,) = parse_text(f'规则 R "t" {{ 类别 适宜性.x 等级 3 依据 "e" {trigger} {cond} 提示 "{message}" }}',
                           "fuzz.rules").rules
    diags: list[Diagnostic] = []
    checked = Checker({}, {}, VOCAB, diags).check_rule(parsed)
    assert checked.id == "R"
    assert all(d.file == "fuzz.rules" and d.line == 1 and d.col >= 1 for d in diags)
