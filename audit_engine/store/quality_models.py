"""Tables of the quality manager's workspace (migration 0005): 处方点评 samples and their
commentary, the teaching-case library and what-if replay jobs.

None of them is read by the review path, and none of them changes a review, a task or a
statistics row: a sample *points at* reviews, a comment *describes* one, a replay only
reads them.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, mapped_column

from audit_engine.store.models import Base, JSONType, _one_of


class CommentSample(Base):
    """One drawn 处方点评 sample: the month, the seed and who drew it when."""

    __tablename__ = "comment_samples"

    id: Mapped[str] = mapped_column(sa.String(32), primary_key=True)
    month: Mapped[str] = mapped_column(sa.String(7), index=True)  # "YYYY-MM" in the alliance's time zone
    seed: Mapped[int] = mapped_column(sa.BigInteger)
    institution_id: Mapped[int | None] = mapped_column(sa.ForeignKey("institutions.id"), default=None)
    drawn_by: Mapped[str] = mapped_column(sa.String(200))
    drawn_at: Mapped[datetime]
    # Per institution and stratum: population, statutory minimum, drawn (what the sample is made of).
    strata: Mapped[list[dict[str, Any]]] = mapped_column(JSONType)


class CommentSampleItem(Base):
    """One sampled prescription (a stored review) of a sample."""

    __tablename__ = "comment_sample_items"

    sample_id: Mapped[str] = mapped_column(sa.ForeignKey("comment_samples.id"), primary_key=True)
    review_id: Mapped[str] = mapped_column(sa.ForeignKey("reviews.id"), primary_key=True)
    position: Mapped[int]
    institution_id: Mapped[int] = mapped_column(sa.ForeignKey("institutions.id"))
    stratum: Mapped[str] = mapped_column(sa.String(16))  # western | herbal
    rank: Mapped[str] = mapped_column(sa.String(64))  # the seeded hash that chose it (reproducibility)


class Comment(Base):
    """The 点评 of one prescription (one stored review): 合理, or 不合理 with national codes."""

    __tablename__ = "comments"
    __table_args__ = (_one_of("judgement", "ck_comment_judgement", ("合理", "不合理")),)

    review_id: Mapped[str] = mapped_column(sa.ForeignKey("reviews.id"), primary_key=True)
    sample_id: Mapped[str] = mapped_column(sa.ForeignKey("comment_samples.id"), index=True)
    institution_id: Mapped[int] = mapped_column(sa.ForeignKey("institutions.id"))
    month: Mapped[str] = mapped_column(sa.String(7))
    judgement: Mapped[str] = mapped_column(sa.String(8))
    codes: Mapped[list[str]] = mapped_column(JSONType)
    note: Mapped[str | None] = mapped_column(sa.Text, default=None)
    commented_by: Mapped[str] = mapped_column(sa.String(200))
    commented_at: Mapped[datetime]


class TeachingCase(Base):
    """An anonymised teaching case (教学案例) made from an intervention or a 点评 finding."""

    __tablename__ = "teaching_cases"
    __table_args__ = (_one_of("source", "ck_teaching_source", ("intervention", "comment")),)

    id: Mapped[str] = mapped_column(sa.String(32), primary_key=True)
    source: Mapped[str] = mapped_column(sa.String(16))
    review_id: Mapped[str] = mapped_column(sa.ForeignKey("reviews.id"), unique=True)
    title: Mapped[str] = mapped_column(sa.String(300))
    case: Mapped[dict[str, Any]] = mapped_column(JSONType)  # the anonymised content
    created_by: Mapped[str] = mapped_column(sa.String(200))
    created_at: Mapped[datetime]


class ReplayJob(Base):
    """A what-if replay of a candidate rulebase over the stored prescriptions of a window."""

    __tablename__ = "replay_jobs"
    __table_args__ = (
        _one_of("status", "ck_replay_status", ("queued", "running", "done", "failed")),
        sa.Index("ix_replay_jobs_status", "status", "requested_at"),
    )

    id: Mapped[str] = mapped_column(sa.String(32), primary_key=True)
    candidate_version: Mapped[str] = mapped_column(sa.String(128))
    baseline_version: Mapped[str] = mapped_column(sa.String(128))
    days: Mapped[int]
    window_from: Mapped[datetime]
    window_to: Mapped[datetime]
    scope: Mapped[list[int] | None] = mapped_column(JSONType, default=None)  # visible institution ids; None = all
    status: Mapped[str] = mapped_column(sa.String(8))
    total: Mapped[int] = mapped_column(default=0)
    done: Mapped[int] = mapped_column(default=0)
    # Where the next chunk starts: the last (created_at, id) replayed.
    cursor_at: Mapped[datetime | None] = mapped_column(default=None)
    cursor_id: Mapped[str | None] = mapped_column(sa.String(32), default=None)
    result: Mapped[dict[str, Any]] = mapped_column(JSONType)
    error: Mapped[str | None] = mapped_column(sa.Text, default=None)
    requested_by: Mapped[str] = mapped_column(sa.String(200))
    requested_at: Mapped[datetime]
    started_at: Mapped[datetime | None] = mapped_column(default=None)
    finished_at: Mapped[datetime | None] = mapped_column(default=None)
    # Bumped by every chunk: two workers replaying the same chunk cannot both record it.
    version: Mapped[int] = mapped_column(default=1)
