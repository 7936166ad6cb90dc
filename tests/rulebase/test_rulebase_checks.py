"""The shipped rulebase checks, its in-language tests pass, and every rule is cited and tested both ways."""

from __future__ import annotations

import io
import re
import shutil
import textwrap
from pathlib import Path
from typing import Any

from audit_engine.findings import CATEGORIES
from audit_engine.lang.commands import cmd_check, cmd_test

from .conftest import ROOT, RULEBASE

# Kinds of source a 依据 may cite (issue 4 §6): label, pharmacopoeia, guideline, regulation, safety communication.
SOURCE_WORDS = ("说明书", "药典", "指南", "办法", "规范", "条例", "FDA", "NMPA", "Drug Safety", "处方集", "指导原则",
                "目录", "表", "歌诀")


def test_check_passes_and_prints_counts_per_category() -> None:
    out = io.StringIO()
    assert cmd_check(str(RULEBASE), out) == 0, out.getvalue()
    text = out.getvalue()
    for main in CATEGORIES:
        assert re.search(rf"^\s*{main} \d+$", text, re.M), f"no count for {main} in:\n{text}"


def test_in_language_tests_all_pass() -> None:
    out = io.StringIO()
    rc = cmd_test(str(RULEBASE), out)
    failures = [line for line in out.getvalue().splitlines() if not line.startswith("通过")]
    assert rc == 0, "\n".join(failures)


def test_every_rule_cites_a_recognised_source(rulebase: Any) -> None:
    uncited = [r.id for r in rulebase.rules if not r.evidence or not any(w in r.evidence for w in SOURCE_WORDS)]
    assert uncited == []


def test_every_rule_has_a_firing_and_a_non_firing_test(rulebase: Any) -> None:
    # A 期望 无 case does not count: each rule must be named in a 不触发 expectation of its own.
    fires = {rid for case in rulebase.tests for exp in case.expectations if exp.fires for rid in exp.rule_ids}
    quiet = {rid for case in rulebase.tests for exp in case.expectations if not exp.fires for rid in exp.rule_ids}
    ids = {r.id for r in rulebase.rules}
    assert sorted(ids - fires) == [], "rules without a firing test"
    assert sorted(ids - quiet) == [], "rules without a non-firing test"


def test_every_rule_has_chinese_title_message_and_suggestion(rulebase: Any) -> None:
    han = re.compile(r"[\u4e00-\u9fff]")
    lacking = [r.id for r in rulebase.rules
               if not (han.search(r.title) and r.message is not None and r.suggestion is not None)]
    assert lacking == []


def test_each_category_has_rules_in_all_three_parts_of_a_review(rulebase: Any) -> None:
    mains = {r.category.main for r in rulebase.rules}
    assert mains == set(CATEGORIES)


def test_readme_documents_the_level_scale_and_default_verdicts() -> None:
    from audit_engine.policy import Policy

    readme = (ROOT / "rulebase" / "README.md").read_text(encoding="utf-8")
    p = Policy()
    # The README's table must agree with the shipped default policy thresholds.
    assert f"explain_at = {p.explain_at}" in readme
    assert f"recheck_at = {p.recheck_at}" in readme
    assert f"block_at = {p.block_at}" in readme
    for level in range(10):
        assert re.search(rf"^\| *{level} *\|", readme, re.M), f"level {level} not in the README scale table"


def test_iv_incompatibility_rows_put_the_ingredient_first() -> None:
    """rulebase/interactions.rules has no class-then-ingredient IV rule: such a row would never match."""
    import csv

    from audit_engine.knowledge.dictionary import load_dictionary

    d = load_dictionary()
    ingredients, classes = d.ingredient_names(), d.class_names()
    path = ROOT / "rulebase" / "tables" / "iv_incompatibility.csv"
    lines = [line for line in path.read_text(encoding="utf-8").splitlines() if line and not line.startswith("#")]
    reversed_rows = [
        (r["药品甲"], r["药品乙"]) for r in csv.DictReader(lines)
        if r["药品甲"] in classes and r["药品甲"] not in ingredients
        and r["药品乙"] in ingredients and r["药品乙"] not in classes
    ]
    assert reversed_rows == [], "write the ingredient in 药品甲 when the other cell is a class"


def _fenced_blocks(text: str) -> list[str]:
    return [textwrap.dedent(b) for b in re.findall(r"```\n(.*?)```", text, re.S)]


def test_readme_worked_examples_check_and_pass(tmp_path: Path) -> None:
    """Sections 4 and 5 of the authoring guide, applied to a copy of the rulebase, really work."""
    readme = (RULEBASE / "README.md").read_text(encoding="utf-8")
    blocks = _fenced_blocks(readme)
    rule = next(b for b in blocks if b.lstrip().startswith("规则 ELDERLY-"))
    rule_tests = next(b for b in blocks if b.lstrip().startswith("测试 ") and "ELDERLY-" in b)
    row = next(b for b in blocks if b.startswith("利培酮,"))
    row_test = next(b for b in blocks if b.lstrip().startswith("测试 ") and "利培酮" in b)
    copy = tmp_path / "rulebase"
    shutil.copytree(RULEBASE, copy)
    with (copy / "special_populations.rules").open("a", encoding="utf-8") as f:
        f.write("\n" + rule + "\n" + rule_tests)
    with (copy / "tables" / "interactions.csv").open("a", encoding="utf-8") as f:
        f.write(row if row.endswith("\n") else row + "\n")
    with (copy / "interactions.rules").open("a", encoding="utf-8") as f:
        f.write("\n" + row_test)
    out = io.StringIO()
    assert cmd_check(str(copy), out) == 0, out.getvalue()
    out = io.StringIO()
    assert cmd_test(str(copy), out) == 0, "\n".join(x for x in out.getvalue().splitlines() if not x.startswith("通过"))
    assert "ELDERLY-ANTIHISTAMINE-1" in out.getvalue() or "75 岁用氯苯那敏" in out.getvalue()
