"""`audit-engine check` and `audit-engine test`: exit codes, output, and never a traceback."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from audit_engine.cli import main
from audit_engine.errors import RulebaseError
from audit_engine.lang.parser import parse_text

from .conftest import rule

SAMPLE = Path(__file__).resolve().parents[2] / "fixtures" / "rules" / "sample"
Write = Callable[..., Path]


def test_check_prints_counts_per_category_and_subtype(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["check", str(SAMPLE)]) == 0
    out = capsys.readouterr().out
    assert out.splitlines()[0].startswith("示范县处方审核规则库 2026.11：7 条规则，2 张表")
    assert "  适宜性 5" in out and "    适宜性.相互作用 2" in out and "  规范性 2" in out


def test_check_prints_every_diagnostic_and_exits_1(write: Write, capsys: pytest.CaptureFixture[str]) -> None:
    write("bad.rules", rule("R1", "当 患者.体种 > 3 kg") + "覆盖 R9 { 停用 }\n")
    assert main(["check", "bad.rules"]) == 1
    out = capsys.readouterr().out
    assert "bad.rules:1:45: 未知字段“患者.体种” (是否应为“患者.体重”？)" in out
    assert "bad.rules:2:4: 覆盖的规则 R9 不存在" in out
    assert out.rstrip().endswith("2 个错误")


def test_check_of_a_missing_path_exits_1(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["check", str(tmp_path / "nope.rules")]) == 1
    assert "规则文件或目录不存在" in capsys.readouterr().out


def test_test_command_runs_every_case_and_summarises(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["test", str(SAMPLE)]) == 0
    out = capsys.readouterr().out
    assert out.count("通过 ") == 6 and out.rstrip().endswith("6 passed, 0 failed")


def test_test_command_reports_a_failing_case_and_exits_1(write: Write, capsys: pytest.CaptureFixture[str]) -> None:
    write("t.rules", rule("PREG", "当 患者.妊娠") +
          '测试 "妊娠触发" { 患者 妊娠 药品 布洛芬 200 mg tid 期望 触发 PREG }\n'
          '测试 "错误的期望" { 患者 年龄 30 岁 药品 布洛芬 200 mg tid 期望 触发 PREG }\n')
    assert main(["test", "t.rules"]) == 1
    out = capsys.readouterr().out.splitlines()
    assert out[0] == "通过 t.rules:2 妊娠触发"
    assert out[1] == "失败 t.rules:3 错误的期望"
    assert out[2].strip() == "期望触发 PREG，但未触发"
    assert out[-1] == "1 passed, 1 failed"


def test_bad_rule_text_never_prints_a_traceback(write: Write) -> None:
    write("broken.rules", '规则 R1 "t" { 当 患者.年龄 > > }\n表 X 来自 "none.csv" {')
    write("binary.rules", "\x00\x01\xff garbage ((( 规则")
    for command, name in (("check", "broken.rules"), ("test", "binary.rules"), ("check", "missing.rules"),
                          ("test", ".")):
        proc = subprocess.run([sys.executable, "-m", "audit_engine.cli", command, name],
                              capture_output=True, text=True, timeout=120)
        assert proc.returncode == 1, (command, name, proc.stdout)
        assert "Traceback" not in proc.stdout + proc.stderr
        assert "语法错误" in proc.stdout or "不存在" in proc.stdout


FRAGMENTS = ['规则', 'R1', '"t"', '{', '}', '(', ')', '[', ']', '当', '对每个', '对每对', '药品', '患者', '.', '年龄',
             '日剂量', '>', '=', '12', '4', 'g', '岁', '且', '或', '不', '属于', '介于', '和', '存在', '计数', '满足',
             '类别', '适宜性', '等级', '依据', '提示', '"{药品.名称}"', '表', '来自', '键', '列', '覆盖', '停用', '测试',
             '期望', '触发', ',', '#', '\n', ' ', '“', '@', '甲', '乙', '任一', ':']


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.sampled_from(FRAGMENTS), max_size=40))
def test_parser_raises_only_rulebase_errors_on_arbitrary_text(parts: list[str]) -> None:
    try:
        parse_text(" ".join(parts), "fuzz.rules")
    except RulebaseError as err:
        assert err.diagnostics and all(d.file == "fuzz.rules" and d.line >= 1 for d in err.diagnostics)


def test_a_disagreement_between_network_and_interpreter_fails_the_case(
        write: Write, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    from audit_engine.lang import commands

    write("t.rules", rule("PREG", "当 患者.妊娠") + '测试 "妊娠" { 患者 妊娠 药品 布洛芬 200 mg tid 期望 触发 PREG }\n')
    class SilentNetwork:
        """A network that never fires: the command must notice it disagrees with the interpreter."""

        def evaluate(self, facts: object) -> list[object]:
            return []

        def close(self) -> None:
            pass

    monkeypatch.setattr(commands, "_build_network", lambda rb: SilentNetwork())
    assert main(["test", "t.rules"]) == 1
    out = capsys.readouterr().out.splitlines()
    assert out[0] == "失败 t.rules:2 妊娠"
    assert out[1].strip() == "规则网络与解释器结果不一致：网络 无，解释器 PREG(5)"
    assert out[2].strip() == "期望触发 PREG，但未触发"
    assert out[-1] == "0 passed, 1 failed"
