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
from audit_engine.lang import nodes as n
from audit_engine.lang.compiler import compile_rulebase
from tests.engine import builders as b

r = b.ref
POPS = ("成人", "儿童", "老年", "婴儿", "青少年")
TABLE_INGREDIENTS = 10_000
PRESCRIBED = (0, 7, 13, 21, 34)  # ingredient numbers on the prescription (spread over shards)


def ing(k: int) -> str:
    return f"成分{k:05d}"


def drug_rule(i: int, per_ingredient: int) -> n.Rule:
    k = i // per_ingredient
    has = b.cmp("=", r("药品", "ingredients"), b.text(ing(k)))
    shape = i % 10
    if shape == 9:
        cond: n.Cond = b.and_(b.cmp("=", r("甲", "ingredients"), b.text(ing(k))),
                              b.cmp("=", r("乙", "ingredients"), b.text(ing(k + 1))),
                              b.cmp(">", r("甲", "daily_dose"), b.num(10 + i % 7, "mg")))
        return b.rule(f"DDI-{i:05d}", b.for_pair(cond), level=6, message=b.template(("甲", "name"), " 与 ", ("乙", "name")))
    extra = [
        b.cmp(">", r("药品", "daily_dose"), b.num(100 + i, "mg")),
        b.cmp("<", r("patient", "age"), b.num(12, "岁")),
        n.Truthy(r("patient", "pregnant"), b.S),
        b.cmp(">", r("药品", "days"), b.num(7 + i % 5)),
        n.In(r("药品", "route"), (n.Symbol("静滴", b.S), n.Symbol("肌注", b.S)), b.S),
        b.cmp(">", r("patient", "age"), b.num(65, "岁")),
        b.not_(n.Known(r("patient", "weight"), b.S)),
        b.cmp(">", r("药品", "antimicrobial_grade"), r("prescriber", "antimicrobial_grade")),
        b.and_(n.Truthy(r("patient", "lactating"), b.S), b.cmp(">=", r("药品", "dose"), b.num(50, "mg"))),
    ][shape]
    return b.rule(f"DRUG-{i:05d}", b.for_each(b.and_(has, extra)), level=1 + i % 8,
                  message=b.template(("药品", "name"), " 规则 ", f"{i}"))


def general_rules() -> list[n.Rule]:
    dose_lookup = n.Lookup("最大日剂量", (r("药品", "ingredients"), r("patient", "population")), b.S)
    ddi = n.Lookup("相互作用", (r("甲", "ingredients"), r("乙", "ingredients")), b.S)
    village = n.Override("DAYS", n.OverrideTarget("institution_level", ("村卫生室",), b.S), False,
                         n.FixedLevel(6, b.S), (), b.S)
    return [
        b.rule("DOSE-MAX", b.for_each(b.and_(b.cmp(">", r("药品", "daily_dose"), n.Column(dose_lookup, "上限", b.S)),
                                             b.not_(n.Truthy(r("药品", "overdose_reason"), b.S))))),
        b.rule("DDI-TABLE", b.for_pair(n.Exists(ddi, b.S)), table_level=("相互作用", "等级")),
        b.rule("DAYS", b.for_each(b.and_(b.cmp(">", r("药品", "days"), b.num(7)),
                                         b.not_(b.or_(n.Truthy(r("patient", "chronic"), b.S),
                                                      n.Truthy(r("prescription", "long_term"), b.S))))),
               scope=n.Scope(prescription_types=frozenset(["门诊"])), variants=(village,)),
        b.rule("INJ-COUNT", b.when(b.cmp(">", n.Count("药品", "item", n.Truthy(r("药品", "injection"), b.S), b.S), b.num(2)))),
        b.rule("CHILD-WEIGHT", b.when(b.and_(b.cmp("<", r("patient", "age"), b.num(12, "岁")),
                                             b.not_(n.Known(r("patient", "weight"), b.S))))),
        b.rule("ITEMS-5", b.when(b.cmp(">", r("prescription", "item_count"), b.num(5)))),
        b.rule("DUP-ING", b.for_pair(b.cmp("=", r("甲", "ingredients"), r("乙", "ingredients")))),
        b.rule("GRADE", b.for_each(b.cmp(">", r("药品", "antimicrobial_grade"), r("prescriber", "antimicrobial_grade")))),
        b.rule("INJ-ORAL", b.for_each(b.and_(n.Truthy(r("药品", "injection"), b.S), b.cmp("=", r("药品", "route"), n.Symbol("口服", b.S))))),
        b.rule("PREG-X", b.for_each(b.and_(n.Truthy(r("patient", "pregnant"), b.S), n.Contains(r("药品", "classes"), b.text("X级"), b.S)))),
        b.rule("ELDER-HIGH", b.for_each(b.and_(b.cmp(">=", r("patient", "age"), b.num(65, "岁")), n.Truthy(r("药品", "high_alert"), b.S)))),
        b.rule("ALLERGY", b.for_each(b.cmp("=", r("药品", "ingredients"), r("patient", "allergies")))),
    ]


def tables() -> dict[str, object]:
    rows = [(ing(k), p, 1000.0 + k) for k in range(TABLE_INGREDIENTS) for p in POPS]
    ddi = [(ing(k), ing(k + 1), 5 + k % 4, "相互作用") for k in range(0, 400, 3)]
    return {"最大日剂量": b.max_dose_table(rows), "相互作用": b.interactions_table(ddi)}


def rulebase(count: int, shared_tables: dict[str, object]) -> n.Rulebase:
    per = 5
    return b.rulebase([*(drug_rule(i, per) for i in range(count)), *general_rules()], shared_tables)


def prescription() -> object:
    items = [b.item(i, name=f"药品{k}", ingredients=[ing(k)], daily_dose_mg=1500.0 + 100 * i, dose_mg=500.0,
                    days=5 + 2 * i, route="静滴" if i % 2 else "口服", injection=i % 2 == 1,
                    antimicrobial_grade="限制使用级", classes=["抗菌药物"])
             for i, k in enumerate(PRESCRIBED)]
    return b.facts(items, patient={"age_years": 70, "age_days": 70 * 365, "population": "老年", "weight": 60.0,
                                   "chronic": False, "allergies": ["青霉素"]},
                   prescription={"type": "门诊", "date": "2026-11-23", "item_count": 5},
                   prescriber={"antimicrobial_grade": "非限制使用级"}, institution={"level": "村卫生室"})


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
    shared = tables()
    print(f"tables: {sum(len(t.rows) for t in shared.values()):,} rows built in {time.perf_counter() - t:.2f} s")  # type: ignore[attr-defined]
    facts = prescription()
    p50s: dict[int, float] = {}
    engine = None
    for size in sizes:
        rb = rulebase(size, shared)
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
        print(f"{size + len(general_rules()):>5} rules: {len(compiled.shards):>4} shards, compile {compile_s:.2f} s, "
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
