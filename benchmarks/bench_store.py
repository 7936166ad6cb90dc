"""Store-only benchmark: what one review costs the database layer, without HTTP or rules.

    python benchmarks/bench_store.py --db sqlite --n 1000
    python benchmarks/bench_store.py --db postgresql --n 1000 --threads 8

Prints reviews/s and latency percentiles for ``submit_review`` (a fake pipeline, so only the
store is measured), then claims/s for claim + decide, on a fresh throw-away database.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import threading
import time
from contextlib import AbstractContextManager
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))  # store_support: throw-away databases

import store_support as testing

from audit_engine import audit_log, queue, submission
from audit_engine.store.db import make_engine, session_scope, upgrade_schema


def _pct(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(p * len(ordered)))]


def run(db: str, n: int, threads: int) -> None:
    ctx: AbstractContextManager[str] = (
        testing.temporary_postgres() if db == "postgresql" else testing.temporary_sqlite(tempfile.mkdtemp())
    )
    with ctx as url:
        upgrade_schema(url)
        engine = make_engine(url)
        world = testing.build_world(engine)
        pipeline = testing.FakePipeline()
        payloads = [
            testing.medication_bundle(f"RX-{i:06d}", levels=((6,) if i % 4 == 0 else (i % 5,)))
            for i in range(n)
        ]
        latencies: list[float] = []
        lock = threading.Lock()

        def submit(chunk: list[dict[str, object]]) -> None:
            for payload in chunk:
                t0 = time.perf_counter()
                with session_scope(engine) as s:
                    submission.submit_review(
                        s,
                        principal=world.his_m1,
                        payload=payload,
                        kind="bundle",
                        engine=None,
                        review_fn=pipeline,
                    )
                with lock:
                    latencies.append((time.perf_counter() - t0) * 1000)

        chunks = [payloads[k::threads] for k in range(threads)]
        workers = [threading.Thread(target=submit, args=(c,)) for c in chunks]
        start = time.perf_counter()
        for w in workers:
            w.start()
        for w in workers:
            w.join()
        elapsed = time.perf_counter() - start
        print(
            f"{db}: submit_review x{n}, {threads} thread(s): {n / elapsed:.0f} reviews/s, "
            f"p50 {statistics.median(latencies):.2f} ms, p99 {_pct(latencies, 0.99):.2f} ms"
        )

        claimed, who = 0, world.ph_c1
        start = time.perf_counter()
        while True:
            with session_scope(engine) as s:
                task = queue.claim_next(s, principal=who)
            if task is None:
                break
            with session_scope(engine) as s:
                queue.decide(s, task_id=task.id, principal=who, decision="approve")
            claimed += 1
        elapsed = time.perf_counter() - start
        print(f"{db}: claim + decide x{claimed}, 1 pharmacist: {claimed / elapsed:.0f} tasks/s")
        with session_scope(engine) as s:
            audit_log.seal(s)
            report = audit_log.verify_chain(s)
        print(f"{db}: audit chain of {report.checked} entries verified: {report.ok}")
        engine.dispose()


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--db", choices=["sqlite", "postgresql"], default="sqlite")
    p.add_argument("--n", type=int, default=1000)
    p.add_argument("--threads", type=int, default=1)
    args = p.parse_args()
    run(args.db, args.n, args.threads)


if __name__ == "__main__":
    main()
