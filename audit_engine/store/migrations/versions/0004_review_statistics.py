"""Statistics recorded at review time: review_stats, review_stat_items, review_stat_rules;
backfills every existing review from its stored facts and findings.

Revision ID: 0004
Revises: 0003
"""

from __future__ import annotations

import json
from typing import Any

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

JSON_T = sa.JSON()
BATCH = 2000


def _period_columns() -> list[sa.Column[Any]]:
    return [
        sa.Column("institution_id", sa.Integer(), nullable=False),
        sa.Column("local_date", sa.Date(), nullable=False),
        sa.Column("visit_type", sa.String(length=4), nullable=True),
    ]


def upgrade() -> None:
    op.create_table(
        "review_stats",
        sa.Column("review_id", sa.String(length=32), sa.ForeignKey("reviews.id"), primary_key=True),
        sa.Column("institution_id", sa.Integer(), sa.ForeignKey("institutions.id"), nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.Column("local_date", sa.Date(), nullable=False),
        sa.Column("local_month", sa.String(length=7), nullable=False),
        sa.Column("visit_type", sa.String(length=4), nullable=True),
        sa.Column("department", sa.String(length=200), nullable=True),
        sa.Column("prescriber_code", sa.String(length=200), nullable=True),
        sa.Column("prescriber_name", sa.String(length=200), nullable=True),
        sa.Column("prescriber_title", sa.String(length=32), nullable=True),
        sa.Column("verdict", sa.String(length=16), nullable=False),
        sa.Column("item_count", sa.Integer(), nullable=False),
        sa.Column("antimicrobial", sa.Boolean(), nullable=False),
        sa.Column("injection", sa.Boolean(), nullable=False),
        sa.Column("essential", sa.Boolean(), nullable=False),
        sa.Column("iv_steroid", sa.Boolean(), nullable=False),
        sa.Column("essential_items", sa.Integer(), nullable=False),
        sa.Column("off_list_items", sa.Integer(), nullable=False),
    )
    op.create_index("ix_review_stats_date_inst", "review_stats", ["local_date", "institution_id"])
    op.create_index("ix_review_stats_inst_date", "review_stats", ["institution_id", "local_date"])
    op.create_table(
        "review_stat_items",
        sa.Column("review_id", sa.String(length=32), sa.ForeignKey("reviews.id"), primary_key=True),
        sa.Column("position", sa.Integer(), primary_key=True),
        *_period_columns(),
        sa.Column("drug_id", sa.String(length=64), nullable=True),
        sa.Column("drug_name", sa.String(length=200), nullable=True),
        sa.Column("antimicrobial", sa.Boolean(), nullable=False),
        sa.Column("injection", sa.Boolean(), nullable=False),
        sa.Column("essential", sa.Boolean(), nullable=False),
        sa.Column("iv_steroid", sa.Boolean(), nullable=False),
        sa.Column("on_level_list", sa.Boolean(), nullable=False),
    )
    op.create_index("ix_review_stat_items_date_inst", "review_stat_items", ["local_date", "institution_id"])
    op.create_table(
        "review_stat_rules",
        sa.Column("review_id", sa.String(length=32), sa.ForeignKey("reviews.id"), primary_key=True),
        sa.Column("rule_id", sa.String(length=64), primary_key=True),
        *_period_columns(),
        sa.Column("findings", sa.Integer(), nullable=False),
    )
    op.create_index("ix_review_stat_rules_date_inst", "review_stat_rules", ["local_date", "institution_id"])
    op.create_index("ix_review_stat_rules_rule_date", "review_stat_rules", ["rule_id", "local_date"])
    backfill(op.get_bind())


def backfill(conn: sa.Connection) -> int:
    """Record statistics for every review that has none, from its stored facts, findings and
    prescription (the one place statistics read stored JSON). Returns the reviews recorded."""
    from audit_engine.stats.recording import insert_stat_rows, stat_rows

    reviews = sa.table(
        "reviews", sa.column("id", sa.String()), sa.column("institution_id", sa.Integer()),
        sa.column("created_at", sa.DateTime()), sa.column("verdict", sa.String()),
        sa.column("facts", JSON_T), sa.column("prescription_id", sa.String()),
    )
    prescriptions = sa.table("prescriptions", sa.column("id", sa.String()), sa.column("raw", sa.Text()))
    findings = sa.table(
        "findings", sa.column("review_id", sa.String()), sa.column("rule_id", sa.String()),
        sa.column("implicated", JSON_T), sa.column("position", sa.Integer()),
    )
    done = sa.table("review_stats", sa.column("review_id", sa.String()))
    total = 0
    last = ""
    while True:
        batch = conn.execute(
            sa.select(reviews.c.id, reviews.c.institution_id, reviews.c.created_at, reviews.c.verdict,
                      reviews.c.facts, prescriptions.c.raw)
            .join(prescriptions, prescriptions.c.id == reviews.c.prescription_id)
            .where(reviews.c.id > last, ~sa.exists().where(done.c.review_id == reviews.c.id))
            .order_by(reviews.c.id)
            .limit(BATCH)
        ).all()
        if not batch:
            return total
        last = batch[-1].id
        by_review: dict[str, list[tuple[str, list[str]]]] = {r.id: [] for r in batch}
        for f in conn.execute(
            sa.select(findings.c.review_id, findings.c.rule_id, findings.c.implicated)
            .where(findings.c.review_id.in_(list(by_review)))
            .order_by(findings.c.review_id, findings.c.position)
        ):
            by_review[f.review_id].append((f.rule_id, list(_decoded(f.implicated) or [])))
        rows = []
        for r in batch:
            facts = _decoded(r.facts)
            try:
                payload = json.loads(r.raw) if r.raw else None
            except ValueError:
                payload = None
            rows.append(stat_rows(
                review_id=r.id, institution_id=r.institution_id, created_at=r.created_at, verdict=r.verdict,
                facts=facts if isinstance(facts, dict) else {}, findings=by_review[r.id], payload=payload,
            ))
        total += insert_stat_rows(conn, rows)


def _decoded(value: Any) -> Any:
    if isinstance(value, str | bytes):
        try:
            return json.loads(value)
        except ValueError:
            return None
    return value


def downgrade() -> None:
    op.drop_table("review_stat_rules")
    op.drop_table("review_stat_items")
    op.drop_table("review_stats")
