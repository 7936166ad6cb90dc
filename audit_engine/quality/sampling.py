"""The 处方点评 sample of a month: statutory, random, reproducible (INDICATORS.md, section E).

**Population.** The month's prescriptions (stored reviews, by creation time in the alliance's
time zone, as every statistic counts them) of each visible institution, in two strata:
``western`` (西药、中成药 — outpatient and emergency) and ``herbal`` (中药饮片: prescriptions
holding a decoction piece).

**Size.** Per institution and stratum, 《医院处方点评管理规范（试行）》第十条: at least 1‰ and at
least 100 for outpatient and emergency prescriptions, at least 0.5% and at least 100 for 中药饮片;
all of them when there are fewer. A manager may ask for more (``at_least``), never for less.

**Choice.** Each prescription's rank is ``sha256("<seed>:<review id>")``; the sample of a stratum
is its lowest ranks. So the same month and seed always give the same prescriptions, whoever draws
them and in whatever order the database returns rows, and a prescription chosen from a
population stays chosen when the population only grows.
"""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Session

from audit_engine.auth import Principal, visible_institution_ids
from audit_engine.errors import InvalidRequestError, NotFoundError
from audit_engine.stats.periods import month_period
from audit_engine.store.db import utcnow
from audit_engine.store.models import Institution, Review, new_id
from audit_engine.store.quality_models import Comment, CommentSample, CommentSampleItem
from audit_engine.store.stats_models import ReviewStat

STRATA = {"western": "门急诊处方（西药、中成药）", "herbal": "中药饮片处方"}
# (per-mille rate, floor) of the statutory minimum per institution and month.
MINIMUM = {"western": (1, 100), "herbal": (5, 100)}
MAX_AT_LEAST = 5000
MAX_SEED = 2**53  # exact in JSON numbers and JavaScript


