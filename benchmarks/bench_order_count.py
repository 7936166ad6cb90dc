"""Review time and memory against the number of orders in one prescription, up to the limit.

Three shapes of prescription, each with 1 … ``AUDIT_MAX_ORDERS`` (60) orders:

* ``herbs``: the first N herbs of ``fixtures/fhir/limits/tcm_large_decoction_60_herbs.json``
  (a large 饮片 prescription, the real reason for a high limit);
* ``western``: N distinct western drugs and 中成药 taken from the clean and flagged fixtures
  (most of them are in the interaction tables: the pairwise rules' worst realistic case);
* ``copies``: one order (simvastatin, beside clarithromycin) repeated N times, the shape of the
  request that ran the service out of memory in issue 10.

For each it prints the pipeline (``review_payload``: intake, facts, rules network) median
wall and CPU time, the findings, the time to store the review with them (``submit_review``
on SQLite), and the peak Python memory of one review (``tracemalloc``; the rules network's
C core is not traced, the process's peak RSS is printed at the end). Then the cost of
refusing the issue's 1,999-copy request, and, with ``--health``, ``GET /health`` latency on
a real ``audit-engine serve`` while 60-order reviews run back to back.

    python benchmarks/bench_order_count.py [--runs 5] [--health]
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import re
import resource
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import tracemalloc
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
FIXTURES = ROOT / "fixtures" / "fhir"
LARGE_TCM = FIXTURES / "limits" / "tcm_large_decoction_60_herbs.json"
SIMVA_CLARI = FIXTURES / "flagged" / "interaction_simvastatin_clarithromycin.json"
COUNTS = (1, 5, 10, 20, 30, 40, 50, 60)
sys.path.insert(0, str(ROOT / "tests"))  # store_support: the tests' throw-away databases


def _orders(bundle: dict[str, Any]) -> list[dict[str, Any]]:
    return [e for e in bundle["entry"] if e["resource"]["resourceType"] == "MedicationRequest"]


def herbs(n: int) -> dict[str, Any]:
    bundle = json.loads(LARGE_TCM.read_text(encoding="utf-8"))
    keep = {id(e) for e in _orders(bundle)[:n]}
    bundle["entry"] = [e for e in bundle["entry"] if e["resource"]["resourceType"] != "MedicationRequest" or id(e) in keep]
    return bundle


def _western_pool() -> list[dict[str, Any]]:
    seen: set[str] = set()
    pool = []
    for path in sorted([*FIXTURES.joinpath("clean").glob("*.json"), *FIXTURES.joinpath("flagged").glob("*.json")]):
        if path.name.endswith(".expect.json"):
            continue
        for e in _orders(json.loads(path.read_text(encoding="utf-8"))):
            med = json.dumps(e["resource"].get("medicationCodeableConcept"), sort_keys=True, ensure_ascii=False)
            route = json.dumps(e["resource"].get("dosageInstruction", [{}])[0].get("route"), sort_keys=True)
            if med not in seen and "煎服" not in route:
                seen.add(med)
                pool.append(e)
    return pool


POOL = _western_pool()


def western(n: int) -> dict[str, Any]:
    """N distinct drugs on the simvastatin fixture's patient, one prescription (group)."""
    bundle = json.loads(SIMVA_CLARI.read_text(encoding="utf-8"))
    first = _orders(bundle)[0]["resource"]
    context = [e for e in bundle["entry"] if e["resource"]["resourceType"] != "MedicationRequest"]
    entries = []
    for k in range(n):
        res = copy.deepcopy(POOL[k % len(POOL)]["resource"])
        res.update(id=f"mr-{k}", status="active", subject=first["subject"], encounter=first.get("encounter"),
                   groupIdentifier={"system": "urn:bench", "value": "RX-WESTERN"})
        for key in ("requester", "reasonReference", "identifier"):
            res.pop(key, None)
        entries.append({"fullUrl": f"urn:uuid:mr-{k}", "resource": res})
    bundle["entry"] = context + entries
    return bundle


def copies(n: int) -> dict[str, Any]:
    """The simvastatin order N times beside clarithromycin (N + 1 orders, capped at 60)."""
    bundle = json.loads(SIMVA_CLARI.read_text(encoding="utf-8"))
    simva = _orders(bundle)[0]
    for k in range(1, min(n, 59)):
        twin = copy.deepcopy(simva)
        twin["resource"]["id"] = f"{simva['resource']['id']}-{k}"
        bundle["entry"].append(twin)
    return bundle


SHAPES = {"herbs": herbs, "western": western, "copies": copies}


