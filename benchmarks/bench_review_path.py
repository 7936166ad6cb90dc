"""Where one review's time goes, stage by stage, in one process (no HTTP, no concurrency).

For SQLite and PostgreSQL: the API-key lookup (with the institution's policy), the pipeline
(``review_payload``: FHIR intake, facts, rules network), the store's writes
(``submit_review`` with the pipeline's result handed in) and the commit. Median of ``--n``
reviews of the same CDS order-sign request as ``bench_service.py``, each with a new
prescription identifier, after 100 warm-up reviews.

    python benchmarks/bench_review_path.py [--n 1000] [--db sqlite,postgresql]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Session

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_service import PG_ADMIN, order_sign, reference_loop_ms

from audit_engine import auth
from audit_engine.review import load_engine, review_payload
from audit_engine.store.db import make_engine, session_scope, upgrade_schema
from audit_engine.submission import submit_review

STAGES = ("auth", "pipeline", "store", "commit", "total")


def measure(url: str, n: int, engine: Any) -> dict[str, float]:
    upgrade_schema(url)
    db = make_engine(url)
    try:
        with session_scope(db) as s:
            _, key = auth.create_institution(s, code="LEAD001", name="县人民医院", level="县级医院", is_centre=True)
        bodies = [json.dumps(order_sign(i)).encode() for i in range(n + 100)]
        times: dict[str, list[float]] = {k: [] for k in STAGES}
        for i, raw in enumerate(bodies):
            payload = json.loads(raw)
            t0 = time.perf_counter()
            with Session(db, expire_on_commit=False) as s:
                principal = auth.principal_for_api_key(s, key)
                assert principal is not None
                t1 = time.perf_counter()
                result = review_payload(payload, kind="cds", engine=engine, client_institution={
                    "code": principal.institution_code, "level": principal.institution_level})
                t2 = time.perf_counter()
                submit_review(s, principal=principal, payload=payload, kind="cds", engine=engine, raw=raw,
                              review_fn=lambda *_a, _result=result, **_k: _result)
                t3 = time.perf_counter()
                s.commit()
            t4 = time.perf_counter()
            if i >= 100:
                for name, dt in zip(STAGES, (t1 - t0, t2 - t1, t3 - t2, t4 - t3, t4 - t0), strict=True):
                    times[name].append(dt * 1000)
        return {k: statistics.median(v) for k, v in times.items()}
    finally:
        db.dispose()


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=1000)
    ap.add_argument("--db", default="sqlite,postgresql")
    args = ap.parse_args()
    engine = load_engine()
    print(f"reference loop {reference_loop_ms():.1f} ms (lower = faster phase of this shared machine)")
    print(f"{'':12}" + "".join(f"{k:>10}" for k in STAGES) + "   (median ms per review)")
    for db in args.db.split(","):
        with tempfile.TemporaryDirectory() as d:
            if db == "sqlite":
                figures = measure(f"sqlite:///{Path(d) / 'path.sqlite'}", args.n, engine)
            else:
                name = f"bench_{uuid.uuid4().hex[:10]}"
                admin = sa.create_engine(PG_ADMIN, isolation_level="AUTOCOMMIT")
                with admin.connect() as c:
                    c.exec_driver_sql(f'CREATE DATABASE "{name}"')
                try:
                    figures = measure(PG_ADMIN.rsplit("/", 1)[0] + "/" + name, args.n, engine)
                finally:
                    with admin.connect() as c:
                        c.exec_driver_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
                    admin.dispose()
        print(f"{db:12}" + "".join(f"{figures[k]:10.2f}" for k in STAGES))


if __name__ == "__main__":
    main()
