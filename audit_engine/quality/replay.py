"""What-if replay: what would a candidate rulebase have done to the last N days of prescriptions?

A manager (or an administrator) asks for a replay of a candidate — an uploaded, checked version
that is not active — over a window of the last N days (:func:`create_job`). The background
worker runs it (:func:`run_replays` in its own thread of the worker process, or
:func:`step` directly): each step replays the next chunk of stored prescriptions, in
``(created_at, id)`` order, through the candidate, compares rule by rule with the active
version, and records the counts and the cursor in the job row in one short transaction, so a
killed worker resumes where the last committed chunk ended and no chunk counts twice
(the row's ``version`` column refuses a stale writer).

**Next to the active version.** The baseline is the version that was active when the job was
asked for. Both the candidate and the baseline evaluate the normalised facts each review
stored (the drug dictionary is not part of a rulebase version), so every difference is the
rulebase's own, and the FHIR parsing — most of a review's cost — is not repeated. Per rule the
result counts prescriptions where the rule would newly fire (added), would no longer fire
(removed) or would fire at another level, with example reviews; per institution the same,
and the verdict changes.

**Isolation.** Nothing here writes a review, a finding, a task, a statistics row or an audit
entry: the only row written is the job's own.
"""

from __future__ import annotations

import json
import logging
import tempfile
import threading
import time
from collections import OrderedDict
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Session

from audit_engine.auth import Principal, visible_institution_ids
from audit_engine.errors import AuditEngineError, InvalidRequestError, NotFoundError
from audit_engine.store.db import read_scope, session_scope, utcnow
from audit_engine.store.models import FindingRow, Institution, Prescription, Review, RulebaseVersion, new_id
from audit_engine.store.quality_models import ReplayJob

log = logging.getLogger("audit_engine.quality.replay")

MAX_DAYS = 90
EXAMPLES = 5
CHUNK_SECONDS = 2.0
CHUNK_MAX = 2000
_ENGINES: OrderedDict[str, Any] = OrderedDict()
_ENGINES_LOCK = threading.Lock()


def empty_result() -> dict[str, Any]:
    return {"examined": 0, "failed": 0, "verdict_changes": 0, "finding_changes": 0, "transitions": {},
            "rules": {}, "institutions": {}, "errors": []}


# --------------------------------------------------------------------------- asking for a replay
def create_job(s: Session, *, principal: Principal, candidate: str, days: int, baseline: str | None) -> ReplayJob:
    """Queue a replay of ``candidate`` over the last ``days`` days; the caller commits."""
    if not 1 <= days <= MAX_DAYS:
        raise InvalidRequestError("days", f"days 应在 1 到 {MAX_DAYS} 之间，收到 {days}")
    row = s.get(RulebaseVersion, candidate)
    if row is None:
        raise NotFoundError(f"RulebaseVersion/{candidate}", "没有这个规则库版本（请先上传并通过校验）")
    active = s.scalar(sa.select(RulebaseVersion.version).where(RulebaseVersion.status == "active").limit(1))
    if row.status == "active" or candidate == (baseline or active):
        raise InvalidRequestError("candidate", "候选版本就是现行版本：请选择一个已上传、未激活的版本")
    baseline = baseline or active
    if baseline is None:
        raise InvalidRequestError("candidate", "尚无现行规则库版本可作对照")
    now = utcnow()
    visible = visible_institution_ids(s, principal)
    start = now - timedelta(days=days)
    q = sa.select(sa.func.count()).select_from(Review).where(Review.created_at >= start, Review.created_at < now)
    if visible is not None:
        q = q.where(Review.institution_id.in_(visible))
    job = ReplayJob(id=new_id(), candidate_version=candidate, baseline_version=baseline, days=days,
                    window_from=start, window_to=now, scope=sorted(visible) if visible is not None else None,
                    status="queued", total=int(s.scalar(q) or 0), done=0, result=empty_result(),
                    requested_by=principal.actor, requested_at=now, version=1)
    s.add(job)
    s.flush()
    from audit_engine import audit_log

    audit_log.append(s, actor=audit_log.Actor.of(principal), action="quality.replay_requested",
                     object_type="replay_job", object_id=job.id,
                     detail={"candidate": candidate, "baseline": baseline, "days": days})
    return job


