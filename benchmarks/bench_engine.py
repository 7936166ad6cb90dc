"""Benchmark of the compiler and the rules network (a script that prints figures, not a test).

    python benchmarks/bench_engine.py            # full run: 100 / 1,000 / 5,000 rules, 100,000 evaluations
    python benchmarks/bench_engine.py --quick    # smaller counts, for a smoke run

Synthetic rulebases: N drug-specific rules (90% item rules and 10% pair rules, each pinned
to one ingredient — how county rules about a named drug look, so each is routed), plus the
same 12 general rules in every size (table-driven dose and interaction checks,
prescription-level counts, scope and override rules), reading a 50,000-row dose table
(10,000 ingredients x 5 populations) and an interaction table. The prescription has 5
items whose ingredients do have rules in every size. Reported: compile and registration
time, p50/p99 of one evaluation (findings included), the reference interpreter on the
same input, and resident memory over 100,000 evaluations.
"""

from __future__ import annotations

import argparse
import gc
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from audit_engine.engine import Engine
from audit_engine.lang import interpreter
from audit_engine.lang.compiler import compile_rulebase
from tests.engine import synthetic


def timed(fn: object, runs: int) -> tuple[float, float]:
    samples = []
    for _ in range(runs):
        t = time.perf_counter()
        fn()  # type: ignore[operator]
        samples.append(time.perf_counter() - t)
    samples.sort()
    return samples[len(samples) // 2] * 1e3, samples[min(len(samples) - 1, int(len(samples) * 0.99))] * 1e3


def rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true")
    args = ap.parse_args()
    sizes = (100, 1000) if args.quick else (100, 1000, 5000)
    runs, memory_runs = (500, 5000) if args.quick else (5000, 100_000)
    t = time.perf_counter()
    shared = synthetic.tables()
    print(f"tables: {sum(len(t.rows) for t in shared.values()):,} rows built in {time.perf_counter() - t:.2f} s")  # type: ignore[attr-defined]
    facts = synthetic.prescription()
    p50s: dict[int, float] = {}
    engine = None
    for size in sizes:
        rb = synthetic.rulebase(size, shared)
        gc.collect()
        t = time.perf_counter()
        compiled = compile_rulebase(rb)
        compile_s = time.perf_counter() - t
        t = time.perf_counter()
        engine = Engine(compiled)
        register_s = time.perf_counter() - t
        found = engine.evaluate(facts)  # type: ignore[arg-type]
        assert found == interpreter.evaluate(rb, facts), "network and interpreter disagree"  # type: ignore[arg-type]
        visited = len(engine._network.shards_for(facts))  # type: ignore[arg-type]
        p50, p99 = timed(lambda e=engine: e.evaluate(facts), runs)  # type: ignore[misc]
        ip50, ip99 = timed(lambda rb=rb: interpreter.evaluate(rb, facts), max(20, runs // 50))  # type: ignore[misc]
        p50s[size] = p50
        print(f"{size + len(synthetic.general_rules()):>5} rules: {len(compiled.shards):>4} shards, compile {compile_s:.2f} s, "
              f"register {register_s:.2f} s | 5-item prescription: {len(found)} findings, {visited} shards visited, "
              f"network p50 {p50:.3f} ms p99 {p99:.3f} ms | interpreter p50 {ip50:.2f} ms p99 {ip99:.2f} ms "
              f"({ip50 / p50:.0f}x)")
        if size != sizes[-1]:
            engine.close()
    smallest, largest = sizes[0], sizes[-1]
    print(f"p50 ratio {largest} / {smallest} rules: {p50s[largest] / p50s[smallest]:.2f}")
    assert engine is not None
    for _ in range(1000):
        engine.evaluate(facts)  # type: ignore[arg-type]
    gc.collect()
    start = rss_mb()
    marks = []
    for k in range(1, memory_runs + 1):
        engine.evaluate(facts)  # type: ignore[arg-type]
        if k % (memory_runs // 5) == 0:
            marks.append(f"{rss_mb():.1f}")
    gc.collect()
    end = rss_mb()
    print(f"RSS over {memory_runs:,} evaluations ({largest} rules): start {start:.1f} MB, end {end:.1f} MB "
          f"({(end - start) / start * 100:+.1f}%), marks {', '.join(marks)}")
    print(f"mean of the last run's p50s: {statistics.mean(p50s.values()):.3f} ms")


if __name__ == "__main__":
    main()