def statutory_minimum(population: int, stratum: str) -> int:
    """How many of ``population`` prescriptions the sample must hold: all when there are no more
    than the floor, else the larger of the floor and the rate (rounded up)."""
    per_mille, floor = MINIMUM[stratum]
    if population <= floor:
        return population
    return max(floor, -(-population * per_mille // 1000))


def rank(seed: int, review_id: str) -> str:
    """The seeded rank of one prescription (lowest ranks are drawn)."""
    return hashlib.sha256(f"{seed}:{review_id}".encode()).hexdigest()


@dataclass(frozen=True, slots=True)
class Candidate:
    review_id: str
    institution_id: int
    stratum: str


def population(s: Session, *, month: str, institution_ids: frozenset[int] | None) -> list[Candidate]:
    """Every prescription of ``month`` at the given institutions (None: all), with its stratum."""
    herbal = sa.func.coalesce(Review.facts[("prescription", "has_herbal")].as_boolean(), sa.false())
    q = (sa.select(ReviewStat.review_id, ReviewStat.institution_id, herbal)
         .join(Review, Review.id == ReviewStat.review_id)
         .where(ReviewStat.local_month == month))
    if institution_ids is not None:
        q = q.where(ReviewStat.institution_id.in_(institution_ids))
    return [Candidate(rid, iid, "herbal" if h else "western") for rid, iid, h in s.execute(q)]


def choose(candidates: list[Candidate], *, seed: int, at_least: int = 0) -> tuple[list[tuple[Candidate, str]],
                                                                                   list[dict[str, Any]]]:
    """The drawn candidates with their ranks, and per (institution, stratum) what was drawn. Pure."""
    groups: dict[tuple[int, str], list[Candidate]] = {}
    for c in candidates:
        groups.setdefault((c.institution_id, c.stratum), []).append(c)
    chosen: list[tuple[Candidate, str]] = []
    strata: list[dict[str, Any]] = []
    for (iid, stratum), members in sorted(groups.items()):
        minimum = statutory_minimum(len(members), stratum)
        size = min(len(members), max(minimum, at_least))
        ranked = sorted((rank(seed, c.review_id), c.review_id, c) for c in members)[:size]
        chosen.extend((c, r) for r, _, c in ranked)
        strata.append({"institution_id": iid, "stratum": stratum, "population": len(members),
                       "minimum": minimum, "drawn": size})
    return chosen, strata


def draw(s: Session, *, principal: Principal, month: str, seed: int | None = None, institution: str | None = None,
         at_least: int = 0) -> str:
    """Draw and store the sample; returns its id. The caller commits."""
    month_period(month)  # validates YYYY-MM
    if seed is None:
        seed = secrets.randbelow(MAX_SEED)
    if not 0 <= seed < MAX_SEED:
        raise InvalidRequestError("seed", f"seed 应为 0 到 {MAX_SEED - 1} 之间的整数")
    if not 0 <= at_least <= MAX_AT_LEAST:
        raise InvalidRequestError("at_least", f"at_least 应在 0 到 {MAX_AT_LEAST} 之间")
    ids = institution_scope(s, principal, institution)
    chosen, strata = choose(population(s, month=month, institution_ids=ids), seed=seed, at_least=at_least)
    if not chosen:
        raise InvalidRequestError("month", f"{month} 没有可抽样的处方")
    codes = dict(s.execute(sa.select(Institution.id, Institution.code)).all())
    for row in strata:
        row["institution"] = codes[row["institution_id"]]
    sample = CommentSample(id=new_id(), month=month, seed=seed,
                           institution_id=next(iter(ids)) if institution and ids else None,
                           drawn_by=principal.actor, drawn_at=utcnow(), strata=strata)
    s.add(sample)
    s.flush()
    order = sorted(chosen, key=lambda cr: (codes[cr[0].institution_id], cr[0].stratum, cr[1]))
    s.execute(sa.insert(CommentSampleItem), [
        {"sample_id": sample.id, "review_id": c.review_id, "position": n, "institution_id": c.institution_id,
         "stratum": c.stratum, "rank": r} for n, (c, r) in enumerate(order)])
    from audit_engine import audit_log

    audit_log.append(s, actor=audit_log.Actor.of(principal), action="quality.sample_drawn",
                     object_type="comment_sample", object_id=sample.id,
                     detail={"month": month, "seed": seed, "size": len(order), "institution": institution})
    return sample.id


def institution_scope(s: Session, principal: Principal, institution: str | None) -> frozenset[int] | None:
    """The institutions the caller draws from: all visible ones, or the one named (if visible)."""
    visible = visible_institution_ids(s, principal)
    if institution is None:
        return visible
    iid = s.scalar(sa.select(Institution.id).where(Institution.code == institution))
    if iid is None or (visible is not None and iid not in visible):
        raise NotFoundError(f"Institution/{institution}", "机构不存在或无权查看")
    return frozenset({iid})


def get_sample(s: Session, *, sample_id: str, principal: Principal) -> CommentSample:
    sample = s.get(CommentSample, sample_id)
    if sample is None:
        raise NotFoundError(f"CommentSample/{sample_id}", "没有这个点评样本")
    visible = visible_institution_ids(s, principal)
    if visible is not None:
        inside = s.scalars(sa.select(CommentSampleItem.institution_id).distinct()
                           .where(CommentSampleItem.sample_id == sample_id)).all()
        if any(i not in visible for i in inside):
            raise NotFoundError(f"CommentSample/{sample_id}", "没有这个点评样本，或无权查看")
    return sample


def sample_json(s: Session, sample: CommentSample, *, with_items: bool = True) -> dict[str, Any]:
    """The sample: month, seed, who drew it when, strata and (optionally) each item with its comment."""
    names = dict(s.execute(sa.select(Institution.code, Institution.name)).all())
    body: dict[str, Any] = {
        "id": sample.id, "month": sample.month, "seed": sample.seed, "drawn_by": sample.drawn_by,
        "drawn_at": sample.drawn_at.isoformat(timespec="seconds") + "Z",
        "strata": [{**{k: v for k, v in st.items() if k != "institution_id"},
                    "institution_name": names.get(st["institution"], st["institution"]),
                    "stratum_name": STRATA[st["stratum"]]} for st in sample.strata],
    }
    counts = s.execute(
        sa.select(sa.func.count(), sa.func.count(Comment.review_id))
        .select_from(CommentSampleItem)
        .outerjoin(Comment, Comment.review_id == CommentSampleItem.review_id)
        .where(CommentSampleItem.sample_id == sample.id)).one()
    body["size"], body["commented"] = int(counts[0]), int(counts[1])
    if with_items:
        rows = s.execute(
            sa.select(CommentSampleItem, Institution.code, Review.verdict, Review.created_at, Review.max_level,
                      Comment)
            .join(Institution, Institution.id == CommentSampleItem.institution_id)
            .join(Review, Review.id == CommentSampleItem.review_id)
            .outerjoin(Comment, Comment.review_id == CommentSampleItem.review_id)
            .where(CommentSampleItem.sample_id == sample.id)
            .order_by(CommentSampleItem.position)).all()
        body["items"] = [{
            "position": item.position, "review_id": item.review_id, "institution": code,
            "institution_name": names.get(code, code), "stratum": item.stratum, "verdict": verdict,
            "max_level": level, "created_at": created.isoformat(timespec="seconds") + "Z",
            "comment": comment_json(comment) if comment is not None else None,
        } for item, code, verdict, created, level, comment in rows]
    return body


def comment_json(c: Comment) -> dict[str, Any]:
    from audit_engine.quality.codes import by_code

    known = by_code()
    return {"review_id": c.review_id, "judgement": c.judgement,
            "codes": [{"code": k, "group": known[k].group_name, "text": known[k].text} for k in c.codes if k in known],
            "note": c.note, "commented_by": c.commented_by,
            "commented_at": c.commented_at.isoformat(timespec="seconds") + "Z"}


def list_samples(s: Session, *, principal: Principal, month: str | None = None) -> list[dict[str, Any]]:
    q = sa.select(CommentSample).order_by(CommentSample.drawn_at.desc()).limit(100)
    if month:
        month_period(month)
        q = q.where(CommentSample.month == month)
    visible = visible_institution_ids(s, principal)
    out = []
    for sample in s.scalars(q):
        if visible is not None and any(st["institution_id"] not in visible for st in sample.strata):
            continue
        out.append(sample_json(s, sample, with_items=False))
    return out