def job_json(job: ReplayJob, *, rule_titles: dict[str, str] | None = None) -> dict[str, Any]:
    def at(v: datetime | None) -> str | None:
        return v.isoformat(timespec="seconds") + "Z" if v else None

    result = job.result or empty_result()
    rules = [{"rule_id": rid, **r} for rid, r in result.get("rules", {}).items()]
    rules.sort(key=lambda r: (-(r["added"] + r["removed"] + r.get("level_changed", 0)), r["rule_id"]))
    institutions = [{"institution": code, **r} for code, r in result.get("institutions", {}).items()]
    institutions.sort(key=lambda r: r["institution"])
    return {
        "id": job.id, "status": job.status, "candidate_version": job.candidate_version,
        "baseline_version": job.baseline_version, "days": job.days,
        "window": {"from": at(job.window_from), "to": at(job.window_to)},
        "total": job.total, "done": job.done,
        "progress": round(job.done / job.total, 4) if job.total else (1.0 if job.status == "done" else 0.0),
        "requested_by": job.requested_by, "requested_at": at(job.requested_at), "started_at": at(job.started_at),
        "finished_at": at(job.finished_at), "error": job.error,
        "summary": {k: result.get(k) for k in ("examined", "failed", "verdict_changes", "finding_changes",
                                               "transitions")},
        "rules": rules, "institutions": institutions, "errors": result.get("errors", []),
    }


def get_job(s: Session, *, job_id: str, principal: Principal) -> ReplayJob:
    job = s.get(ReplayJob, job_id)
    visible = visible_institution_ids(s, principal)
    if job is None or (visible is not None and (job.scope is None or not set(job.scope) <= visible)):
        raise NotFoundError(f"ReplayJob/{job_id}", "没有这个试运行任务，或无权查看")
    return job


# --------------------------------------------------------------------------- engines
def candidates(s: Session) -> list[dict[str, Any]]:
    """The stored rulebase versions a replay can try (every one but the active), newest first."""
    rows = s.execute(sa.select(RulebaseVersion.version, RulebaseVersion.label, RulebaseVersion.status,
                               RulebaseVersion.uploaded_by, RulebaseVersion.uploaded_at)
                     .where(RulebaseVersion.status != "active")
                     .order_by(RulebaseVersion.uploaded_at.desc())).all()
    return [{"version": v, "label": label, "status": st, "uploaded_by": by,
             "uploaded_at": at.isoformat(timespec="seconds") + "Z" if at else None}
            for v, label, st, by, at in rows]


def list_jobs(s: Session, *, principal: Principal, limit: int = 50) -> list[dict[str, Any]]:
    """The latest replay jobs whose scope the principal may see, without their details."""
    visible = visible_institution_ids(s, principal)
    jobs = s.scalars(sa.select(ReplayJob).order_by(ReplayJob.requested_at.desc()).limit(limit)).all()
    out = []
    for job in jobs:
        if visible is not None and (job.scope is None or not set(job.scope) <= visible):
            continue
        body = job_json(job)
        body["rules"], body["institutions"] = [], []
        out.append(body)
    return out


def engine_for(db: sa.Engine, version: str) -> Any | None:
    """The compiled engine of a stored version (cached per process, two at most), or None."""
    with _ENGINES_LOCK:
        if version in _ENGINES:
            _ENGINES.move_to_end(version)
            return _ENGINES[version]
    with read_scope(db) as s:
        files = s.scalar(sa.select(RulebaseVersion.files).where(RulebaseVersion.version == version))
    if not files:
        return None
    from audit_engine.engine import Engine

    with tempfile.TemporaryDirectory(prefix="replay-") as folder:
        for name, text in files.items():
            target = Path(folder) / name
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(text, encoding="utf-8")
        engine = Engine.from_path(folder)
    with _ENGINES_LOCK:
        _ENGINES[version] = engine
        while len(_ENGINES) > 2:
            _, old = _ENGINES.popitem(last=False)
            old.close()
    return engine


# --------------------------------------------------------------------------- running
def _next_job(db: sa.Engine) -> ReplayJob | None:
    with read_scope(db) as s:
        job = s.scalar(sa.select(ReplayJob).where(ReplayJob.status.in_(("queued", "running")))
                       .order_by(ReplayJob.requested_at, ReplayJob.id).limit(1))
        s.expunge_all()  # read_scope rolls back on exit, which would expire what we return
        return job


Stored = dict[str, list[tuple[str, str, int]]]


_COLUMNS = (Review.id, Review.created_at, Review.facts, Review.policy, Review.engine_failed, Review.verdict,
            Review.prescription_id, Institution.code, Institution.level)


def _chunk(db: sa.Engine, job: ReplayJob, limit: int, *, with_stored: bool) -> tuple[list[Any], Stored]:
    """The next reviews of the window after the job's cursor (only the columns a replay reads: not
    the prescription as received), with their institution; and, when asked, their stored findings."""
    with read_scope(db) as s:
        q = (sa.select(*_COLUMNS)
             .join(Institution, Institution.id == Review.institution_id)
             .where(Review.created_at >= job.window_from, Review.created_at < job.window_to)
             .order_by(Review.created_at, Review.id).limit(limit))
        if job.scope is not None:
            q = q.where(Review.institution_id.in_(job.scope))
        if job.cursor_at is not None:
            q = q.where(sa.tuple_(Review.created_at, Review.id) > sa.tuple_(sa.literal(job.cursor_at),
                                                                            sa.literal(job.cursor_id)))
        rows = list(s.execute(q).all())
        stored: Stored = {}
        ids = [r.id for r in rows] if with_stored else []
        for start in range(0, len(ids), 500):
            for rid, rule, title, level in s.execute(
                    sa.select(FindingRow.review_id, FindingRow.rule_id, FindingRow.title, FindingRow.level)
                    .where(FindingRow.review_id.in_(ids[start:start + 500]))):
                stored.setdefault(rid, []).append((rule, title, level))
        return rows, stored


