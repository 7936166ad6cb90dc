"""Table cells are checked against what the rules look up in each key column, at the CSV cell."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from audit_engine.errors import RulebaseError
from audit_engine.lang import nodes as n
from audit_engine.lang.checker import Vocabulary
from audit_engine.lang.loader import load_rulebase

from .conftest import rule

Load = Callable[..., n.Rulebase]
Errors = Callable[..., list[str]]

DDI = '表 相互作用 来自 "ddi.csv" { 键 成分甲, 成分乙 列 等级 整数, 来源 文本 }\n'
DDI_CSV = "成分甲,成分乙,等级,来源\n辛伐他汀,克拉霉素,8,说明书\n华法林,他汀类,5,说明书\n"
BY_INGREDIENT = rule("R1", "对每对 甲, 乙 满足 相互作用[甲.成分, 乙.成分] 存在")
BY_CLASS = rule("R2", "对每对 甲, 乙 满足 相互作用[甲.成分, 乙.类别] 存在")


def test_misspelled_ingredient_is_reported_at_its_csv_cell_with_a_suggestion(errors: Errors) -> None:
    (msg,) = errors(DDI + BY_INGREDIENT, **{"ddi.csv": DDI_CSV.replace("华法林,他汀类", "华法林,辛伐他丁")})
    assert msg == ("ddi.csv:3:5: 列“成分乙”：药品字典中没有成分“辛伐他丁” (是否应为“辛伐他汀”？)\n"
                   "    华法林,辛伐他丁,5,说明书\n"
                   "           ^^^^^^^^")


def test_a_column_fed_by_ingredients_and_classes_accepts_either(load: Load, errors: Errors) -> None:
    rb = load(DDI + BY_INGREDIENT + BY_CLASS, **{"ddi.csv": DDI_CSV})
    assert len(rb.tables["相互作用"].rows) == 2
    (msg,) = errors(DDI + BY_INGREDIENT + BY_CLASS, **{"ddi.csv": DDI_CSV + "华法林,他汀,5,说明书\n"})
    assert msg.splitlines()[0] == "ddi.csv:4:5: 列“成分乙”：药品字典中没有成分或药物类别“他汀” (是否应为“他汀类”？)"


def test_a_class_in_a_column_only_ingredients_feed_is_an_error(errors: Errors) -> None:
    """No rule passes a class to 成分乙, so the row 华法林 × 他汀类 could never match."""
    (msg,) = errors(DDI + BY_INGREDIENT, **{"ddi.csv": DDI_CSV})
    assert msg.splitlines()[0] == "ddi.csv:3:5: 列“成分乙”：“他汀类”不是成分：它是药物类别，但没有规则按药物类别查询此列"


def test_a_drug_name_column_is_checked_against_drug_names(errors: Errors) -> None:
    table = '表 剂量 来自 "dose.csv" { 键 药品 列 上限 数值 mg }\n'
    (msg,) = errors(table + rule("R1", "对每个 药品 满足 药品.日剂量 > 剂量[药品.名称].上限"),
                    **{"dose.csv": "药品,上限\n布洛芬,2400\n阿莫西林胶囊,3000\n"})
    assert msg.splitlines()[0] == "dose.csv:3:1: 列“药品”：药品字典中没有药品名称“阿莫西林胶囊” (是否应为“阿莫西林”？)"


def test_allergy_keys_accept_ingredients_and_classes(load: Load, errors: Errors) -> None:
    table = '表 过敏交叉 来自 "cross.csv" { 键 过敏原, 药品类别 列 等级 整数 }\n'
    text = table + rule("R1", "对每个 药品 满足 过敏交叉[患者.过敏, 药品.类别] 存在")
    assert load(text, **{"cross.csv": "过敏原,药品类别,等级\n青霉素类,青霉素类,8\n阿莫西林,青霉素类,8\n"})
    (msg,) = errors(text, **{"cross.csv": "过敏原,药品类别,等级\n青霉素,青霉素类,8\n"})
    assert msg.splitlines()[0] == "cross.csv:2:1: 列“过敏原”：药品字典中没有成分或药物类别“青霉素” (是否应为“青霉素类”？)"


def test_an_enum_field_admits_only_its_values(errors: Errors) -> None:
    table = '表 剂量 来自 "dose.csv" { 键 药品, 人群 列 上限 数值 mg }\n'
    (msg,) = errors(table + rule("R1", "对每个 药品 满足 药品.日剂量 > 剂量[药品.名称, 患者.人群].上限"),
                    **{"dose.csv": "药品,人群,上限\n布洛芬,成人,2400\n布洛芬,青年,2400\n"})
    assert msg == ("dose.csv:3:5: 列“人群”：“青年”不是患者人群 (是否应为“青少年”？)\n"
                   "    布洛芬,青年,2400\n"
                   "           ^^^^")


def test_a_diagnosis_code_column_holds_icd10_codes(errors: Errors) -> None:
    table = '表 禁忌 来自 "ci.csv" { 键 成分, ICD 前缀 列 说明 文本 }\n'
    (msg,) = errors(table + rule("R1", "对每个 药品 满足 禁忌[药品.成分, 患者.诊断编码] 存在"),
                    **{"ci.csv": "成分,ICD,说明\n布洛芬,K25,溃疡\n布洛芬,N18.4,肾病\n布洛芬,哮喘,哮喘\n"})
    assert msg.splitlines()[0] == "ci.csv:4:5: 列“ICD”：“哮喘”不是 ICD-10 编码或前缀（如 J45、N18.4）"


def test_a_column_fed_only_by_literal_keys_must_hold_one_of_them(errors: Errors) -> None:
    table = '表 肾 来自 "renal.csv" { 键 成分, 处置 列 等级 整数 }\n'
    rules = (rule("R1", '对每个 药品 满足 肾[药品.成分, "禁用"] 存在')
             + rule("R2", '对每个 药品 满足 肾[药品.成分, "慎用"] 存在'))
    (msg,) = errors(table + rules, **{"renal.csv": "成分,处置,等级\n布洛芬,禁用,8\n布洛芬,慎 用,4\n"})
    assert msg.splitlines()[0] == "renal.csv:3:5: 列“处置”：“慎 用”不是规则查询此列时用的值（禁用 / 慎用） (是否应为“慎用”？)"


def test_empty_key_cells_are_wildcards_and_need_no_name(load: Load) -> None:
    table = '表 剂量 来自 "dose.csv" { 键 药品, 人群 列 上限 数值 mg }\n'
    rb = load(table + rule("R1", "对每个 药品 满足 药品.日剂量 > 剂量[药品.名称, 患者.人群].上限"),
              **{"dose.csv": "药品,人群,上限\n布洛芬,,2400\n"})
    assert rb.tables["剂量"].rows[0]["人群"] is None


def test_a_column_also_fed_by_free_text_is_not_checked(load: Load) -> None:
    table = '表 剂型 来自 "forms.csv" { 键 名 列 说明 文本 }\n'
    rb = load(table + rule("R1", "对每个 药品 满足 剂型[药品.名称] 存在") + rule("R2", "对每个 药品 满足 剂型[药品.剂型] 存在"),
              **{"forms.csv": "名,说明\n缓释片,不可掰开\n"})
    assert len(rb.tables["剂型"].rows) == 1


def test_a_table_no_rule_looks_up_has_its_keys_unchecked(load: Load) -> None:
    rb = load(DDI + rule("R1", "当 患者.妊娠"), **{"ddi.csv": DDI_CSV + "不存在的药,另一个,3,说明书\n"})
    assert len(rb.tables["相互作用"].rows) == 3


def test_a_bad_cell_is_reported_once_however_many_rules_read_it(errors: Errors) -> None:
    rules = "".join(rule(f"R{i}", "对每对 甲, 乙 满足 相互作用[甲.成分, 乙.成分] 存在") for i in range(5))
    msgs = errors(DDI + rules, **{"ddi.csv": "成分甲,成分乙,等级,来源\n华法林,阿斯匹林,5,说明书\n"})
    assert [m.splitlines()[0] for m in msgs] == [
        "ddi.csv:2:5: 列“成分乙”：药品字典中没有成分“阿斯匹林” (是否应为“阿司匹林”？)"]


def test_without_a_dictionary_names_are_not_checked_but_enum_values_are(write: Callable[..., Path]) -> None:
    table = '表 剂量 来自 "dose.csv" { 键 药品, 人群 列 上限 数值 mg }\n'
    write("dose.csv", "药品,人群,上限\n任何药,成人,2400\n任何药,成年,2400\n")
    main = write("main.rules", table + rule("R1", "对每个 药品 满足 药品.日剂量 > 剂量[药品.名称, 患者.人群].上限"))
    with pytest.raises(RulebaseError) as info:
        load_rulebase(main, vocabulary=Vocabulary(open=True))
    assert [d.message for d in info.value.diagnostics] == ["列“人群”：“成年”不是患者人群"]


def test_every_row_must_name_its_source(errors: Errors) -> None:
    (msg,) = errors(DDI + rule("R1", "当 患者.妊娠"), **{"ddi.csv": DDI_CSV + "华法林,阿司匹林,5,\n"})
    assert msg == ("ddi.csv:4:12: 列“来源”为空：每行知识都须注明出处\n"
                   "    华法林,阿司匹林,5,\n"
                   "                      ^")


def test_a_level_column_read_by_several_rules_is_reported_once_at_the_cell(errors: Errors) -> None:
    head = '规则 {rid} "t" {{ 类别 适宜性.x 等级 按表 相互作用.等级 依据 "e" 对每对 甲, 乙 满足 相互作用[甲.成分, 乙.成分] 存在 提示 "m" }}\n'
    msgs = errors(DDI + head.format(rid="R1") + head.format(rid="R2"),
                  **{"ddi.csv": DDI_CSV.replace("他汀类", "辛伐他汀") + "华法林,阿司匹林,10,说明书\n"})
    assert msgs == ["ddi.csv:4:10: 列“等级”用作等级，但值“10”不是 0–9 的整数\n"
                    "    华法林,阿司匹林,10,说明书\n"
                    "                    ^^"]
