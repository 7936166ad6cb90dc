"""Versions: atomic swaps, in-flight evaluations finishing on the old version, and a
rulebase that fails checking never replacing a working one."""

from __future__ import annotations

import shutil
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from audit_engine.engine import Engine
from audit_engine.errors import RulebaseError
from audit_engine.lang import interpreter
from audit_engine.lang import nodes as n
from audit_engine.lang.compiler import compile_rulebase
from audit_engine.network import derive, host

from . import builders as b

r = b.ref
SAMPLE = Path(__file__).resolve().parents[2] / "fixtures" / "rules" / "sample"


def version_a() -> n.Rulebase:
    # An ordered-enum comparison: a derived field, evaluated by the host.
    return b.rulebase([b.rule("A-GRADE", b.for_each(b.cmp(">", r("药品", "antimicrobial_grade"),
                                                            n.Symbol("非限制使用级", b.S))))])


def version_b() -> n.Rulebase:
    return b.rulebase([b.rule("B-DAYS", b.for_each(b.cmp(">", r("药品", "days"), b.num(7))))])


FACTS = b.facts([b.item(0, antimicrobial_grade="特殊使用级", days=10)])


def test_swap_is_atomic_and_an_evaluation_in_flight_finishes_on_the_old_version(monkeypatch: pytest.MonkeyPatch) -> None:
    a, bb = compile_rulebase(version_a()), compile_rulebase(version_b())
    engine = Engine(a)
    entered, release = threading.Event(), threading.Event()
    real = derive.evaluator  # made by every evaluation once it is in flight (acquired)

    def slow(*args: Any) -> Any:
        if threading.current_thread().name == "in-flight":
            entered.set()
            assert release.wait(30)
        return real(*args)

    monkeypatch.setattr(derive, "evaluator", slow)
    result: list[tuple[str, list[Any]]] = []
    worker = threading.Thread(target=lambda: result.append(engine.evaluate_versioned(FACTS)), name="in-flight")
    worker.start()
    assert entered.wait(30)
    old_network = engine._network
    assert engine.swap(bb) == a.version
    assert engine.version == bb.version
    # New evaluations already run on the new version while the old one is still busy.
    assert [f.rule_id for f in engine.evaluate(FACTS)] == ["B-DAYS"]
    assert not any(s.handle.deleted for s in old_network._shards)
    release.set()
    worker.join(30)
    assert result == [(a.version, interpreter.evaluate(version_a(), FACTS))]
    assert [f.rule_id for f in result[0][1]] == ["A-GRADE"]
    # The last evaluation on the retired version freed its rulesets.
    assert all(s.handle.deleted for s in old_network._shards)
    engine.close()


def test_evaluations_racing_many_swaps_each_see_one_whole_version() -> None:
    rb_a, rb_b = version_a(), version_b()
    a, bb = compile_rulebase(rb_a), compile_rulebase(rb_b)
    expected = {a.version: interpreter.evaluate(rb_a, FACTS), bb.version: interpreter.evaluate(rb_b, FACTS)}
    engine = Engine(a)
    stop = threading.Event()
    bad: list[str] = []
    seen: set[str] = set()

    def worker() -> None:
        while not stop.is_set():
            version, found = engine.evaluate_versioned(FACTS)
            seen.add(version)
            if found != expected[version]:
                bad.append(version)

    threads = [threading.Thread(target=worker) for _ in range(4)]
    for t in threads:
        t.start()
    k = 0
    while k < 30 or (len(seen) < 2 and k < 3000):
        engine.swap(bb if k % 2 == 0 else a)
        time.sleep(0.002)  # let the workers run between swaps
        k += 1
    stop.set()
    for t in threads:
        t.join()
    assert bad == []
    assert seen == set(expected)
    engine.close()


def write_bad_copy(tmp_path: Path) -> Path:
    bad = tmp_path / "bad"
    shutil.copytree(SAMPLE, bad)
    base = bad / "base.rules"
    base.write_text(base.read_text(encoding="utf-8").replace("药品.天数 > 7", "药品.天树 > 7"), encoding="utf-8")
    return bad


def test_a_rulebase_that_fails_checking_never_replaces_the_working_one(tmp_path: Path) -> None:
    engine = Engine.from_path(SAMPLE)
    before = engine.version
    case = b.facts([b.item(0, name="氨氯地平片", days=10)], prescription={"type": "门诊"},
                   institution={"level": "村卫生室"})
    found = engine.evaluate(case)
    assert [f.rule_id for f in found] == ["DAYS-OUTPATIENT"]
    with pytest.raises(RulebaseError) as err:
        engine.swap_path(write_bad_copy(tmp_path))
    assert "天树" in str(err.value)
    assert engine.version == before
    assert engine.evaluate(case) == found
    with pytest.raises(RulebaseError):
        Engine.from_path(write_bad_copy(tmp_path / "again"))
    engine.close()


def test_a_closed_engine_refuses_to_evaluate() -> None:
    engine = Engine(compile_rulebase(version_b()))
    engine.close()
    with pytest.raises(host.NetworkError):
        engine.evaluate(FACTS)
