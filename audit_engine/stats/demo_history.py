"""``serve --demo``: months of realistic history, so that every statistic is non-trivial on a
fresh machine.

The templates are the demo's own real reviews: the day of sample prescriptions that
``audit_engine.demo`` has just sent through the real pipeline, each stored with its facts, findings
and verdict by a member of the level it was written for. The history replays them over the
last three full months and the current month up to yesterday — a fresh prescription number,
time, prescriber and department each — and writes every row a real review writes (the
prescription as received, the review, its findings, its statistics rows from
``stats.recording.stat_rows``, the ``review.created`` audit entry), then what happened
afterwards: the pharmacist's decision on every recheck task (a few timeouts), the doctor's
answer to a return (a modified version is a new review, linked), CDS feedback on the
``explain`` reviews. Rows go in directly through the store's tables (thousands in a few
seconds), not through HTTP.

What makes the figures worth looking at:

* volumes by level: the county hospital ≫ townships ≈ the community centre ≫ villages, fewer
  at weekends;
* two **noisy rules**: the two rules that most often send the history's prescriptions to a
  pharmacist are approved by the pharmacists 95% of the time, so the rule audit flags them;
* one **outlier member**: the village clinic ``VIL02`` prescribes antimicrobials far more
  often than the others (its antimicrobial templates are drawn eight times as often), so the
  homogenisation view marks it and the monitoring flags it;
* its key monitored drug: now and then a member prescribes 奥拉西坦, which the county
  dictionary does not know (a pharmacist checks it; the monitoring counts it).

Running it again adds nothing (the history's prescription numbers start with ``HIST-``).
"""

from __future__ import annotations

import hashlib
import json
import random
import sys
import time
from collections import Counter
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Any, TextIO, cast

import sqlalchemy as sa
from sqlalchemy.orm import Session

from audit_engine import audit_log
from audit_engine.facts import GRADE_BY_TITLE
from audit_engine.intake.content import content_hash
from audit_engine.stats.recording import insert_stat_rows, stat_rows
from audit_engine.store.db import make_engine, session_scope, utcnow
from audit_engine.store.models import (
    Department,
    Feedback,
    FindingRow,
    Institution,
    Practitioner,
    Prescription,
    Review,
    Task,
    new_id,
)
from audit_engine.store.retention import retain_until, retention_class

PREFIX = "HIST-"
PER_DAY = {"县级医院": 20, "乡镇卫生院": 7, "社区卫生服务中心": 6, "村卫生室": 2}
OUTLIER = "VIL02"
OUTLIER_WEIGHT = 8.0
MONITORED_SHARE = 0.01
SEED = 20261205

_FINDING_COLUMNS = ("rule_id", "title", "category", "subtype", "level", "message", "evidence", "implicated",
                    "suggestion", "source")


@dataclass
class Template:
    """One stored demo review: what to replay."""

    review: dict[str, Any]
    raw: str
    identifier: str
    findings: list[dict[str, Any]]
    antimicrobial: bool


def _templates(s: Session) -> dict[str, list[Template]]:
    """Level → the demo's real reviews sent by a member of that level (history excluded)."""
    rows = s.execute(
        sa.select(Review, Prescription.raw, Prescription.identifier, Institution.level)
        .join(Prescription, Prescription.id == Review.prescription_id)
        .join(Institution, Institution.id == Review.institution_id)
        .where(Prescription.identifier.is_not(None), ~Prescription.identifier.startswith(PREFIX),
               Review.previous_review_id.is_(None), Review.engine_failed.is_(False))
    ).all()
    findings: dict[str, list[dict[str, Any]]] = {}
    for f in s.scalars(sa.select(FindingRow).where(FindingRow.review_id.in_([r[0].id for r in rows]))
                       .order_by(FindingRow.review_id, FindingRow.position)):
        findings.setdefault(f.review_id, []).append({c: getattr(f, c) for c in _FINDING_COLUMNS})
    out: dict[str, list[Template]] = {}
    for review, raw, identifier, level in rows:
        cols = {c.name: getattr(review, c.key) for c in Review.__table__.columns}
        items = (review.facts or {}).get("items") or []
        anti = any(i.get("antimicrobial_grade") for i in items if isinstance(i, dict))
        out.setdefault(level, []).append(Template(cols, raw, identifier or "", findings.get(review.id, []), anti))
    return out


def _local_to_utc(day: date, minutes: int) -> datetime:
    return datetime(day.year, day.month, day.day) + timedelta(minutes=minutes) - timedelta(hours=8)


