"""The quality manager's workspace: 处方点评 samples and comments, teaching cases, replay jobs
(``store/quality_models.py``). New tables only; nothing existing changes.

Revision ID: 0005
Revises: 0004
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import JSONB

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None

JSON_T = sa.JSON().with_variant(JSONB(), "postgresql")


def upgrade() -> None:
    op.create_table(
        "comment_samples",
        sa.Column("id", sa.String(length=32), primary_key=True),
        sa.Column("month", sa.String(length=7), nullable=False),
        sa.Column("seed", sa.BigInteger(), nullable=False),
        sa.Column("institution_id", sa.Integer(), sa.ForeignKey("institutions.id"), nullable=True),
        sa.Column("drawn_by", sa.String(length=200), nullable=False),
        sa.Column("drawn_at", sa.DateTime(), nullable=False),
        sa.Column("strata", JSON_T, nullable=False),
    )
    op.create_index("ix_comment_samples_month", "comment_samples", ["month"])
    op.create_table(
        "comment_sample_items",
        sa.Column("sample_id", sa.String(length=32), sa.ForeignKey("comment_samples.id"), primary_key=True),
        sa.Column("review_id", sa.String(length=32), sa.ForeignKey("reviews.id"), primary_key=True),
        sa.Column("position", sa.Integer(), nullable=False),
        sa.Column("institution_id", sa.Integer(), sa.ForeignKey("institutions.id"), nullable=False),
        sa.Column("stratum", sa.String(length=16), nullable=False),
        sa.Column("rank", sa.String(length=64), nullable=False),
    )
    op.create_table(
        "comments",
        sa.Column("review_id", sa.String(length=32), sa.ForeignKey("reviews.id"), primary_key=True),
        sa.Column("sample_id", sa.String(length=32), sa.ForeignKey("comment_samples.id"), nullable=False),
        sa.Column("institution_id", sa.Integer(), sa.ForeignKey("institutions.id"), nullable=False),
        sa.Column("month", sa.String(length=7), nullable=False),
        sa.Column("judgement", sa.String(length=8), nullable=False),
        sa.Column("codes", JSON_T, nullable=False),
        sa.Column("note", sa.Text(), nullable=True),
        sa.Column("commented_by", sa.String(length=200), nullable=False),
        sa.Column("commented_at", sa.DateTime(), nullable=False),
        sa.CheckConstraint("judgement IN ('合理', '不合理')", name="ck_comment_judgement"),
    )
    op.create_index("ix_comments_sample_id", "comments", ["sample_id"])
    op.create_table(
        "teaching_cases",
        sa.Column("id", sa.String(length=32), primary_key=True),
        sa.Column("source", sa.String(length=16), nullable=False),
        sa.Column("review_id", sa.String(length=32), sa.ForeignKey("reviews.id"), nullable=False, unique=True),
        sa.Column("title", sa.String(length=300), nullable=False),
        sa.Column("case", JSON_T, nullable=False),
        sa.Column("created_by", sa.String(length=200), nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.CheckConstraint("source IN ('intervention', 'comment')", name="ck_teaching_source"),
    )
    op.create_table(
        "replay_jobs",
        sa.Column("id", sa.String(length=32), primary_key=True),
        sa.Column("candidate_version", sa.String(length=128), nullable=False),
        sa.Column("baseline_version", sa.String(length=128), nullable=False),
        sa.Column("days", sa.Integer(), nullable=False),
        sa.Column("window_from", sa.DateTime(), nullable=False),
        sa.Column("window_to", sa.DateTime(), nullable=False),
        sa.Column("scope", JSON_T, nullable=True),
        sa.Column("status", sa.String(length=8), nullable=False),
        sa.Column("total", sa.Integer(), nullable=False),
        sa.Column("done", sa.Integer(), nullable=False),
        sa.Column("cursor_at", sa.DateTime(), nullable=True),
        sa.Column("cursor_id", sa.String(length=32), nullable=True),
        sa.Column("result", JSON_T, nullable=False),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("requested_by", sa.String(length=200), nullable=False),
        sa.Column("requested_at", sa.DateTime(), nullable=False),
        sa.Column("started_at", sa.DateTime(), nullable=True),
        sa.Column("finished_at", sa.DateTime(), nullable=True),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.CheckConstraint("status IN ('queued', 'running', 'done', 'failed')", name="ck_replay_status"),
    )
    op.create_index("ix_replay_jobs_status", "replay_jobs", ["status", "requested_at"])


def downgrade() -> None:
    op.drop_index("ix_replay_jobs_status", table_name="replay_jobs")
    op.drop_table("replay_jobs")
    op.drop_table("teaching_cases")
    op.drop_index("ix_comments_sample_id", table_name="comments")
    op.drop_table("comments")
    op.drop_table("comment_sample_items")
    op.drop_index("ix_comment_samples_month", table_name="comment_samples")
    op.drop_table("comment_samples")
