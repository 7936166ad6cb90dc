"""Counting the indicators from the base tables, for any slice and grouping.

Exact under late events by construction: nothing is pre-aggregated. The per-review facts
recorded at review time (``review_stats`` and its item and rule rows, which never change)
are joined at query time with ``tasks`` and ``feedback``, which hold the pharmacist's
decision, the doctor's answer and the CDS feedback whenever they arrive. A review counts
in the period of its own creation (its recorded alliance-local day), so a decision made a
week after the month closed changes that month's figures, and only those.

The SQL counts; :func:`values_of` turns counts into ``{numerator, denominator, value}``
per indicator code (``definitions.INDICATORS``), with ``value = None`` on an empty
denominator. Percentiles of decision times are computed here, in Python, on both
databases (linear interpolation between closest ranks, as ``percentile_cont``).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal, cast

import sqlalchemy as sa
from sqlalchemy.orm import Session

from audit_engine.stats.definitions import RULE_CODES, SLICE_CODES
from audit_engine.stats.periods import Period
from audit_engine.store.models import Feedback, FindingRow, Institution, Review, Task
from audit_engine.store.stats_models import ReviewStat, ReviewStatItem, ReviewStatRule

GroupBy = Literal["institution", "department", "prescriber", "rule", "drug", "month"]
GROUP_BYS: tuple[str, ...] = ("institution", "department", "prescriber", "rule", "drug", "month")
PHARMACIST_DECISIONS = ("approve", "reject", "return")
INTERVENTIONS = ("reject", "return")

RS = cast(sa.Table, ReviewStat.__table__)
ITEMS = cast(sa.Table, ReviewStatItem.__table__)
RULES = cast(sa.Table, ReviewStatRule.__table__)
TASKS = cast(sa.Table, Task.__table__)
FEEDBACK = cast(sa.Table, Feedback.__table__)
REVIEWS = cast(sa.Table, Review.__table__)
FINDINGS = cast(sa.Table, FindingRow.__table__)
INSTITUTIONS = cast(sa.Table, Institution.__table__)

Key = tuple[Any, ...]

# The counts one slice needs; every indicator of sections A and C is a ratio of two of them.
COUNT_FIELDS = (
    "prescriptions", "flagged", "recheck", "block", "explain", "explained", "items", "antimicrobial",
    "injection", "essential_rx", "essential_items", "off_list_items", "emergency", "iv_steroid_emergency",
    "tasks", "decided", "timeout", "intervened", "answered", "modified", "insisted",
)


@dataclass(frozen=True, slots=True)
class Scope:
    """Which reviews count: a period of local days, institutions (None = all) and 门诊/急诊 (None = both)."""

    period: Period
    institution_ids: frozenset[int] | None = None
    visit_type: str | None = None


@dataclass(slots=True)
class Counts:
    """The counts of one slice, plus the decision times (seconds) behind the percentiles."""

    n: dict[str, int] = field(default_factory=lambda: dict.fromkeys(COUNT_FIELDS, 0))
    decision_seconds: list[float] = field(default_factory=list)

    def add(self, other: Counts) -> None:
        for k, v in other.n.items():
            self.n[k] = self.n.get(k, 0) + v
        self.decision_seconds.extend(other.decision_seconds)


def _flt(table: sa.Table, scope: Scope) -> list[sa.ColumnElement[bool]]:
    conds: list[sa.ColumnElement[bool]] = [table.c.local_date >= scope.period.start, table.c.local_date <= scope.period.end]
    if scope.institution_ids is not None:
        conds.append(table.c.institution_id.in_(sorted(scope.institution_ids)) if scope.institution_ids
                     else sa.false())
    if scope.visit_type is not None:
        conds.append(table.c.visit_type == scope.visit_type)
    return conds


def _sum(cond: sa.ColumnElement[Any]) -> sa.ColumnElement[Any]:
    return sa.func.coalesce(sa.func.sum(sa.case((cond, 1), else_=0)), 0)


def _group_columns(group_by: Sequence[str]) -> list[sa.ColumnElement[Any]]:
    cols: list[sa.ColumnElement[Any]] = []
    for g in group_by:
        if g == "institution":
            cols.append(RS.c.institution_id)
        elif g == "department":
            cols += [RS.c.institution_id, RS.c.department]
        elif g == "prescriber":
            cols += [RS.c.institution_id, RS.c.prescriber_code]
        elif g == "month":
            cols.append(RS.c.local_month)
        elif g == "visit_type":
            cols.append(RS.c.visit_type)
        else:
            raise ValueError(f"not a review-level grouping: {g}")
    return cols


def _drug_key() -> sa.ColumnElement[Any]:
    return sa.func.coalesce(ITEMS.c.drug_id, sa.literal("?").concat(sa.func.coalesce(ITEMS.c.drug_name, "")))


def count_slices(s: Session, scope: Scope, group_by: Sequence[str]) -> dict[Key, Counts]:
    """Counts per group (``group_by`` any of institution, department, prescriber, month, or
    ``("drug",)``; empty = the whole slice under the key ``()``)."""
    drug = list(group_by) == ["drug"]
    if drug:
        per_drug = (
            sa.select(ITEMS.c.review_id, _drug_key().label("drug"))
            .where(*_flt(ITEMS, scope))
            .distinct()
            .subquery()
        )
        base: sa.FromClause = RS.join(per_drug, per_drug.c.review_id == RS.c.review_id)
        keys: list[sa.ColumnElement[Any]] = [per_drug.c.drug]
    else:
        base = RS
        keys = _group_columns(group_by)
    conds = _flt(RS, scope)
    rs_counts = [
        sa.func.count().label("prescriptions"),
        _sum(RS.c.verdict != "pass").label("flagged"),
        _sum(RS.c.verdict == "recheck").label("recheck"),
        _sum(RS.c.verdict == "block").label("block"),
        _sum(RS.c.verdict == "explain").label("explain"),
        sa.func.coalesce(sa.func.sum(RS.c.item_count), 0).label("items"),
        _sum(RS.c.antimicrobial).label("antimicrobial"),
        _sum(RS.c.injection).label("injection"),
        _sum(RS.c.essential).label("essential_rx"),
        sa.func.coalesce(sa.func.sum(RS.c.essential_items), 0).label("essential_items"),
        sa.func.coalesce(sa.func.sum(RS.c.off_list_items), 0).label("off_list_items"),
        _sum(RS.c.visit_type == "急诊").label("emergency"),
        _sum(sa.and_(RS.c.visit_type == "急诊", RS.c.iv_steroid)).label("iv_steroid_emergency"),
        sa.func.count(TASKS.c.id).label("tasks"),
        _sum(TASKS.c.decision.in_(PHARMACIST_DECISIONS)).label("decided"),
        _sum(sa.or_(TASKS.c.decision == "timeout_pass", TASKS.c.escalated)).label("timeout"),
        _sum(TASKS.c.decision.in_(INTERVENTIONS)).label("intervened"),
        _sum(sa.and_(TASKS.c.decision == "return", TASKS.c.doctor_answer.is_not(None))).label("answered"),
        _sum(sa.and_(TASKS.c.decision == "return", TASKS.c.doctor_answer == "modify")).label("modified"),
        _sum(sa.and_(TASKS.c.decision == "return", TASKS.c.doctor_answer == "insist")).label("insisted"),
    ]
    q = (
        sa.select(*keys, *rs_counts)
        .select_from(base.outerjoin(TASKS, TASKS.c.review_id == RS.c.review_id))
        .where(*conds)
        .group_by(*keys)
    )
    out: dict[Key, Counts] = {}
    nkeys = len(keys)
    for row in s.execute(q):
        c = Counts()
        values = row[nkeys:]
        labels = [col.name for col in rs_counts]
        for name, value in zip(labels, values, strict=True):
            c.n[name] = int(value or 0)
        out[tuple(row[:nkeys])] = c

    # Explained: verdict explain and the doctor answered — CDS feedback ``overridden``; the
    # native ``POST /reviews/{id}/explanation`` is recorded as exactly that feedback
    # (audit_engine.feedback.record_feedback), so no join with the wide reviews table is needed.
    # The feedback may come any time later.
    overridden = sa.exists().where(FEEDBACK.c.review_id == RS.c.review_id, FEEDBACK.c.outcome == "overridden")
    q2 = (
        sa.select(*keys, sa.func.count().label("n"))
        .select_from(base)
        .where(*conds, RS.c.verdict == "explain", overridden)
        .group_by(*keys)
    )
    for row in s.execute(q2):
        key = tuple(row[:nkeys])
        if key in out:
            out[key].n["explained"] = int(row[nkeys])
    q3 = (
        sa.select(*keys, RS.c.created_at, TASKS.c.decided_at)
        .select_from(base.join(TASKS, TASKS.c.review_id == RS.c.review_id))
        .where(*conds, TASKS.c.decision.in_(PHARMACIST_DECISIONS), TASKS.c.decided_at.is_not(None))
    )
    for row in s.execute(q3):
        key = tuple(row[:nkeys])
        created, decided = row[nkeys], row[nkeys + 1]
        if key in out and isinstance(created, datetime) and isinstance(decided, datetime):
            out[key].decision_seconds.append(max(0.0, (decided - created).total_seconds()))
    return out


def total(counts: Iterable[Counts]) -> Counts:
    out = Counts()
    for c in counts:
        out.add(c)
    return out


# --------------------------------------------------------------------------- values
def figure(numerator: float | int | None, denominator: int | None, *, scale: str = "ratio") -> dict[str, Any]:
    """``{numerator, denominator, value}``; value None on an empty denominator."""
    if denominator is None:
        return {"numerator": numerator, "denominator": None, "value": numerator}
    value = None if not denominator else (numerator or 0) / denominator
    return {"numerator": numerator, "denominator": denominator, "value": None if value is None else round(value, 6)}


def percentile(values: Sequence[float], q: float) -> float | None:
    """The q-quantile by linear interpolation between closest ranks (``percentile_cont``); None if empty."""
    if not values:
        return None
    xs = sorted(values)
    pos = (len(xs) - 1) * q
    lo = int(pos)
    hi = min(lo + 1, len(xs) - 1)
    return xs[lo] + (xs[hi] - xs[lo]) * (pos - lo)


def values_of(c: Counts) -> dict[str, dict[str, Any]]:
    """Every slice indicator (sections A and C) of one slice."""
    n = c.n
    rx, tasks, items, answered = n["prescriptions"], n["tasks"], n["items"], n["answered"]
    p50, p90 = percentile(c.decision_seconds, 0.5), percentile(c.decision_seconds, 0.9)
    out = {
        "prescriptions": figure(rx, None),
        "flag_rate": figure(n["flagged"], rx),
        "recheck_rate": figure(n["recheck"], rx),
        "block_rate": figure(n["block"], rx),
        "pharmacist_decided_rate": figure(n["decided"], tasks),
        "timeout_rate": figure(n["timeout"], tasks),
        "intervention_rate": figure(n["intervened"], rx),
        "acceptance_rate": figure(n["modified"], answered),
        "double_sign_rate": figure(n["insisted"], answered),
        "decision_seconds_p50": figure(None if p50 is None else round(p50, 3), None),
        "decision_seconds_p90": figure(None if p90 is None else round(p90, 3), None),
        "explain_override_rate": figure(n["explained"], n["explain"]),
        "drugs_per_prescription": figure(items, rx),
        "antimicrobial_rate": figure(n["antimicrobial"], rx),
        "injection_rate": figure(n["injection"], rx),
        "essential_item_rate": figure(n["essential_items"], items),
        "essential_prescription_rate": figure(n["essential_rx"], rx),
        "emergency_iv_steroid_rate": figure(n["iv_steroid_emergency"], n["emergency"]),
        "off_formulary_rate": figure(n["off_list_items"], items),
    }
    assert tuple(out) == SLICE_CODES
    return out


# --------------------------------------------------------------------------- rules
@dataclass(slots=True)
class RuleCounts:
    hits: int = 0
    decided: int = 0
    agreed: int = 0
    feedback: int = 0
    overridden: int = 0


def count_rules(s: Session, scope: Scope, *, by_institution: bool = False) -> dict[Key, RuleCounts]:
    """Per rule (and institution): hits, pharmacist-decided tasks and agreements, CDS feedback."""
    keys: list[sa.ColumnElement[Any]] = [RULES.c.rule_id] + ([RULES.c.institution_id] if by_institution else [])
    q = (
        sa.select(
            *keys,
            sa.func.count().label("hits"),
            _sum(TASKS.c.decision.in_(PHARMACIST_DECISIONS)).label("decided"),
            _sum(TASKS.c.decision.in_(INTERVENTIONS)).label("agreed"),
        )
        .select_from(RULES.outerjoin(TASKS, TASKS.c.review_id == RULES.c.review_id))
        .where(*_flt(RULES, scope))
        .group_by(*keys)
    )
    nk = len(keys)
    out: dict[Key, RuleCounts] = {}
    for row in s.execute(q):
        out[tuple(row[:nk])] = RuleCounts(int(row[nk]), int(row[nk + 1] or 0), int(row[nk + 2] or 0))
    fkeys: list[sa.ColumnElement[Any]] = [FEEDBACK.c.rule_id] + ([RS.c.institution_id] if by_institution else [])
    q2 = (
        sa.select(*fkeys, sa.func.count(), _sum(FEEDBACK.c.outcome == "overridden"))
        .select_from(FEEDBACK.join(RS, RS.c.review_id == FEEDBACK.c.review_id))
        .where(*_flt(RS, scope), FEEDBACK.c.rule_id.is_not(None))
        .group_by(*fkeys)
    )
    for row in s.execute(q2):
        rc = out.setdefault(tuple(row[:nk]), RuleCounts())
        rc.feedback, rc.overridden = int(row[nk]), int(row[nk + 1] or 0)
    return out


def rule_values(rc: RuleCounts, prescriptions: int) -> dict[str, dict[str, Any]]:
    out = {
        "hits": figure(rc.hits, None),
        "hit_rate": figure(rc.hits, prescriptions),
        "agreement_rate": figure(rc.agreed, rc.decided),
        "override_rate": figure(rc.overridden, rc.feedback),
    }
    assert tuple(out) == RULE_CODES
    return out


def rule_titles(s: Session, rule_ids: Iterable[str]) -> dict[str, str]:
    """The title of each rule as one of its findings states it (one index probe per rule)."""
    out: dict[str, str] = {}
    for rule in sorted(set(rule_ids)):
        title = s.scalar(sa.select(FINDINGS.c.title).where(FINDINGS.c.rule_id == rule).limit(1))
        if title:
            out[rule] = str(title)
    return out


# --------------------------------------------------------------------------- labels
def institution_names(s: Session, ids: Iterable[int] | None = None) -> dict[int, tuple[str, str]]:
    """id → (code, name)."""
    q = sa.select(INSTITUTIONS.c.id, INSTITUTIONS.c.code, INSTITUTIONS.c.name)
    if ids is not None:
        q = q.where(INSTITUTIONS.c.id.in_(sorted(set(ids))))
    return {r.id: (r.code, r.name) for r in s.execute(q)}


def prescriber_labels(s: Session, scope: Scope) -> dict[tuple[int, str | None], tuple[str | None, str | None]]:
    """(institution, prescriber code) → (latest name, latest title) within the slice."""
    q = (
        sa.select(RS.c.institution_id, RS.c.prescriber_code, sa.func.max(RS.c.prescriber_name),
                  sa.func.max(RS.c.prescriber_title))
        .where(*_flt(RS, scope))
        .group_by(RS.c.institution_id, RS.c.prescriber_code)
    )
    return {(r[0], r[1]): (r[2], r[3]) for r in s.execute(q)}


def drug_labels(s: Session, scope: Scope) -> dict[str, str]:
    sub = sa.select(_drug_key().label("k"), ITEMS.c.drug_name).where(*_flt(ITEMS, scope)).subquery()
    q = sa.select(sub.c.k, sa.func.max(sub.c.drug_name)).group_by(sub.c.k)
    return {str(r[0]): str(r[1] or "未识别药品") for r in s.execute(q)}