def _received(db: sa.Engine, prescription_id: str) -> tuple[str, str]:
    """(raw JSON, intake kind) of a prescription as received: only for a review stored without facts."""
    with read_scope(db) as s:
        raw, kind = s.execute(sa.select(Prescription.raw, Prescription.kind)
                              .where(Prescription.id == prescription_id)).one()
        return str(raw), str(kind)


_FACT_FIELDS: frozenset[str] | None = None


def stored_facts(data: dict[str, Any] | None) -> Any | None:
    """The review's normalised facts as stored, back as ``PrescriptionFacts`` (None when absent)."""
    global _FACT_FIELDS
    import dataclasses

    from audit_engine.schema import FactIssue, PrescriptionFacts

    if not data or not data.get("items"):
        return None
    if _FACT_FIELDS is None:
        _FACT_FIELDS = frozenset(f.name for f in dataclasses.fields(PrescriptionFacts))
    kw = {k: v for k, v in data.items() if k in _FACT_FIELDS}
    kw["issues"] = [FactIssue(**i) for i in data.get("issues") or [] if isinstance(i, dict)]
    return PrescriptionFacts(**kw)


def _replay_one(db: sa.Engine, review: Any, *, stored: list[tuple[str, str, int]], candidate: Any,
                baseline: Any | None) -> dict[str, Any]:
    """Baseline and candidate rules (with their highest level), verdicts and titles of one prescription.

    Both versions read the facts the review established and stored (the drug dictionary is not
    part of a rulebase version), so a difference is the rulebase's alone — and the slow FHIR
    parsing is skipped. A review stored without facts is parsed again from what was received.
    """
    from audit_engine.policy import Policy, decide_verdict
    from audit_engine.review import review_payload, system_finding
    from audit_engine.stats.periods import local_date

    facts = None if review.engine_failed else stored_facts(review.facts)
    if facts is None:
        raw, kind = _received(db, review.prescription_id)
        facts = review_payload(json.loads(raw), kind=kind, engine=candidate,  # type: ignore[arg-type]
                               client_institution={"code": review.code, "level": review.level},
                               today=local_date(review.created_at)).facts
    system = [system_finding(i, facts) for i in facts.issues]
    unchecked = bool(facts.issues)
    policy = Policy.from_snapshot(review.policy) if review.policy else Policy()
    new = [*candidate.evaluate(facts), *system]
    titles = {f.rule_id: f.title for f in new}
    if baseline is not None:
        old = [*baseline.evaluate(facts), *system]
        old_rules = _levels((f.rule_id, f.level) for f in old)
        old_verdict: str = decide_verdict(old, unchecked=unchecked, policy=policy)
        titles.update({f.rule_id: f.title for f in old if f.rule_id not in titles})
    else:  # the baseline version is gone: compare with what was stored
        old_rules = _levels((rule, lvl) for rule, _, lvl in stored)
        old_verdict = review.verdict
        titles.update({rule: title for rule, title, _ in stored if rule not in titles})
    return {"old": old_rules, "new": _levels((f.rule_id, f.level) for f in new), "old_verdict": old_verdict,
            "new_verdict": decide_verdict(new, unchecked=unchecked, policy=policy), "titles": titles}


def _levels(pairs: Any) -> dict[str, int]:
    out: dict[str, int] = {}
    for rule, lvl in pairs:
        out[rule] = max(lvl, out.get(rule, 0))
    return out


