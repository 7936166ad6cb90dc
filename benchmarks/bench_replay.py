"""What-if replay throughput: 10,000 stored prescriptions through a candidate and the active rulebase.

    .venv/bin/python benchmarks/bench_replay.py [--reviews 10000] [--url sqlite:///…]

Builds the demo alliance (``serve --demo``'s real reviews and history), copies its stored reviews
(facts, findings, policy) until the last 30 days hold ``--reviews`` prescriptions, stores the demo's
candidate (the noisiest rule lowered to level 2), then times one replay job of 30 days run the way the
worker runs it (``replay.run_pending``: chunks of at most 2 s, each committed). Prints the figures.
"""

from __future__ import annotations

import argparse
import io
import random
import tempfile
import time
from datetime import timedelta

import sqlalchemy as sa


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--reviews", type=int, default=10_000)
    ap.add_argument("--url", default=None, help="an EMPTY database (default: a temporary SQLite file)")
    args = ap.parse_args()
    tmp = tempfile.mkdtemp(prefix="bench-replay-")
    url = args.url or f"sqlite:///{tmp}/bench.sqlite"

    from audit_engine import auth
    from audit_engine import rulebase_lifecycle as rulebases
    from audit_engine.demo import load_demo
    from audit_engine.quality import replay
    from audit_engine.quality.demo_candidate import LABEL, add_candidate
    from audit_engine.review import default_rulebase_path, load_engine
    from audit_engine.store.db import make_engine, session_scope, upgrade_schema, utcnow
    from audit_engine.store.models import FindingRow, Review, RulebaseVersion, User, new_id
    from audit_engine.store.quality_models import ReplayJob

    upgrade_schema(url)
    t = time.perf_counter()
    load_demo(url, out=io.StringIO())
    print(f"demo loaded in {time.perf_counter() - t:.1f} s")
    db = make_engine(url)
    real = load_engine()
    rulebases.register_shipped(db, version=real.version, folder=default_rulebase_path())
    add_candidate(url, out=io.StringIO())  # load_demo made it already; this is a no-op then
    with session_scope(db) as s:
        candidate = s.scalar(sa.select(RulebaseVersion.version).where(RulebaseVersion.label == LABEL))
    assert candidate, "no candidate"

    now = utcnow()
    rng = random.Random(13)
    with session_scope(db) as s:
        reviews = [{c.key: getattr(r, c.key) for c in Review.__table__.columns} for r in s.scalars(sa.select(Review))]
        findings: dict[str, list[dict]] = {}
        for f in s.scalars(sa.select(FindingRow)):
            findings.setdefault(f.review_id, []).append(
                {c.key: getattr(f, c.key) for c in FindingRow.__table__.columns if c.key != "id"})
        in_window = s.scalar(sa.select(sa.func.count()).select_from(Review)
                             .where(Review.created_at >= now - timedelta(days=30))) or 0
        need = max(0, args.reviews - in_window)
        new_reviews, new_findings = [], []
        for n in range(need):
            src = reviews[n % len(reviews)]
            rid = new_id()
            new_reviews.append({**src, "id": rid, "previous_review_id": None,
                                "created_at": now - timedelta(seconds=rng.randint(60, 29 * 86400))})
            new_findings += [{**f, "review_id": rid} for f in findings.get(src["id"], [])]
        for start in range(0, len(new_reviews), 2000):
            s.execute(sa.insert(Review.__table__), new_reviews[start:start + 2000])
        for start in range(0, len(new_findings), 5000):
            s.execute(sa.insert(FindingRow.__table__), new_findings[start:start + 5000])
        user = s.scalar(sa.select(User).where(User.username == "zhikong"))
        principal = auth.principal_for_user(s, user)
        job = replay.create_job(s, principal=principal, candidate=candidate, days=30, baseline=None)
        job_id, total = job.id, job.total
    print(f"replaying {total} stored prescriptions (30 days) through candidate {candidate[:12]} and the active "
          f"{real.version[:12]}")
    t = time.perf_counter()
    chunks = replay.run_pending(db)
    elapsed = time.perf_counter() - t
    with session_scope(db) as s:
        out = replay.job_json(s.get(ReplayJob, job_id))
    print(f"status {out['status']}: {out['done']} prescriptions in {elapsed:.1f} s over {chunks} chunks "
          f"({elapsed / max(1, out['done']) * 1000:.2f} ms each, engines loaded once per process included); "
          f"verdict changes {out['summary']['verdict_changes']}, failed {out['summary']['failed']}")
    db.dispose()


if __name__ == "__main__":
    main()