def load_history(url: str, *, out: TextIO = sys.stdout, today: date | None = None, seed: int = SEED) -> int:
    """Fill the history once; returns how many reviews it wrote (0 when already there)."""
    db = make_engine(url)
    started = time.perf_counter()
    try:
        with session_scope(db) as s:
            if s.scalar(sa.select(Prescription.id).where(Prescription.identifier.startswith(PREFIX)).limit(1)):
                print("演示历史数据已存在：未重复生成。", file=out, flush=True)
                return 0
            templates = _templates(s)
            if not templates:
                print("没有可作模板的演示审方（规则库未加载？），跳过历史数据。", file=out, flush=True)
                return 0
            n = _generate(s, templates, today or (utcnow() + timedelta(hours=8)).date(), random.Random(seed))
        print(f"演示历史：近三个多月 {n} 张处方（药师决定、医生答复与反馈齐全），统计与报表均有数据"
              f"（用时 {time.perf_counter() - started:.1f} 秒）。", file=out, flush=True)
        return n
    finally:
        db.dispose()


def _noisy_rules(reviews: list[dict[str, Any]]) -> set[str]:
    """The two rules that most often sent the generated reviews to a pharmacist."""
    counts: Counter[str] = Counter()
    for review in reviews:
        if review["verdict"] == "recheck":
            counts.update({f["rule_id"] for f in review["_findings"] if not f["rule_id"].startswith("SYS-")})
    return {rule for rule, _ in counts.most_common(2)}


def _generate(s: Session, templates: dict[str, list[Template]], today: date, rng: random.Random) -> int:
    first = date(today.year, today.month, 1)
    for _ in range(3):
        first = (first - timedelta(days=1)).replace(day=1)
    institutions = s.execute(sa.select(Institution.id, Institution.code, Institution.level)).all()
    staff: dict[int, list[tuple[str, str, str | None]]] = {}
    for p in s.scalars(sa.select(Practitioner)):
        staff.setdefault(p.institution_id, []).append((p.code, p.name, p.title))
    depts: dict[int, list[str]] = {}
    for d in s.scalars(sa.select(Department)):
        depts.setdefault(d.institution_id, []).append(d.name)
    any_pool = [t for pool in templates.values() for t in pool]
    monitored_template = next((t for t in any_pool if t.review["verdict"] == "pass" and t.review["items"]), None)
    clean = [t for t in any_pool if t.review["verdict"] == "pass"]

    rows: dict[str, list[dict[str, Any]]] = {k: [] for k in ("prescriptions", "reviews", "findings", "tasks", "feedback")}
    stats: list[Any] = []
    audit: list[audit_log.NewEntry] = []
    writer = _Writer(rows, stats, audit)
    made: list[tuple[dict[str, Any], int, str, datetime, tuple[str, str, str | None], str]] = []
    day = first
    while day < today:
        weekend = day.isoweekday() >= 6
        for iid, code, level in institutions:
            pool = templates.get(level) or any_pool
            weights = [OUTLIER_WEIGHT if (code == OUTLIER and t.antimicrobial) else 1.0 for t in pool]
            volume = max(0, round(PER_DAY.get(level, 3) * (0.6 if weekend else 1.0) * rng.uniform(0.7, 1.3)))
            for _ in range(volume):
                at = _local_to_utc(day, rng.randint(8 * 60, 17 * 60 + 30))
                template = rng.choices(pool, weights)[0]
                monitored = monitored_template is not None and rng.random() < MONITORED_SHARE
                doctor = rng.choice(staff.get(iid) or [("D000", "值班医师", None)])
                names = depts.get(iid) or ["全科"]
                emergency = (template.review["facts"] or {}).get("prescription", {}).get("type") == "急诊"
                dept = "急诊科" if emergency and "急诊科" in names else rng.choice(names)
                review = writer.review(template, iid, code, at, doctor, dept, monitored=monitored, rng=rng)
                made.append((review, iid, code, at, doctor, dept))
        day += timedelta(days=1)
    count = len(made)
    noisy = _noisy_rules([m[0] for m in made])
    for review, iid, code, at, doctor, dept in made:
        count += writer.aftermath(review, iid, code, at, noisy, clean, doctor, dept, rng)
    writer.flush(s)
    return count