def _account(result: dict[str, Any], review: Any, code: str, name: str, outcome: dict[str, Any]) -> None:
    result["examined"] += 1
    inst = result["institutions"].setdefault(code, {"name": name, "examined": 0, "added": 0, "removed": 0,
                                                     "verdict_changes": 0})
    inst["examined"] += 1
    old, new = outcome["old"], outcome["new"]
    for rid in old.keys() | new.keys():
        r = result["rules"].setdefault(rid, {"title": outcome["titles"].get(rid, rid), "baseline_hits": 0,
                                             "candidate_hits": 0, "added": 0, "removed": 0, "level_changed": 0,
                                             "levels": {}, "examples_added": [], "examples_removed": [],
                                             "examples_level_changed": []})
        r["baseline_hits"] += rid in old
        r["candidate_hits"] += rid in new
        if rid in new and rid not in old:
            r["added"] += 1
            inst["added"] += 1
            if len(r["examples_added"]) < EXAMPLES:
                r["examples_added"].append({"review_id": review.id, "institution": code})
        elif rid in old and rid not in new:
            r["removed"] += 1
            inst["removed"] += 1
            if len(r["examples_removed"]) < EXAMPLES:
                r["examples_removed"].append({"review_id": review.id, "institution": code})
        elif old[rid] != new[rid]:
            r["level_changed"] += 1
            key = f"{old[rid]}→{new[rid]}"
            r["levels"][key] = r["levels"].get(key, 0) + 1
            if len(r["examples_level_changed"]) < EXAMPLES:
                r["examples_level_changed"].append({"review_id": review.id, "institution": code})
    if old.keys() != new.keys():
        result["finding_changes"] += 1
    key = f"{outcome['old_verdict']}→{outcome['new_verdict']}"
    result["transitions"][key] = result["transitions"].get(key, 0) + 1
    if outcome["old_verdict"] != outcome["new_verdict"]:
        result["verdict_changes"] += 1
        inst["verdict_changes"] += 1


def step(db: sa.Engine, *, budget_s: float = CHUNK_SECONDS, max_reviews: int = CHUNK_MAX) -> ReplayJob | None:
    """Replay one chunk of the oldest unfinished job; returns the job as written (None: no work)."""
    job = _next_job(db)
    if job is None:
        return None
    try:
        candidate = engine_for(db, job.candidate_version)
        if candidate is None:
            raise AuditEngineError(f"规则库版本 {job.candidate_version[:12]} 不存在")
        baseline = engine_for(db, job.baseline_version) if job.baseline_version != job.candidate_version else None
    except Exception as exc:  # a candidate that no longer loads: the job fails, the worker goes on
        log.exception("replay %s: cannot load engines", job.id)
        _finish(db, job, status="failed", error=f"{type(exc).__name__}: {exc}"[:500])
        return None
    with read_scope(db) as s:
        names = dict(s.execute(sa.select(Institution.code, Institution.name)).all())
    result = json.loads(json.dumps(job.result or empty_result()))  # a private copy to add to
    deadline = time.monotonic() + budget_s
    rows, stored = _chunk(db, job, max_reviews, with_stored=baseline is None)
    last: tuple[datetime, str] | None = None
    count = 0
    for review in rows:
        code = review.code
        try:
            outcome = _replay_one(db, review, stored=stored.get(review.id, []), candidate=candidate,
                                  baseline=baseline)
        except (AuditEngineError, ValueError) as exc:
            result["failed"] += 1
            if len(result["errors"]) < 20:
                result["errors"].append({"review_id": review.id, "error": f"{type(exc).__name__}: {exc}"[:300]})
        else:
            _account(result, review, code, names.get(code, code), outcome)
        last = (review.created_at, review.id)
        count += 1
        if time.monotonic() >= deadline:
            break
    finished = count == len(rows) and len(rows) < max_reviews
    values: dict[str, Any] = {"result": result, "done": job.done + count, "version": job.version + 1,
                              "status": "done" if finished else "running"}
    if last is not None:
        values["cursor_at"], values["cursor_id"] = last
    if job.started_at is None:
        values["started_at"] = utcnow()
    if finished:
        values["finished_at"] = utcnow()
        values["total"] = max(job.total, job.done + count)
    with session_scope(db) as s:
        result_ = s.execute(sa.update(ReplayJob).where(ReplayJob.id == job.id, ReplayJob.version == job.version)
                            .values(**values))
        written = getattr(result_, "rowcount", 1)
    if not written:
        return None  # another worker recorded this chunk first; ours is dropped
    with read_scope(db) as s:
        fresh = s.get(ReplayJob, job.id)
        s.expunge_all()
        return fresh


def _finish(db: sa.Engine, job: ReplayJob, *, status: str, error: str | None) -> None:
    with session_scope(db) as s:
        s.execute(sa.update(ReplayJob).where(ReplayJob.id == job.id, ReplayJob.version == job.version)
                  .values(status=status, error=error, finished_at=utcnow(), version=job.version + 1))


def run_pending(db: sa.Engine) -> int:
    """Run every queued job to the end (tests, benchmarks); returns chunks recorded."""
    chunks = 0
    while step(db) is not None:
        chunks += 1
    return chunks


def run_replays(db: sa.Engine, stop_event: threading.Event, *, idle_s: float = 1.0) -> None:
    """The worker's replay loop (its own thread): chunks back to back while there is work."""
    while not stop_event.is_set():
        try:
            busy = step(db) is not None
        except Exception:  # keep the loop alive; the job's committed cursor says where to resume
            log.exception("replay step failed")
            busy = False
        if not busy:
            stop_event.wait(idle_s)
