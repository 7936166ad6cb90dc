"""``audit-engine check PATH`` and ``audit-engine test PATH``: never a traceback for bad rule text."""

from __future__ import annotations

import sys
from collections import Counter
from pathlib import Path
from typing import Any, TextIO

from audit_engine.engine import Engine
from audit_engine.errors import AuditEngineError, RulebaseError
from audit_engine.findings import Finding
from audit_engine.lang import nodes as n
from audit_engine.lang.compiler import compile_rulebase
from audit_engine.lang.interpreter import evaluate
from audit_engine.lang.loader import load_rulebase
from audit_engine.lang.testcases import build_facts, judge


def _load(path: str, out: TextIO) -> n.Rulebase | None:
    try:
        return load_rulebase(path)
    except RulebaseError as err:
        for d in err.diagnostics:
            print(d.render(), file=out)
        print(f"{len(err.diagnostics)} 个错误", file=out)
    except AuditEngineError as err:
        print(f"错误：{err}", file=out)
    except OSError as err:
        print(f"错误：无法读取 {path}：{err.strerror or err}", file=out)
    except Exception as err:  # a bug of ours must still not show the author a traceback
        print(f"内部错误：{type(err).__name__}: {err}（请把规则文件报告给维护者）", file=out)
    return None


def cmd_check(path: str, out: TextIO | None = None) -> int:
    """Parse and check a rulebase; print diagnostics, or counts per category and sub-type."""
    out = out or sys.stdout
    rb = _load(path, out)
    if rb is None:
        return 1
    built = _build_network(rb)
    by_cat: Counter[str] = Counter()
    by_sub: Counter[tuple[str, str]] = Counter()
    for rule in rb.rules:
        assert rule.category is not None
        by_cat[rule.category.main] += 1
        by_sub[(rule.category.main, rule.category.sub)] += 1
    print(f"{rb.name}{' ' + rb.version if rb.version else ''}：{len(rb.rules)} 条规则，"
          f"{len(rb.tables)} 张表（{sum(len(t.rows) for t in rb.tables.values())} 行），"
          f"{len(rb.tests)} 个测试，{len(rb.files)} 个文件", file=out)
    for cat in sorted(by_cat):
        print(f"  {cat} {by_cat[cat]}", file=out)
        for (main, sub), count in sorted(by_sub.items()):
            if main == cat:
                print(f"    {main}.{sub} {count}", file=out)
    for name, table in sorted(rb.tables.items(), key=lambda kv: kv[1].path):
        print(f"  表 {name}：{len(table.rows)} 行（{_shown_table(table.path)}）", file=out)
    if isinstance(built, str):
        print(built, file=out)
        return 1
    # The compiled version is what every review records and /health reports.
    print(f"版本 {built.version}", file=out)
    built.close()
    return 0


def _shown_table(path: str) -> str:
    from audit_engine.lang.loader import shown_path

    return shown_path(Path(path))


def _build_network(rb: n.Rulebase) -> Engine | str:
    """Compile the rulebase and register it as a rules network; a failure is reported, not raised."""
    try:
        return Engine(compile_rulebase(rb))
    except AuditEngineError as err:
        return f"编译失败：{err}"
    except Exception as err:  # the network is another stage: report it as a failed run, not a traceback
        return f"规则网络无法建立：{type(err).__name__}: {err}"


def _brief(findings: tuple[Finding, ...] | list[Finding]) -> str:
    return "、".join(f"{f.rule_id}({f.level})" for f in findings) or "无"


def cmd_test(path: str, out: TextIO | None = None) -> int:
    """Run every test case through the rules network and the interpreter; they must agree."""
    out = out or sys.stdout
    rb = _load(path, out)
    if rb is None:
        return 1
    engine = _build_network(rb)
    if isinstance(engine, str):
        print(engine, file=out)
        return 1
    passed = failed = 0
    for case in rb.tests:
        try:
            facts, _ = build_facts(case)
            net = engine.evaluate(facts)
            oracle = evaluate(rb, facts)
            failures = []
            if sorted(net, key=_key) != sorted(oracle, key=_key):
                failures.append(f"规则网络与解释器结果不一致：网络 {_brief(net)}，解释器 {_brief(oracle)}")
            failures += judge(case, net)
        except Exception as err:  # one broken case must not hide the others
            failures = [f"运行出错：{type(err).__name__}: {err}"]
        where = f"{case.span.file}:{case.span.line}"
        if failures:
            failed += 1
            print(f"失败 {where} {case.name}", file=out)
            for f in failures:
                print(f"    {f}", file=out)
        else:
            passed += 1
            print(f"通过 {where} {case.name}", file=out)
    engine.close()
    print(f"{passed} passed, {failed} failed", file=out)
    return 1 if failed else 0


def _key(f: Finding) -> tuple[Any, ...]:
    return (f.rule_id, f.implicated, f.level, f.message, f.suggestion or "", f.title, f.evidence)
