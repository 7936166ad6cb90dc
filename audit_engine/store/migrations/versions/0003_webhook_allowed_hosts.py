"""Webhook host allowlist: the hosts each institution's subscriptions may call.

Revision ID: 0003
Revises: 0002
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "webhook_allowed_hosts",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("institution_id", sa.Integer(), nullable=False),
        sa.Column("host", sa.String(length=253), nullable=False),
        sa.Column("added_by", sa.String(length=200), nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.ForeignKeyConstraint(["institution_id"], ["institutions.id"]),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("institution_id", "host", name="uq_webhook_allowed_host"),
    )
    op.create_index(
        op.f("ix_webhook_allowed_hosts_institution_id"), "webhook_allowed_hosts", ["institution_id"], unique=False
    )


def downgrade() -> None:
    op.drop_index(op.f("ix_webhook_allowed_hosts_institution_id"), table_name="webhook_allowed_hosts")
    op.drop_table("webhook_allowed_hosts")
