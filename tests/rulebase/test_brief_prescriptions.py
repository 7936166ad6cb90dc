"""Prescriptions written the short way: reviewed from a file or standard input with a readable
summary, and converted to a FHIR Bundle that the pipeline reviews with the same findings."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from datetime import date
from pathlib import Path
from typing import Any

import pytest

from audit_engine.brief import CAVEATS, BriefPrescription, looks_like_brief, read_brief, to_fhir
from audit_engine.errors import RulebaseError
from audit_engine.lang.testcases import build_facts
from audit_engine.review import review_payload

from .conftest import ROOT, RULEBASE

DAY = date(2026, 11, 23)
VILLAGE = "患者 年龄 45 岁\n处方 门诊\n机构 村卫生室\n医师 乡村医生\n药品 布洛芬 200 mg 每日3次 10 天 口服\n"


def cli(*args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "audit_engine.cli", *args], input=stdin, text=True,
                          capture_output=True, timeout=180, cwd=ROOT)


def test_review_prints_the_verdict_then_each_finding_with_level_rule_message_and_evidence(tmp_path: Path) -> None:
    path = tmp_path / "case.txt"
    path.write_text(VILLAGE, encoding="utf-8")
    r = cli("review", str(path))
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    assert lines[0] == "审核结论：药师复核（recheck，默认策略）"
    assert "1. [等级 5] FORM-DAYS-OUTPATIENT 门诊处方超过 7 日用量" in lines
    assert "   提示：布洛芬 开具 10 天，门诊处方一般不超过 7 日用量" in lines
    assert any(line.startswith("   依据：《处方管理办法》第十九条") for line in lines)


def test_a_fhir_file_is_answered_in_json_as_the_contract_says_and_text_on_request(tmp_path: Path) -> None:
    path = tmp_path / "village.txt"
    path.write_text(VILLAGE, encoding="utf-8")
    bundle = tmp_path / "village.json"
    bundle.write_text(cli("brief", "to-fhir", str(path), "--date", "2026-11-23").stdout, encoding="utf-8")
    out = json.loads(cli("review", str(bundle)).stdout)
    assert [f["rule_id"] for f in out["findings"]] == ["FORM-DAYS-OUTPATIENT"]
    text = cli("review", str(bundle), "--text").stdout
    assert text.startswith("审核结论：药师复核（recheck，默认策略）")


def test_review_reads_a_one_line_brief_from_standard_input_and_answers_json() -> None:
    r = cli("review", "-", "--json", stdin=VILLAGE.replace("\n", " "))
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    assert out["verdict"] == "recheck"
    assert [(f["rule_id"], f["level"]) for f in out["findings"]] == [("FORM-DAYS-OUTPATIENT", 5)]


def test_a_mistyped_drug_in_a_brief_is_reported_at_its_line_and_column() -> None:
    r = cli("review", "-", stdin="患者 年龄 45 岁\n药品 布洛分 200 mg 每日3次 3 天\n")
    assert r.returncode == 1
    assert r.stderr.startswith("<stdin>:2:4: 药品字典中没有“布洛分” (是否应为“布洛芬”？)")
    assert "Traceback" not in r.stderr


def test_a_syntax_error_on_the_first_line_points_into_the_pharmacists_text() -> None:
    with pytest.raises(RulebaseError) as info:
        read_brief('患者 年龄 45 岁 过敏 "青霉素\n药品 布洛芬 200 mg\n', "case.txt")
    (d,) = info.value.diagnostics
    assert d.file == "case.txt" and d.line == 1 and d.source_line.startswith("患者 年龄 45 岁")


def test_a_whole_test_block_copied_from_a_rule_file_is_accepted_too() -> None:
    text = '测试 "抄来的" {\n  患者 年龄 75 岁\n  药品 氯苯那敏 4 mg 每日3次 3 天\n  期望 无\n}\n'
    assert looks_like_brief(text) and not looks_like_brief('{"resourceType": "Bundle"}')
    assert read_brief(text).facts.items[0]["name"] == "氯苯那敏"


def shipped_cases() -> list[Any]:
    from audit_engine.lang.loader import load_rulebase

    return [pytest.param(c, id=f"{Path(c.span.file).name}:{c.span.line}") for c in load_rulebase(RULEBASE).tests]


def _same_basis(message: str) -> str:
    """The message without its note of where the renal function came from: a brief states
    eGFR as a fact, a Bundle carries it as a laboratory result, and the note says which."""
    return re.sub(r"患者肾功能：.*$", "患者肾功能：…", message)


@pytest.mark.parametrize("case", shipped_cases())
def test_every_shipped_test_case_as_fhir_gets_the_same_findings(case: Any, engine: Any) -> None:
    """Posting the Bundle gives the brief's own findings, unless to-fhir said what it could not carry."""
    facts, problems = build_facts(case)
    assert problems == []
    bundle, notes = to_fhir(BriefPrescription(case, facts, case.span.file), today=DAY)
    as_brief = sorted((f.rule_id, f.level, _same_basis(f.message)) for f in engine.evaluate(facts))
    as_fhir = sorted((f.rule_id, f.level, _same_basis(f.message))
                     for f in review_payload(bundle, kind="bundle", engine=engine, today=DAY).findings)
    if any(caveat in note for note in notes for caveat in CAVEATS):
        return  # 慢病 / 癌痛 without a diagnosis, CrCl or renal bands written directly: FHIR derives them, the note says so
    assert as_fhir == as_brief


def test_to_fhir_says_when_a_fact_needs_a_diagnosis_in_fhir(tmp_path: Path) -> None:
    path = tmp_path / "chronic.txt"
    path.write_text("患者 年龄 70 岁 慢病\n处方 门诊\n药品 氨氯地平 5 mg 每日1次 30 天 口服\n", encoding="utf-8")
    r = cli("brief", "to-fhir", str(path), "--date", "2026-11-23")
    assert r.returncode == 0
    assert "患者“慢病”在 FHIR 中由诊断得出" in r.stderr and '诊断 "I10"' in r.stderr
    bundle = json.loads(r.stdout)
    assert bundle["resourceType"] == "Bundle" and bundle["type"] == "collection"
    (mr,) = [e["resource"] for e in bundle["entry"] if e["resource"]["resourceType"] == "MedicationRequest"]
    assert mr["dispenseRequest"]["expectedSupplyDuration"]["value"] == 30
    assert mr["dosageInstruction"][0]["timing"]["repeat"] == {"frequency": 1, "period": 1, "periodUnit": "d"}
