"""What a finding shows is what the pharmacist cited: the driving table row's own source, and
doses in the unit the drug was prescribed in."""

from __future__ import annotations

from typing import Any

from audit_engine.brief import read_brief, review_brief
from audit_engine.lang import interpreter


def findings(text: str, engine: Any) -> dict[str, Any]:
    return {f.rule_id: f for f in review_brief(read_brief(text, "t.brief"), engine).findings}


def test_a_table_driven_finding_cites_the_rows_source_and_line_then_the_rule(engine: Any, rulebase: Any) -> None:
    text = "患者 年龄 40 岁\n药品 附子 30 g 每日1次 7 天 煎服\n"
    f = findings(text, engine)["TCM-TOXIC-DOSE"]
    row = rulebase.tables["毒性药材"].lookup(["附子"])
    assert f.evidence.startswith(f"{row['来源']}（表“毒性药材”第 {row['_line']} 行）；规则依据：")
    brief = read_brief(text, "t.brief")
    (oracle,) = [g for g in interpreter.evaluate(rulebase, brief.facts) if g.rule_id == "TCM-TOXIC-DOSE"]
    assert oracle.evidence == f.evidence


def test_a_rule_without_a_table_keeps_its_own_evidence(engine: Any, rulebase: Any) -> None:
    f = findings("患者 年龄 45 岁\n处方 门诊\n药品 布洛芬 200 mg 每日3次 10 天 口服\n", engine)["FORM-DAYS-OUTPATIENT"]
    (rule,) = [r for r in rulebase.rules if r.id == "FORM-DAYS-OUTPATIENT"]
    assert f.evidence == rule.evidence


def test_a_decoction_piece_dose_is_shown_in_grams_not_milligrams(engine: Any) -> None:
    f = findings("患者 年龄 40 岁\n药品 附子 30 g 每日1次 7 天 煎服\n", engine)["TCM-TOXIC-DOSE"]
    assert "每日 30 g" in f.message and "mg" not in f.message


def test_a_dose_written_in_grams_is_shown_in_grams_and_in_mg_when_written_in_mg(engine: Any) -> None:
    grams = findings("患者 年龄 70 岁\n药品 布洛芬 1.2 g 每日3次 3 天 口服\n", engine)
    milligrams = findings("患者 年龄 70 岁\n药品 布洛芬 1200 mg 每日3次 3 天 口服\n", engine)
    assert "3.6 g" in grams["DOSE-DAILY-MAX"].message
    assert "3600 mg" in milligrams["DOSE-DAILY-MAX"].message
