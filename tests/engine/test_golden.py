"""Golden compiler output: every rulebase under fixtures/rules/ compiles to exactly the
rulesets, routes, fact layouts and derived fields recorded in fixtures/expected/.

After an intended change to the compiler, regenerate and review the diff:

    UPDATE_GOLDENS=1 pytest tests/engine/test_golden.py
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest

from audit_engine.engine import Engine
from audit_engine.lang import interpreter
from audit_engine.lang.compiler import compile_rulebase
from audit_engine.lang.loader import load_rulebase
from audit_engine.lang.testcases import build_facts

ROOT = Path(__file__).resolve().parents[2]
RULES = ROOT / "fixtures" / "rules"
EXPECTED = ROOT / "fixtures" / "expected"
SAMPLES = sorted(p.name for p in RULES.iterdir() if p.is_dir())


def render(name: str) -> str:
    rulebase = load_rulebase(Path("fixtures") / "rules" / name)
    return json.dumps(compile_rulebase(rulebase).describe(), ensure_ascii=False, indent=1, sort_keys=True) + "\n"


@pytest.mark.parametrize("name", SAMPLES)
def test_compiled_rulebase_matches_its_golden_file(name: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(ROOT)  # spans hold paths as given: keep them repository-relative
    got = render(name)
    golden = EXPECTED / f"{name}.compiled.json"
    if os.environ.get("UPDATE_GOLDENS"):
        golden.parent.mkdir(parents=True, exist_ok=True)
        golden.write_text(got, encoding="utf-8")
    assert golden.is_file(), f"missing {golden}; run UPDATE_GOLDENS=1 pytest {__file__}"
    assert got == golden.read_text(encoding="utf-8")


@pytest.mark.parametrize("name", SAMPLES)
def test_compiling_twice_gives_the_same_output_and_registering_mutates_nothing(
        name: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(ROOT)
    rulebase = load_rulebase(Path("fixtures") / "rules" / name)
    first = compile_rulebase(rulebase)
    before = first.describe()
    engine = Engine(first)
    engine.close()
    assert first.describe() == before == compile_rulebase(rulebase).describe()


@pytest.mark.parametrize("name", SAMPLES)
def test_the_sample_test_cases_give_the_same_findings_in_network_and_interpreter(
        name: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(ROOT)
    rulebase = load_rulebase(Path("fixtures") / "rules" / name)
    engine = Engine(compile_rulebase(rulebase))
    assert rulebase.tests
    fired = 0
    for case in rulebase.tests:
        facts, problems = build_facts(case)
        assert not problems
        found = engine.evaluate(facts)
        assert found == interpreter.evaluate(rulebase, facts)
        fired += len(found)
    assert fired > 0
    engine.close()


def test_the_version_changes_with_the_rule_text_and_not_with_the_location(tmp_path: Path) -> None:
    a, b = tmp_path / "a", tmp_path / "b"
    shutil.copytree(RULES / "sample", a)
    shutil.copytree(RULES / "sample", b)
    assert compile_rulebase(load_rulebase(a)).version == compile_rulebase(load_rulebase(b)).version
    base = b / "base.rules"
    base.write_text(base.read_text(encoding="utf-8").replace("等级 4", "等级 5", 1), encoding="utf-8")
    assert compile_rulebase(load_rulebase(a)).version != compile_rulebase(load_rulebase(b)).version