def measure(runs: int) -> None:
    import store_support as testing

    from audit_engine.review import load_engine, review_payload
    from audit_engine.store.db import make_engine, session_scope, upgrade_schema
    from audit_engine.submission import submit_review

    engine = load_engine()
    review_payload(herbs(5), kind="bundle", engine=engine)  # warm: dictionary, pydantic models
    with tempfile.TemporaryDirectory() as tmp, testing.temporary_sqlite(tmp) as url:
        upgrade_schema(url)
        db = make_engine(url)
        world = testing.build_world(db)
        print(f"{'shape':8} {'orders':>6} {'pairs':>6} {'findings':>8} {'pipeline p50':>13} {'cpu p50':>8} "
              f"{'store':>8} {'peak py mem':>11}")
        serial = 0
        for name, make in SHAPES.items():
            for n in COUNTS:
                bundle = make(n)
                walls, cpus = [], []
                result: Any = None
                for _ in range(runs):
                    w0, c0 = time.perf_counter(), time.process_time()
                    result = review_payload(bundle, kind="bundle", engine=engine)
                    walls.append((time.perf_counter() - w0) * 1000)
                    cpus.append((time.process_time() - c0) * 1000)
                tracemalloc.start()
                review_payload(bundle, kind="bundle", engine=engine)
                peak = tracemalloc.get_traced_memory()[1]
                tracemalloc.stop()
                serial += 1
                stored = copy.deepcopy(bundle)
                for e in _orders(stored):
                    e["resource"]["groupIdentifier"] = {"system": "urn:bench", "value": f"RX-STORE-{serial}"}
                s0 = time.perf_counter()
                with session_scope(db) as s:
                    submit_review(s, principal=world.his_m1, payload=stored, kind="bundle", engine=engine,
                                  review_fn=lambda *_a, _r=result, **_k: _r)
                store_ms = (time.perf_counter() - s0) * 1000
                k = len(result.items)
                print(f"{name:8} {k:>6} {k * (k - 1):>6} {len(result.findings):>8} "
                      f"{statistics.median(walls):>10.1f} ms {statistics.median(cpus):>5.1f} ms "
                      f"{store_ms:>5.1f} ms {peak / 1e6:>8.1f} MB", flush=True)
        db.dispose()
    refused(engine)
    print(f"process peak RSS: {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MB")


def refused(engine: Any) -> None:
    """The issue's request: one order copied 1,999 times (under the 2,000-entry limit)."""
    from audit_engine.errors import IntakeError
    from audit_engine.review import review_payload

    for status, label in (("active", "active orders: refused after validation"),
                          ("draft", "draft orders: refused before validation")):
        bundle = json.loads(SIMVA_CLARI.read_text(encoding="utf-8"))
        simva = _orders(bundle)[0]
        bundle["entry"] = [e for e in bundle["entry"] if e["resource"]["resourceType"] != "MedicationRequest"]
        for k in range(1999 - len(bundle["entry"])):
            twin = copy.deepcopy(simva)
            twin["resource"]["id"] = f"c{k}"
            twin["resource"]["status"] = status
            bundle["entry"].append(twin)
        size = len(json.dumps(bundle).encode())
        c0 = time.process_time()
        try:
            review_payload(bundle, kind="bundle", engine=engine)
            outcome = "reviewed"
        except IntakeError as err:
            outcome = f"{err.status} {err.issues[0].code}"
        print(f"1,999 copies of one order ({size / 1e6:.1f} MB, {label}): {outcome} "
              f"in {(time.process_time() - c0) * 1000:.0f} ms CPU")


def health_during_reviews(seconds: float) -> None:
    """GET /health latency on a real server while 60-order reviews run back to back."""
    import httpx
    import store_support as testing

    with tempfile.TemporaryDirectory() as tmp, testing.temporary_sqlite(tmp) as url:
        env = dict(os.environ, AUDIT_DATABASE_URL=url, AUDIT_RULEBASE_STORE=f"{tmp}/rulebases")
        out = subprocess.run([sys.executable, "-m", "audit_engine.cli", "institution", "add", "LEAD001", "县人民医院",
                              "--level", "县级医院"], env=env, capture_output=True, text=True, check=True).stdout
        found = re.search(r"(ak_\S+)", out)
        assert found, out
        key = found.group(1)
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        proc = subprocess.Popen([sys.executable, "-m", "audit_engine.cli", "serve", "--port", str(port)], env=env,
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
        base = f"http://127.0.0.1:{port}"
        try:
            for _ in range(300):
                try:
                    if httpx.get(f"{base}/health", timeout=1).status_code == 200:
                        break
                except httpx.HTTPError:
                    time.sleep(0.2)
            stop = threading.Event()
            review_ms: list[float] = []

            def reviews(shape: str) -> None:
                with httpx.Client(timeout=60) as c:
                    k = 0
                    while not stop.is_set():
                        k += 1
                        bundle = SHAPES[shape](60)
                        for e in _orders(bundle):
                            e["resource"]["groupIdentifier"] = {"system": "urn:bench", "value": f"{shape}-{k}"}
                        t0 = time.perf_counter()
                        r = c.post(f"{base}/api/v1/reviews", json=bundle, headers={"Authorization": f"Bearer {key}"})
                        assert r.status_code == 201, r.text
                        review_ms.append((time.perf_counter() - t0) * 1000)

            threads = [threading.Thread(target=reviews, args=(s,)) for s in ("western", "copies")]
            for t in threads:
                t.start()
            health_ms = []
            with httpx.Client(timeout=60) as c:
                end = time.monotonic() + seconds
                while time.monotonic() < end:
                    t0 = time.perf_counter()
                    assert c.get(f"{base}/health").status_code == 200
                    health_ms.append((time.perf_counter() - t0) * 1000)
                    time.sleep(0.05)
            stop.set()
            for t in threads:
                t.join()
        finally:
            proc.terminate()
            proc.wait(20)
        health_ms.sort()
        print(f"GET /health during {len(review_ms)} 60-order reviews over HTTP (2 clients, review p50 "
              f"{statistics.median(review_ms):.0f} ms, max {max(review_ms):.0f} ms): /health p50 "
              f"{statistics.median(health_ms):.1f} ms, p99 {health_ms[int(0.99 * (len(health_ms) - 1))]:.1f} ms, "
              f"max {health_ms[-1]:.1f} ms over {len(health_ms)} calls")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--health", action="store_true", help="also measure /health on a real server under load")
    parser.add_argument("--health-seconds", type=float, default=20.0)
    parser.add_argument("--health-only", action="store_true")
    args = parser.parse_args()
    print(f"load average {os.getloadavg()[0]:.1f}")
    if not args.health_only:
        measure(args.runs)
    if args.health or args.health_only:
        health_during_reviews(args.health_seconds)


if __name__ == "__main__":
    main()