class _Writer:
    """Accumulates the rows of many reviews and writes them with one executemany per table."""

    def __init__(self, rows: dict[str, list[dict[str, Any]]], stats: list[Any], audit: list[audit_log.NewEntry]) -> None:
        self.rows, self.stats, self.audit = rows, stats, audit
        self.serial = 0

    def review(self, t: Template, iid: int, code: str, at: datetime, doctor: tuple[str, str, str | None], dept: str,
               *, monitored: bool, rng: random.Random, verdict: str | None = None,
               previous: str | None = None) -> dict[str, Any]:
        self.serial += 1
        identifier = f"{PREFIX}{code}-{at:%Y%m%d}-{self.serial:05d}"
        base = t.review["facts"] or {}
        # A shallow copy: the parts that differ are new dicts, the rest (items, patient) is shared, never changed.
        facts = {**base, "identity": {"code": doctor[0], "name": doctor[1]},
                 "prescriber": {**(base.get("prescriber") or {}), **(
                     {"title": doctor[2], "antimicrobial_grade": GRADE_BY_TITLE[doctor[2]]}
                     if doctor[2] in GRADE_BY_TITLE else {})},
                 "prescription": {**(base.get("prescription") or {}), "department": dept},
                 "institution": {**(base.get("institution") or {}), "code": code}}
        findings = [dict(f) for f in t.findings]
        raw = t.raw.replace(t.identifier, identifier)
        verdict = verdict or t.review["verdict"]
        if monitored:  # a key monitored drug the dictionary does not know: a pharmacist must check it
            ref = "MedicationRequest/hist-monitored"
            facts["items"] = [*facts.get("items", []), {"id": "hist-monitored", "reference": ref, "route": "静滴",
                                                         "route_stated": True, "prn": False, "overdose_reason": False}]
            findings.append({"rule_id": "SYS-UNKNOWN-DRUG", "title": "药品无法识别，系统未能审核", "category": "规范性",
                             "subtype": "无法审核", "level": 5, "message": "药品无法识别：注射用奥拉西坦（编码 无）",
                             "evidence": "《医疗机构处方审核规范》：信息系统未能审核的内容由药师人工审核",
                             "implicated": [ref], "suggestion": "请药师人工审核", "source": None})
            raw = json.dumps({"resourceType": "Bundle", "type": "collection", "entry": [
                {"resource": {"resourceType": "MedicationRequest", "id": "hist-monitored", "status": "active",
                              "intent": "order", "medicationCodeableConcept": {"text": "注射用奥拉西坦 4g"},
                              "groupIdentifier": {"value": identifier}}}]}, ensure_ascii=False)
            verdict = "recheck" if verdict in ("pass", "explain") else verdict
        rx_id = new_id()
        ret = retention_class(facts.get("items"))
        self.rows["prescriptions"].append({
            "id": rx_id, "institution_id": iid, "identifier": identifier, "kind": "bundle", "raw": raw,
            "raw_sha256": hashlib.sha256(raw.encode()).hexdigest(), "content_hash": content_hash(json.loads(raw)),
            "received_at": at,
            "retention_class": ret, "retain_until": retain_until(at, ret)})
        review_id = new_id()
        row = {**t.review, "id": review_id, "prescription_id": rx_id, "institution_id": iid,
               "previous_review_id": previous, "verdict": verdict,
               "outcome": {"pass": "system_pass", "explain": "awaiting_reason", "recheck": "pending",
                           "block": "auto_return"}[verdict],
               "max_level": max((f["level"] for f in findings), default=0), "facts": facts,
               "items": [i.get("reference") for i in facts.get("items", [])], "created_at": at,
               "decided_at": None if verdict == "recheck" else at}
        self.rows["reviews"].append(row)
        for n, f in enumerate(findings):
            self.rows["findings"].append({**f, "review_id": review_id, "position": n})
        self.stats.append(stat_rows(review_id=review_id, institution_id=iid, created_at=at, verdict=verdict,
                                    facts=facts, findings=[(f["rule_id"], f["implicated"]) for f in findings]))
        actor = audit_log.Actor("institution", str(iid), f"institution:{code}", iid)
        self.audit.append(audit_log.NewEntry(actor, "review.created", "review", review_id, iid,
                                             {"prescription": rx_id, "identifier": identifier, "verdict": verdict,
                                              "history": True}, at))
        row["_findings"] = findings
        return row

    def aftermath(self, review: dict[str, Any], iid: int, code: str, at: datetime, noisy: set[str],
                  clean: list[Template], doctor: tuple[str, str, str | None], dept: str, rng: random.Random) -> int:
        """What happens after the review: decisions, answers, feedback. Returns new reviews written."""
        rules = {f["rule_id"] for f in review["_findings"]}
        if review["verdict"] == "explain":
            u = rng.random()
            if u < 0.7:
                rule = next((f["rule_id"] for f in review["_findings"]), None)
                self.rows["feedback"].append({"review_id": review["id"], "rule_id": rule, "card_id": None,
                                              "outcome": "overridden", "reason": "已向患者说明，获益大于风险",
                                              "created_at": at + timedelta(seconds=rng.randint(20, 120))})
                review["outcome"], review["decided_at"] = "explained", at + timedelta(seconds=60)
            elif u < 0.8:
                rule = next((f["rule_id"] for f in review["_findings"]), None)
                self.rows["feedback"].append({"review_id": review["id"], "rule_id": rule, "card_id": None,
                                              "outcome": "accepted", "reason": None,
                                              "created_at": at + timedelta(seconds=rng.randint(20, 120))})
            return 0
        if review["verdict"] != "recheck":
            return 0
        decided = at + timedelta(seconds=int(rng.lognormvariate(4.2, 0.6)))
        u = rng.random()
        if rules & noisy:
            decision = "approve" if u < 0.95 else "return"
        else:
            decision = "approve" if u < 0.45 else "reject" if u < 0.6 else "return" if u < 0.92 else "timeout_pass"
        task: dict[str, Any] = {
            "id": new_id(), "review_id": review["id"], "institution_id": iid, "emergency": bool(review["emergency"]),
            "escalated": False, "max_level": review["max_level"], "created_at": at,
            "deadline_at": at + timedelta(minutes=15), "claimed_by": None, "claimed_at": None,
            "lease_expires_at": None, "decision": decision, "reason": None, "decided_by": "yaoshi1",
            "decided_at": decided, "answer_due_at": None, "doctor_answer": None, "doctor_reason": None,
            "next_review_id": None, "closed_at": decided, "version": 3}
        written = 0
        if decision == "timeout_pass":
            task.update(status="timeout_passed", decided_by="system", decided_at=at + timedelta(minutes=15),
                        closed_at=at + timedelta(minutes=15))
            review["outcome"], review["decided_at"] = "timeout_pass", task["decided_at"]
        elif decision == "approve":
            task["status"] = "approved"
            review["outcome"], review["decided_at"] = "pharmacist_pass", decided
        elif decision == "reject":
            task.update(status="rejected", reason="存在用药禁忌，请重新开具")
            review["outcome"], review["decided_at"] = "rejected", decided
        else:
            task.update(status="returned", reason="请核对剂量与适应证后修改", closed_at=None,
                        answer_due_at=decided + timedelta(hours=24))
            review["outcome"], review["decided_at"] = "returned", decided
            v = rng.random()
            answered = decided + timedelta(minutes=rng.randint(3, 40))
            if v < 0.8 and clean:  # the doctor modifies: a new version, reviewed clean
                new = self.review(rng.choice(clean), iid, code, answered, doctor, dept, monitored=False, rng=rng,
                                  previous=review["id"])
                task.update(status="modified", doctor_answer="modify", closed_at=answered, next_review_id=new["id"])
                review["outcome"] = "modified"
                written = 1
            elif v < 0.95:
                task.update(status="double_signed", doctor_answer="insist", doctor_reason="病情需要，已与患者沟通",
                            closed_at=answered)
                review["outcome"] = "double_signed"
            else:  # no answer within the answer time: the worker closed it (queue.apply_timeouts)
                task.update(status="abandoned", closed_at=task["answer_due_at"])
                review["outcome"] = "abandoned"
        self.rows["tasks"].append(task)
        return written

    def flush(self, s: Session) -> None:
        for table, model in (("prescriptions", Prescription), ("reviews", Review), ("findings", FindingRow),
                             ("tasks", Task), ("feedback", Feedback)):
            batch = [{k: v for k, v in r.items() if not k.startswith("_")} for r in self.rows[table]]
            if batch:
                s.execute(cast(sa.Table, model.__table__).insert(), batch)
        insert_stat_rows(s, self.stats)
        self.audit.sort(key=lambda e: e.at or datetime.min)
        for start in range(0, len(self.audit), 4000):  # the SQLite sealer chains up to 5000 at a time
            audit_log.append_many(s, self.audit[start:start + 4000])
