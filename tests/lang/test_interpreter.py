"""The reference interpreter follows the semantics written in nodes.py, on hand-built facts."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from audit_engine import schema, units
from audit_engine.findings import Finding
from audit_engine.lang import nodes as n
from audit_engine.lang.interpreter import Multi, Num, compare, evaluate

from .conftest import facts, item, rule

Load = Callable[..., n.Rulebase]


def fired(rb: n.Rulebase, f: schema.PrescriptionFacts) -> list[Finding]:
    return evaluate(rb, f)


def ids(rb: n.Rulebase, f: schema.PrescriptionFacts) -> list[str]:
    return [x.rule_id for x in evaluate(rb, f)]


def test_atom_on_an_absent_fact_is_false_and_not_is_plain_negation(load: Load) -> None:
    rb = load(rule("CHILD", "当 患者.年龄 < 12 岁") + rule("NOTCHRONIC", "当 不 患者.慢病"))
    assert ids(rb, facts()) == ["NOTCHRONIC"]
    assert ids(rb, facts(patient={"age_years": 8, "chronic": True})) == ["CHILD"]


def test_known_is_true_iff_present(load: Load) -> None:
    rb = load(rule("K", "当 已知 患者.年龄 且 不 已知 患者.eGFR"))
    assert ids(rb, facts(patient={"age_days": 10})) == ["K"]
    assert ids(rb, facts(patient={"age_days": 10, "egfr": 50.0})) == []


def test_dose_literal_unit_picks_the_variant_and_converts(load: Load) -> None:
    rb = load(rule("D", "对每个 药品 满足 药品.日剂量 > 4 g"))
    f = facts([item(1, daily_dose_mg=5000.0), item(2, daily_dose_mg=3000.0), item(3, daily_dose_iu=9e9)])
    assert [x.implicated for x in evaluate(rb, f)] == [("MedicationRequest/i1",)]


def test_age_units_read_their_own_keys(load: Load) -> None:
    rb = load(rule("NEWBORN", "当 患者.年龄 < 28 天") + rule("INFANT", "当 患者.年龄 < 6 月"))
    assert ids(rb, facts(patient={"age_days": 20, "age_months": 0, "age_years": 0})) == ["INFANT", "NEWBORN"]
    assert ids(rb, facts(patient={"age_years": 0})) == []


def test_single_unit_field_converts_the_literal_and_accepts_a_bare_number(load: Load) -> None:
    rb = load(rule("LIGHT", "当 患者.体重 < 40000 g") + rule("LONG", "对每个 药品 满足 药品.天数 > 7"))
    assert ids(rb, facts([item(1, days=10.0)], patient={"weight": 35.0})) == ["LIGHT", "LONG"]


def test_pair_is_tried_in_both_orders_and_reported_once_in_item_order(load: Load) -> None:
    rb = load(rule("P", '对每对 甲, 乙 满足 甲.成分 = "辛伐他汀" 且 乙.成分 = "氨氯地平"', message="{甲.名称}+{乙.名称}"))
    f = facts([item(1, name="氨氯地平", ingredients=["氨氯地平"]), item(2, name="辛伐他汀", ingredients=["辛伐他汀"])])
    (x,) = evaluate(rb, f)
    assert x.implicated == ("MedicationRequest/i1", "MedicationRequest/i2")
    assert x.message == "辛伐他汀+氨氯地平"


def test_symmetric_pair_condition_matching_both_orders_gives_one_finding(load: Load) -> None:
    rb = load(rule("DUP", "对每对 甲, 乙 满足 甲.成分 = 乙.成分", message="{甲.名称}"))
    f = facts([item(1, name="A1", ingredients=["布洛芬"]), item(2, name="A2", ingredients=["布洛芬", "对乙酰氨基酚"]),
               item(3, name="B", ingredients=["阿司匹林"])])
    (x,) = evaluate(rb, f)
    assert (x.implicated, x.message) == (("MedicationRequest/i1", "MedicationRequest/i2"), "A1")


def test_count_implicates_the_items_it_counted(load: Load) -> None:
    rb = load(rule("INJ", "当 计数 药品 满足 (药品.注射剂) > 1"))
    f = facts([item(1, injection=True), item(2, injection=False), item(3, injection=True)])
    (x,) = evaluate(rb, f)
    assert x.implicated == ("MedicationRequest/i1", "MedicationRequest/i3")
    assert ids(rb, facts([item(1, injection=True)])) == []


def test_prescription_rule_without_quantifier_implicates_all_items(load: Load) -> None:
    rb = load(rule("PREG", "当 患者.妊娠") + rule("NONE", "当 不 任一 药品 满足 (药品.基药)"))
    (none, preg) = evaluate(rb, facts([item(1), item(2)], patient={"pregnant": True}))
    assert preg.implicated == none.implicated == ("MedicationRequest/i1", "MedicationRequest/i2")


def test_all_over_an_empty_collection_is_true(load: Load) -> None:
    rb = load(rule("ALL", "当 所有 诊断 满足 (诊断.慢病)"))
    assert ids(rb, facts()) == ["ALL"]
    assert ids(rb, facts(diagnoses=[{"code": "I10", "chronic": False}])) == []


def test_ordered_enum_compares_by_position(load: Load) -> None:
    rb = load(rule("GRADE", "对每个 药品 满足 药品.抗菌级别 > 医师.抗菌药物权限"))
    f = facts([item(1, antimicrobial_grade="特殊使用级"), item(2, antimicrobial_grade="非限制使用级")],
              prescriber={"antimicrobial_grade": "限制使用级"})
    assert [x.implicated for x in evaluate(rb, f)] == [("MedicationRequest/i1",)]


def test_text_sets_membership_contains_and_icd_prefix(load: Load) -> None:
    rb = load(rule("ALLERGY", "对每个 药品 满足 药品.类别 = 患者.过敏") +
              rule("NSAID", '对每个 药品 满足 药品.类别 包含 "非甾体抗炎药"') +
              rule("CKD", '当 患者.诊断编码 开头为 ("N18", "N19") 且 处方.类型 属于 (门诊, 急诊)') +
              rule("NOTIN", '对每个 药品 满足 药品.成分 != "布洛芬"'))
    f = facts([item(1, classes=["青霉素类", "抗菌药物"], ingredients=["阿莫西林"]),
               item(2, classes=["非甾体抗炎药"], ingredients=["布洛芬"])],
              patient={"allergies": ["青霉素类"], "diagnosis_codes": ["I10", "N18.4"]}, prescription={"type": "门诊"})
    got = sorted((x.rule_id, x.implicated) for x in evaluate(rb, f))
    assert got == [("ALLERGY", ("MedicationRequest/i1",)),
                   ("CKD", ("MedicationRequest/i1", "MedicationRequest/i2")),
                   ("NOTIN", ("MedicationRequest/i1",)),
                   ("NSAID", ("MedicationRequest/i2",))]


def test_between_is_inclusive(load: Load) -> None:
    rb = load(rule("B", "对每个 药品 满足 药品.天数 介于 3 和 7"))
    f = facts([item(k, days=float(d)) for k, d in enumerate([2, 3, 7, 8], start=1)])
    assert [x.implicated[0][-2:] for x in evaluate(rb, f)] == ["i2", "i3"]


DDI = ('表 相互作用 来自 "ddi.csv" { 键 成分甲, 成分乙 列 等级 整数, 机制 文本 优先 等级 最高 }\n')
DDI_CSV = ("成分甲,成分乙,等级,机制\n"
           "华法林,,3,华法林通用提示\n"
           "华法林,阿司匹林,6,出血风险\n"
           "华法林,阿司匹林,8,出血风险（严重）\n")


def test_table_lookup_prefers_specific_then_highest_and_set_keys_match_any_element(load: Load) -> None:
    rb = load(DDI + '规则 DDI "相互作用" { 类别 适宜性.相互作用 等级 按表 相互作用.等级 依据 "表" '
              '对每对 甲, 乙 满足 相互作用[甲.成分, 乙.成分] 存在 提示 "{甲.名称}与{乙.名称}：{相互作用.机制}" }\n',
              **{"ddi.csv": DDI_CSV})
    warfarin = item(1, name="华法林钠", ingredients=["华法林"])
    combo = item(2, name="复方阿司匹林", ingredients=["咖啡因", "阿司匹林"])
    other = item(3, name="X", ingredients=["维生素C"])
    got = [(x.implicated, x.level, x.message) for x in evaluate(rb, facts([warfarin, combo, other]))]
    assert got == [
        (("MedicationRequest/i1", "MedicationRequest/i2"), 8, "华法林钠与复方阿司匹林：出血风险（严重）"),
        (("MedicationRequest/i1", "MedicationRequest/i3"), 3, "华法林钠与X：华法林通用提示"),
    ]


def test_table_quantity_with_unit_per_row_compares_in_base_units(load: Load) -> None:
    rb = load('表 最大日剂量 来自 "max.csv" { 键 成分 列 上限 数值 单位见 单位, 单位 文本 }\n' +
              rule("MAX", "对每个 药品 满足 药品.日剂量 > 最大日剂量[药品.成分].上限",
                   message="{药品.名称} {药品.日剂量} > {最大日剂量.上限} {最大日剂量.单位}"),
              **{"max.csv": "成分,上限,单位\n布洛芬,2.4,g\n胰岛素,40,IU\n"})
    f = facts([item(1, name="布洛芬", ingredients=["布洛芬"], daily_dose_mg=3200.0),
               item(2, name="布洛芬", ingredients=["布洛芬"], daily_dose_mg=1200.0),
               item(3, name="胰岛素", ingredients=["胰岛素"], daily_dose_iu=50.0, daily_dose_mg=999.0)])
    got = [(x.implicated[0][-2:], x.message) for x in evaluate(rb, f)]
    assert got == [("i1", "布洛芬 3200 mg > 2.4 g"), ("i3", "胰岛素 999 mg > 40 IU")]


def test_fixed_unit_column_renders_with_its_unit(load: Load) -> None:
    rb = load('表 上限表 来自 "max.csv" { 键 成分 列 上限 数值 g }\n' +
              rule("MAX", "对每个 药品 满足 药品.日剂量 > 上限表[药品.成分].上限", message="上限 {上限表.上限}"),
              **{"max.csv": "成分,上限\n布洛芬,2.4\n"})
    f = facts([item(1, ingredients=["布洛芬"], daily_dose_mg=2401.0), item(2, ingredients=["布洛芬"], daily_dose_mg=2400.0)])
    assert [(x.implicated[0][-2:], x.message) for x in evaluate(rb, f)] == [("i1", "上限 2.4 g")]


def test_prefix_key_column_matches_icd_codes(load: Load) -> None:
    rb = load('表 禁忌 来自 "ci.csv" { 键 成分, ICD 前缀 列 说明 文本 }\n' +
              rule("CI", "对每个 药品 满足 禁忌[药品.成分, 患者.诊断编码] 存在", message="{禁忌.说明}"),
              **{"ci.csv": "成分,ICD,说明\n布洛芬,K25,消化性溃疡禁用\n"})
    f = facts([item(1, ingredients=["布洛芬"])], patient={"diagnosis_codes": ["I10", "K25.3"]})
    assert [x.message for x in evaluate(rb, f)] == ["消化性溃疡禁用"]
    assert evaluate(rb, facts([item(1, ingredients=["布洛芬"])], patient={"diagnosis_codes": ["K26"]})) == []


def test_placeholders_render_absent_sets_bools_and_numbers(load: Load) -> None:
    rb = load(rule("M", "对每个 药品 满足 药品.天数 > 0",
                   message="{药品.成分}|{药品.日剂量}|{患者.体重}|{药品.天数}|{患者.妊娠}|{患者.年龄}"))
    f = facts([item(1, ingredients=["a", "b"], days=7.5)], patient={"pregnant": False, "age_years": 64})
    assert evaluate(rb, f)[0].message == "a、b|未知|未知|7.5|否|64 岁"


def test_scope_and_institution_variants_apply_at_evaluation(load: Load) -> None:
    rb = load(rule("DAYS", "对每个 药品 满足 药品.天数 > 7", extra='范围 处方类型 = 门诊, 生效 "2026-01-01"') +
              "覆盖 DAYS 对 机构级别 = 村卫生室 { 等级 8 }\n覆盖 DAYS 对 机构级别 = 县级医院 { 停用 }\n")
    base = {"type": "门诊", "date": "2026-06-01"}
    its = [item(1, days=10.0)]
    assert [x.level for x in evaluate(rb, facts(its, prescription=base, institution={"level": "乡镇卫生院"}))] == [5]
    assert [x.level for x in evaluate(rb, facts(its, prescription=base, institution={"level": "村卫生室"}))] == [8]
    assert evaluate(rb, facts(its, prescription=base, institution={"level": "县级医院"})) == []
    assert evaluate(rb, facts(its, prescription={"type": "急诊", "date": "2026-06-01"})) == []
    assert evaluate(rb, facts(its, prescription={"type": "门诊", "date": "2025-12-31"})) == []
    assert evaluate(rb, facts(its, prescription={"type": "门诊"})) == []


def test_findings_carry_rule_metadata_and_are_sorted_by_level(load: Load) -> None:
    rb = load(rule("LOW", "当 患者.妊娠") +
              '规则 HIGH "高" { 类别 合法性.资质 等级 9 依据 "办法" 当 患者.妊娠 提示 "m" 建议 "改 {患者.妊娠}" }\n')
    high, low = evaluate(rb, facts([item(1)], patient={"pregnant": True}))
    assert (high.rule_id, high.category, high.subtype, high.level, high.evidence, high.suggestion, high.source) == (
        "HIGH", "合法性", "资质", 9, "办法", "改 是", "main.rules:2")
    assert low.rule_id == "LOW" and low.suggestion is None


def test_no_items_and_no_facts_produce_no_item_findings(load: Load) -> None:
    rb = load(rule("D", "对每个 药品 满足 药品.日剂量 > 4 g") + rule("P", "对每对 甲, 乙 满足 甲.成分 = 乙.成分"))
    assert evaluate(rb, facts()) == []


UNIT_FACTORS = {"mg": 1.0, "g": 1000.0, "µg": 0.001}


@settings(max_examples=200, deadline=None)
@given(value_mg=st.floats(min_value=0, max_value=1e7, allow_nan=False),
       threshold=st.floats(min_value=0, max_value=1e4, allow_nan=False),
       unit=st.sampled_from(sorted(UNIT_FACTORS)),
       op=st.sampled_from([">", ">=", "<", "<="]))
def test_dose_comparison_agrees_with_plain_arithmetic_in_any_mass_unit(value_mg: float, threshold: float,
                                                                        unit: str, op: str) -> None:
    field = schema.field_of("item", "daily_dose")
    assert field is not None
    expected = {">": value_mg > threshold * UNIT_FACTORS[unit], ">=": value_mg >= threshold * UNIT_FACTORS[unit],
                "<": value_mg < threshold * UNIT_FACTORS[unit], "<=": value_mg <= threshold * UNIT_FACTORS[unit]}[op]
    got = compare(op, Multi({"daily_dose_mg": value_mg}, field), Num(threshold, unit))
    # Float conversion may differ from the multiplication above only at the exact boundary.
    if abs(value_mg - threshold * UNIT_FACTORS[unit]) > 1e-6 * max(1.0, value_mg):
        assert got == expected
    flipped = {">": "<", ">=": "<=", "<": ">", "<=": ">="}[op]
    assert compare(flipped, Num(threshold, unit), Multi({"daily_dose_mg": value_mg}, field)) == got


@settings(max_examples=100, deadline=None)
@given(grams=st.integers(min_value=0, max_value=100), value_mg=st.integers(min_value=0, max_value=200_000))
def test_the_same_threshold_in_g_and_mg_gives_the_same_answer(grams: int, value_mg: int) -> None:
    field = schema.field_of("item", "daily_dose")
    assert field is not None
    multi: Any = Multi({"daily_dose_mg": float(value_mg)}, field)
    assert compare(">", multi, Num(float(grams), "g")) == compare(">", multi, Num(grams * 1000.0, "mg"))
    assert units.convert(grams, "g", "mg") == grams * 1000.0


# --- robustness: any facts, sorted findings, never an exception ----------------------------------

_SAMPLE = None


def _sample() -> n.Rulebase:
    global _SAMPLE
    if _SAMPLE is None:
        from pathlib import Path

        from audit_engine.lang.loader import load_rulebase

        _SAMPLE = load_rulebase(Path(__file__).resolve().parents[2] / "fixtures" / "rules" / "sample")
    return _SAMPLE


_item_fields = st.fixed_dictionaries({}, optional={
    "name": st.sampled_from(["辛伐他汀", "氨氯地平", "克拉霉素", "布洛芬"]),
    "ingredients": st.lists(st.sampled_from(["辛伐他汀", "氨氯地平", "克拉霉素", "布洛芬", "华法林", "阿司匹林"]),
                            max_size=2, unique=True).map(sorted),
    "classes": st.lists(st.sampled_from(["他汀类", "非甾体抗炎药"]), max_size=2, unique=True).map(sorted),
    "daily_dose_mg": st.floats(min_value=0, max_value=1e5),
    "days": st.floats(min_value=0, max_value=90),
    "injection": st.booleans(),
    "overdose_reason": st.booleans(),
})


@settings(max_examples=150, deadline=None)
@given(items=st.lists(_item_fields, max_size=5),
       patient=st.fixed_dictionaries({}, optional={"pregnant": st.booleans(), "chronic": st.booleans(),
                                                   "age_years": st.integers(0, 100),
                                                   "population": st.sampled_from(["成人", "儿童", "老年"])}),
       rx_type=st.sampled_from([None, "门诊", "急诊"]),
       level=st.sampled_from([None, "村卫生室", "县级医院", "乡镇卫生院"]))
def test_evaluation_never_fails_and_findings_are_sorted_and_unique(
        items: list[dict[str, Any]], patient: dict[str, Any], rx_type: str | None, level: str | None) -> None:
    f = facts([item(k, **fields) for k, fields in enumerate(items)], patient=patient,
              prescription={"type": rx_type} if rx_type else {}, institution={"level": level} if level else {})
    found = evaluate(_sample(), f)
    assert found == sorted(set(found), key=lambda x: (x.sort_key(), x.message))
    refs = {it["reference"] for it in f.items}
    assert all(set(x.implicated) <= refs and 0 <= x.level <= 9 for x in found)
    if level == "县级医院":
        assert "INJ-COUNT" not in {x.rule_id for x in found}
