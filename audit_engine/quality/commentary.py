"""Commenting a sampled prescription, and the 处方合格率 (``qualification_rate``).

A prescription is commented once: a later comment by the same or another reviewer replaces
the earlier one (the audit log keeps every version). ``qualification_rate`` per institution
and month = sampled prescriptions judged 合理 / sampled prescriptions commented
(INDICATORS.md, section E; 药事管理专业医疗质量控制指标（2020年版）门诊处方合格率); an
institution with nothing commented has the value null.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Session

from audit_engine import audit_log
from audit_engine.auth import Principal, visible_institution_ids
from audit_engine.errors import InvalidRequestError, NotFoundError
from audit_engine.quality import codes as national
from audit_engine.quality.sampling import comment_json, get_sample
from audit_engine.stats.periods import month_period
from audit_engine.store.db import utcnow
from audit_engine.store.models import Institution
from audit_engine.store.quality_models import Comment, CommentSampleItem

MAX_NOTE = 2000


def comment(s: Session, *, principal: Principal, sample_id: str, review_id: str, judgement: str,
            codes: list[str], note: str | None) -> dict[str, Any]:
    """Record the 点评 of one prescription of the sample; the caller commits."""
    sample = get_sample(s, sample_id=sample_id, principal=principal)
    item = s.get(CommentSampleItem, (sample_id, review_id))
    if item is None:
        raise NotFoundError(f"CommentSample/{sample_id}/{review_id}", "该处方不在这个点评样本中")
    checked = national.validate(judgement, list(codes))
    if note is not None and len(note) > MAX_NOTE:
        raise InvalidRequestError("note", f"点评意见最长 {MAX_NOTE} 字")
    row = s.get(Comment, review_id)
    fresh = row is None
    if row is None:
        row = Comment(review_id=review_id, sample_id=sample_id, institution_id=item.institution_id,
                      month=sample.month, judgement=judgement, codes=checked, note=note or None,
                      commented_by=principal.actor, commented_at=utcnow())
        try:
            with s.begin_nested():  # two reviewers commenting the same prescription at once: the later one updates
                s.add(row)
        except sa.exc.IntegrityError:
            fresh = False
            row = s.get(Comment, review_id, populate_existing=True)
            if row is None:
                raise
    if not fresh:
        row.sample_id, row.month = sample_id, sample.month
        row.judgement, row.codes, row.note = judgement, checked, note or None
        row.commented_by, row.commented_at = principal.actor, utcnow()
    s.flush()
    audit_log.append(s, actor=audit_log.Actor.of(principal), action="quality.commented", object_type="review",
                     object_id=review_id, institution_id=item.institution_id,
                     detail={"sample": sample_id, "judgement": judgement, "codes": checked})
    return comment_json(row)


def _figure(numerator: int, denominator: int) -> dict[str, Any]:
    return {"numerator": numerator, "denominator": denominator,
            "value": round(numerator / denominator, 6) if denominator else None}


def qualification(s: Session, *, principal: Principal, month: str) -> dict[str, Any]:
    """Per visible institution and for the alliance: ``qualification_rate`` of ``month``, and how
    often each national code was found (the distribution of problem types)."""
    month_period(month)
    visible = visible_institution_ids(s, principal)
    q = sa.select(Comment.institution_id, Comment.judgement, Comment.codes).where(Comment.month == month)
    if visible is not None:
        q = q.where(Comment.institution_id.in_(visible))
    per: dict[int, Counter[str]] = {}
    code_counts: Counter[str] = Counter()
    for iid, judgement, codes in s.execute(q):
        per.setdefault(iid, Counter())[judgement] += 1
        code_counts.update(codes or [])
    inst_q = sa.select(Institution.id, Institution.code, Institution.name).order_by(Institution.code)
    if visible is not None:
        inst_q = inst_q.where(Institution.id.in_(visible))
    rows = []
    for iid, code, name in s.execute(inst_q):
        c = per.get(iid, Counter())
        rows.append({"key": code, "label": name,
                     "indicators": {"qualification_rate": _figure(c["合理"], c["合理"] + c["不合理"])}})
    total = Counter[str]()
    for c in per.values():
        total.update(c)
    known = national.by_code()
    return {
        "month": month,
        "rows": rows,
        "alliance": {"indicators": {"qualification_rate": _figure(total["合理"], total["合理"] + total["不合理"])}},
        "codes": [{"code": k, "group": known[k].group_name, "text": known[k].text, "count": code_counts[k]}
                  for k in (c.code for c in national.all_codes()) if code_counts[k]],
        "groups": {name: sum(n for k, n in code_counts.items() if known[k].group_name == name)
                   for _, name in national.GROUPS},
        "definition": "处方合格率 = 点评为合理的抽样处方数 / 已点评的抽样处方数（药事管理专业医疗质量控制指标（2020年版））",
    }
