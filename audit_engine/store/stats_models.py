"""Statistics facts recorded at review time (migration 0005), so that no figure parses stored JSON.

Three narrow tables, written in the review's own transaction by
``audit_engine.stats.recording`` and never updated afterwards (a review's content is
immutable; what changes later — decisions, doctors' answers, CDS feedback — stays in
``tasks`` and ``feedback`` and is joined at query time, so late events count exactly):

* ``review_stats``: one row per review — period keys in the alliance's time zone, scope
  (门诊/急诊), department, prescriber, verdict and the per-prescription indicator flags;
* ``review_stat_items``: one row per drug item — the drug and its indicator flags;
* ``review_stat_rules``: one row per (review, rule that fired) — for rule statistics.

The period and scope columns are repeated on the child tables so that a month's items or
rule hits are read through their own index without touching ``review_stats``.
"""

from __future__ import annotations

from datetime import date, datetime

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, mapped_column

from audit_engine.store.models import Base


class ReviewStat(Base):
    """What statistics need of one review (one prescription version)."""

    __tablename__ = "review_stats"
    __table_args__ = (
        sa.Index("ix_review_stats_date_inst", "local_date", "institution_id"),
        sa.Index("ix_review_stats_inst_date", "institution_id", "local_date"),
    )

    review_id: Mapped[str] = mapped_column(sa.ForeignKey("reviews.id"), primary_key=True)
    institution_id: Mapped[int] = mapped_column(sa.ForeignKey("institutions.id"))
    created_at: Mapped[datetime]
    local_date: Mapped[date]  # the review's day in the alliance's time zone
    local_month: Mapped[str] = mapped_column(sa.String(7))  # "YYYY-MM" of local_date
    visit_type: Mapped[str | None] = mapped_column(sa.String(4), default=None)  # 门诊 | 急诊 | None (unknown)
    department: Mapped[str | None] = mapped_column(sa.String(200), default=None)
    prescriber_code: Mapped[str | None] = mapped_column(sa.String(200), default=None)
    prescriber_name: Mapped[str | None] = mapped_column(sa.String(200), default=None)
    prescriber_title: Mapped[str | None] = mapped_column(sa.String(32), default=None)
    verdict: Mapped[str] = mapped_column(sa.String(16))
    item_count: Mapped[int]
    antimicrobial: Mapped[bool]  # >= 1 antimicrobial item
    injection: Mapped[bool]  # >= 1 injection item
    essential: Mapped[bool]  # >= 1 item on the national essential medicines list
    iv_steroid: Mapped[bool]  # >= 1 intravenous systemic corticosteroid (ATC H02)
    essential_items: Mapped[int]
    off_list_items: Mapped[int]  # items not on the institution level's drug list


class ReviewStatItem(Base):
    """One drug item of one review, as statistics count it."""

    __tablename__ = "review_stat_items"
    __table_args__ = (
        sa.Index("ix_review_stat_items_date_inst", "local_date", "institution_id"),
    )

    review_id: Mapped[str] = mapped_column(sa.ForeignKey("reviews.id"), primary_key=True)
    position: Mapped[int] = mapped_column(primary_key=True)
    institution_id: Mapped[int]
    local_date: Mapped[date]
    visit_type: Mapped[str | None] = mapped_column(sa.String(4), default=None)
    drug_id: Mapped[str | None] = mapped_column(sa.String(64), default=None)  # None: not identified
    drug_name: Mapped[str | None] = mapped_column(sa.String(200), default=None)  # canonical, else as written
    antimicrobial: Mapped[bool]
    injection: Mapped[bool]
    essential: Mapped[bool]
    iv_steroid: Mapped[bool]
    on_level_list: Mapped[bool]


class ReviewStatRule(Base):
    """A rule that fired on a review (once per review, however many items it implicated)."""

    __tablename__ = "review_stat_rules"
    __table_args__ = (
        sa.Index("ix_review_stat_rules_date_inst", "local_date", "institution_id"),
        sa.Index("ix_review_stat_rules_rule_date", "rule_id", "local_date"),
    )

    review_id: Mapped[str] = mapped_column(sa.ForeignKey("reviews.id"), primary_key=True)
    rule_id: Mapped[str] = mapped_column(sa.String(64), primary_key=True)
    institution_id: Mapped[int]
    local_date: Mapped[date]
    visit_type: Mapped[str | None] = mapped_column(sa.String(4), default=None)
    findings: Mapped[int]  # findings of this rule on this review (items or pairs it implicated)
