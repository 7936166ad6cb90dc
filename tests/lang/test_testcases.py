"""Test briefs become facts the way the normaliser would build them, and cases are judged."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from audit_engine.findings import Finding
from audit_engine.lang import nodes as n
from audit_engine.lang.parser import parse_text
from audit_engine.lang.testcases import build_facts, check_case, judge


def case(body: str) -> n.TestCase:
    (t,) = parse_text(f'测试 "例" {{ {body} }}', "t.rules").tests
    return t


def test_patient_brief_sets_fields_units_and_population() -> None:
    facts, diags = build_facts(case('患者 年龄 64 岁 体重 60000 g 身高 1.7 m eGFR 25 性别 女 妊娠 哺乳 否 过敏 "青霉素类" "磺胺类"'))
    assert diags == []
    p = facts.patient
    assert (p["age_years"], p["age_months"], p["population"]) == (64, 768, "成人")
    assert (p["weight"], p["height"], p["egfr"], p["sex"]) == (60.0, 170.0, 25.0, "女")
    assert (p["pregnant"], p["lactating"], p["allergies"]) == (True, False, ["磺胺类", "青霉素类"])


@pytest.mark.parametrize(("age", "band"), [("10 天", "新生儿"), ("6 月", "婴儿"), ("2 岁", "幼儿"), ("70 岁", "老年")])
def test_age_in_any_unit_gives_the_population_band(age: str, band: str) -> None:
    facts, _ = build_facts(case(f"患者 年龄 {age}"))
    assert facts.patient["population"] == band


def test_item_brief_resolves_the_drug_and_computes_daily_and_per_kg_doses() -> None:
    facts, diags = build_facts(case("患者 体重 20 kg 药品 布洛芬 200 mg tid 5 天 按需 超量理由"))
    assert diags == []
    (it,) = facts.items
    assert (it["name"], it["ingredients"], it["reference"]) == ("布洛芬", ["布洛芬"], "MedicationRequest/item1")
    assert (it["dose_mg"], it["daily_dose_mg"], it["frequency"], it["days"]) == (200.0, 600.0, 3.0, 5.0)
    assert (it["dose_per_kg"], it["daily_dose_per_kg"]) == (10.0, 30.0)
    assert it["prn"] is True and it["overdose_reason"] is True


@pytest.mark.parametrize(("freq", "per_day"), [("每日1次", 1.0), ("每8小时", 3.0), ("q12h", 2.0), ("bid", 2.0),
                                               ("qid", 4.0), ("qn", 1.0)])
def test_frequencies_are_read_per_day(freq: str, per_day: float) -> None:
    facts, _ = build_facts(case(f"药品 辛伐他汀 20 mg {freq}"))
    assert facts.items[0]["frequency"] == per_day
    assert facts.items[0]["daily_dose_mg"] == 20 * per_day


def test_grams_are_held_in_milligrams_and_weeks_in_days() -> None:
    facts, _ = build_facts(case("药品 阿莫西林 0.5 g tid 2 周 静滴"))
    it = facts.items[0]
    assert (it["dose_mg"], it["daily_dose_mg"], it["days"], it["route"]) == (500.0, 1500.0, 14.0, "静滴")


def test_prescription_prescriber_institution_and_diagnoses() -> None:
    facts, diags = build_facts(case('处方 急诊 科室 "儿科" 长期处方 日期 "2026-11-23" 医师 主治医师 处方权 "麻醉药品处方权" '
                                    '机构 村卫生室 编码 "V001" 诊断 "N18.4" 名称 "慢性肾脏病4期" 慢病 药品 布洛芬 200 mg'))
    assert diags == []
    assert facts.prescription == {"type": "急诊", "department": "儿科", "long_term": True, "date": "2026-11-23",
                                  "item_count": 1, "has_herbal": False, "has_western": True}
    assert facts.prescriber == {"title": "主治医师", "rights": ["麻醉药品处方权"], "antimicrobial_grade": "限制使用级"}
    assert facts.institution == {"level": "村卫生室", "code": "V001"}
    assert facts.diagnoses == [{"code": "N18.4", "name": "慢性肾脏病4期", "chronic": True}]
    assert facts.patient["diagnosis_codes"] == ["N18.4"] and facts.patient["chronic"] is True


def test_unknown_words_and_drugs_are_diagnostics_with_suggestions() -> None:
    c = case("患者 体种 20 kg 药品 辛伐他丁 20 mg 期望 触发 R1")
    msgs = [(d.line, d.col, d.message, d.hint) for d in check_case(c, {"R1"})]
    assert msgs == [(1, 13, "未知的患者信息“体种”", "是否应为“体重”？"),
                    (1, 25, "药品字典中没有“辛伐他丁”", "是否应为“辛伐他汀”？")]


def test_unknown_expected_rule_and_missing_expectation_are_diagnostics() -> None:
    assert [d.message for d in check_case(case("期望 触发 R2"), {"R1"})] == ["期望中的规则 R2 不存在"]
    assert [d.message for d in check_case(case("患者 年龄 3 岁"), {"R1"})] == ["测试“例”没有“期望”"]


def finding(rid: str, level: int = 5) -> Finding:
    return Finding(rid, "t", "适宜性", "x", level, "m", "e")


def test_judge_reports_missing_unexpected_and_wrong_level() -> None:
    c = case("期望 触发 A 等级 6, B 期望 不触发 C")
    assert judge(c, [finding("A", 6), finding("B")]) == []
    assert judge(c, [finding("A", 5), finding("C")]) == [
        "期望 A 等级 6，实际等级 5", "期望触发 B，但未触发", "期望不触发 C，但触发了"]


def test_expect_none_fails_on_any_finding() -> None:
    c = case("期望 无")
    assert judge(c, []) == []
    assert judge(c, [finding("X")]) == ["期望无任何触发，但触发了 X"]


def test_loading_a_rulebase_checks_its_test_briefs(errors: Callable[..., list[str]]) -> None:
    from .conftest import rule

    (msg,) = errors(rule("R1", "当 患者.妊娠") + '测试 "t" { 患者 妊娠 药品 辛伐他汀 20 mg 期望 触发 R9 }\n')
    assert msg.splitlines()[0] == "main.rules:2:30: 期望中的规则 R9 不存在 (是否应为“R1”？)"


def test_a_drug_name_with_a_form_word_resolves_to_that_form() -> None:
    facts, diags = build_facts(case("药品 阿莫西林胶囊 0.5 g tid 3 天"))
    assert diags == []
    it = facts.items[0]
    assert it["name"] == "阿莫西林" and it["form"] == "胶囊" and it["daily_dose_mg"] == 1500.0


def test_a_word_of_another_entity_goes_there_and_semicolons_end_lines() -> None:
    facts, diags = build_facts(case('处方 门诊 科室 "内科" 机构 村卫生室 长期处方; 医师 住院医师; 期望 无'))
    assert diags == []
    assert facts.prescription["long_term"] is True and facts.institution == {"level": "村卫生室"}
    assert facts.prescriber["title"] == "住院医师"
