"""What-if replay of a candidate rulebase: the worker's chunks report, per rule and per
institution, the flags that would appear and disappear next to the active version, and
nothing of the replay touches reviews, findings, tasks, feedback, prescriptions or statistics."""

from __future__ import annotations

import tempfile
from collections import Counter
from pathlib import Path

import pytest
import sqlalchemy as sa
from store_support import World

from audit_engine import rulebase_lifecycle as rulebases
from audit_engine.demo import _for_institution, demo_prescriptions
from audit_engine.engine import load_compiled
from audit_engine.errors import InvalidRequestError, NotFoundError
from audit_engine.quality import replay
from audit_engine.review import default_rulebase_path, load_engine
from audit_engine.store.db import session_scope, utcnow
from audit_engine.store.models import (
    Feedback,
    FindingRow,
    Prescription,
    Review,
    RulebaseVersion,
    Task,
)
from audit_engine.store.quality_models import ReplayJob
from audit_engine.store.stats_models import ReviewStat, ReviewStatItem, ReviewStatRule
from audit_engine.submission import submit_review

REAL_TABLES = (Prescription, Review, FindingRow, Task, Feedback, ReviewStat, ReviewStatItem, ReviewStatRule)


def counts(engine: sa.Engine) -> dict[str, int]:
    with session_scope(engine) as s:
        return {m.__tablename__: int(s.scalar(sa.select(sa.func.count()).select_from(m)) or 0) for m in REAL_TABLES}


def store_candidate(engine: sa.Engine, files: dict[str, str]) -> str:
    with tempfile.TemporaryDirectory() as folder:
        for name, text in files.items():
            (Path(folder) / name).parent.mkdir(parents=True, exist_ok=True)
            (Path(folder) / name).write_text(text, encoding="utf-8")
        version = str(load_compiled(folder).version)
    with session_scope(engine) as s:
        s.add(RulebaseVersion(version=version, label="候选", files=files, status="uploaded", uploaded_by="guanli",
                              uploaded_at=utcnow()))
    return version


def test_a_replay_reports_the_candidates_changes_and_changes_nothing_real(engine: sa.Engine, world: World) -> None:
    real = load_engine()
    samples = demo_prescriptions()
    chosen = [b for name, b in samples if name.startswith("clean/")][:10]
    chosen += [b for name, b in samples if name.startswith("flagged/")][:30]
    for n, bundle in enumerate(chosen):
        code = ("C1", "M1")[n % 2]
        with session_scope(engine) as s:
            submit_review(s, principal=world.principals[f"his_{code.lower()}"], kind="bundle", engine=real,
                          payload=_for_institution(bundle, "LEAD001") | {"id": f"b{n}"})
    rulebases.register_shipped(engine, version=real.version, folder=default_rulebase_path())
    with session_scope(engine) as s:
        fired = Counter(s.scalars(sa.select(FindingRow.rule_id).where(~FindingRow.rule_id.startswith("SYS-"))))
    target = fired.most_common(1)[0][0]
    files = rulebases.files_of_folder(default_rulebase_path())
    files["overrides.rules"] += f"\n覆盖 {target} {{ 停用 }}\n"
    candidate = store_candidate(engine, files)

    with session_scope(engine) as s:
        with pytest.raises(InvalidRequestError, match="现行版本"):
            replay.create_job(s, principal=world.quality, candidate=real.version, days=7, baseline=None)
        with pytest.raises(InvalidRequestError, match="days"):
            replay.create_job(s, principal=world.quality, candidate=candidate, days=0, baseline=None)
        with pytest.raises(NotFoundError):
            replay.create_job(s, principal=world.quality, candidate="f" * 64, days=7, baseline=None)

    before = counts(engine)
    with session_scope(engine) as s:
        job_id = replay.create_job(s, principal=world.quality, candidate=candidate, days=7, baseline=None).id
    first = replay.step(engine, max_reviews=15)  # progress is recorded chunk by chunk
    assert first is not None and first.status == "running" and first.done == 15 and first.total == 40
    assert replay.run_pending(engine) >= 1
    assert counts(engine) == before

    with session_scope(engine) as s:
        job = s.get(ReplayJob, job_id)
        assert job is not None
        out = replay.job_json(job)
        assert out["status"] == "done" and out["done"] == out["total"] == 40 and out["progress"] == 1.0
        assert out["summary"]["examined"] == 40 and out["summary"]["failed"] == 0
        rules = {r["rule_id"]: r for r in out["rules"]}
        assert rules[target]["baseline_hits"] == fired[target] and rules[target]["candidate_hits"] == 0
        assert rules[target]["removed"] == fired[target] and rules[target]["added"] == 0
        assert out["rules"][0]["rule_id"] == target  # the biggest change first
        examples = [e["review_id"] for e in rules[target]["examples_removed"]]
        assert examples and all(s.get(Review, e) is not None for e in examples)
        for rid, r in rules.items():
            if rid != target:  # the rest of the rulebase is the same: same hits on both sides
                assert (r["added"], r["removed"], r["baseline_hits"]) == (0, 0, r["candidate_hits"]), rid
        inst = {i["institution"]: i for i in out["institutions"]}
        assert sum(i["examined"] for i in inst.values()) == 40 and set(inst) == {"C1", "M1"}
        assert sum(i["removed"] for i in inst.values()) == fired[target]
