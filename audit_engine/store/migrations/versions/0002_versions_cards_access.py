"""Prescription versions by content, superseded tasks, timeout safety, issued CDS cards,
unique feedback, and a read record apart from the audit history.

* ``prescriptions.content_hash`` (NOT NULL; rows stored before this migration get
  ``legacy:<raw_sha256>``, so resending one of them is reviewed afresh as a new version);
  the unique key ``(institution_id, identifier)`` becomes the unique index
  ``uq_prescription_version (institution_id, identifier, content_hash)``.
* ``tasks.status`` may be ``superseded``; ``reviews.previous_review_id`` is indexed (reads
  look up the next version).
* ``policies.timeout_pass_max_level`` (default 7: level 8, 禁用 on the county scale, and above
  are never passed by a timeout).
* ``feedback.outcome_at`` and the unique index ``uq_feedback_card (card_id)``; duplicates
  recorded before it are removed (the first of each card stays; the audit log keeps them all).
* ``cds_cards``: every card issued, backfilled for the CDS reviews already stored.
* ``review_access``: append-only record of reads (triggers refuse update and delete).

SQLite cannot drop a table's UNIQUE or CHECK constraint, so ``prescriptions`` and ``tasks``
are rebuilt there: copied aside, dropped, created anew, copied back. Foreign keys stay on
(``PRAGMA foreign_keys`` cannot change inside the migration's transaction): with
``defer_foreign_keys`` the reviews that point at the dropped ``prescriptions`` are checked
at commit, after the rows are back.

Revision ID: 0002
Revises: 0001
"""

from __future__ import annotations

import uuid

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

JSON_T = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")

OLD_TASK_STATUSES = (
    "pending", "claimed", "returned", "escalated", "approved", "rejected", "modified",
    "double_signed", "timeout_passed", "abandoned",
)
TASK_STATUSES = (*OLD_TASK_STATUSES, "superseded")


def _status_check(statuses: tuple[str, ...]) -> str:
    return f"status IN ({', '.join(repr(v) for v in statuses)})"


def _metadata() -> sa.MetaData:
    """A MetaData holding stand-ins of the tables the rebuilt ones point at (for their foreign keys)."""
    meta = sa.MetaData()
    for name in ("institutions", "reviews"):
        sa.Table(name, meta, sa.Column("id", sa.String(length=32), primary_key=True))
    return meta


def _prescriptions_table(meta: sa.MetaData) -> sa.Table:
    return sa.Table(
        "prescriptions",
        meta,
        sa.Column("id", sa.String(length=32), nullable=False),
        sa.Column("institution_id", sa.Integer(), nullable=False),
        sa.Column("identifier", sa.String(length=200), nullable=True),
        sa.Column("kind", sa.String(length=24), nullable=False),
        sa.Column("raw", sa.Text(), nullable=False),
        sa.Column("raw_sha256", sa.String(length=64), nullable=False),
        sa.Column("received_at", sa.DateTime(), nullable=False),
        sa.Column("retention_class", sa.String(length=16), nullable=False),
        sa.Column("retain_until", sa.Date(), nullable=False),
        sa.Column("content_hash", sa.String(length=80), nullable=False),
        sa.ForeignKeyConstraint(["institution_id"], ["institutions.id"]),
        sa.PrimaryKeyConstraint("id"),
        sa.Index("ix_prescriptions_received_at", "received_at"),
        sa.Index("uq_prescription_version", "institution_id", "identifier", "content_hash", unique=True),
    )


def _tasks_table(meta: sa.MetaData) -> sa.Table:
    return sa.Table(
        "tasks",
        meta,
        sa.Column("id", sa.String(length=32), nullable=False),
        sa.Column("review_id", sa.String(length=32), nullable=False),
        sa.Column("institution_id", sa.Integer(), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("emergency", sa.Boolean(), nullable=False),
        sa.Column("escalated", sa.Boolean(), nullable=False),
        sa.Column("max_level", sa.Integer(), nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.Column("deadline_at", sa.DateTime(), nullable=True),
        sa.Column("claimed_by", sa.String(length=200), nullable=True),
        sa.Column("claimed_at", sa.DateTime(), nullable=True),
        sa.Column("lease_expires_at", sa.DateTime(), nullable=True),
        sa.Column("decision", sa.String(length=16), nullable=True),
        sa.Column("reason", sa.Text(), nullable=True),
        sa.Column("decided_by", sa.String(length=200), nullable=True),
        sa.Column("decided_at", sa.DateTime(), nullable=True),
        sa.Column("answer_due_at", sa.DateTime(), nullable=True),
        sa.Column("doctor_answer", sa.String(length=16), nullable=True),
        sa.Column("doctor_reason", sa.Text(), nullable=True),
        sa.Column("next_review_id", sa.String(length=32), nullable=True),
        sa.Column("closed_at", sa.DateTime(), nullable=True),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.CheckConstraint(_status_check(TASK_STATUSES), name="ck_task_status"),
        sa.ForeignKeyConstraint(["institution_id"], ["institutions.id"]),
        sa.ForeignKeyConstraint(["next_review_id"], ["reviews.id"]),
        sa.ForeignKeyConstraint(["review_id"], ["reviews.id"]),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("review_id"),
        sa.Index("ix_tasks_deadline", "status", "deadline_at"),
        sa.Index("ix_tasks_queue", "status", "institution_id"),
    )


def _rebuild_sqlite(table: sa.Table, *, extra: dict[str, str] | None = None) -> None:
    """Re-create ``table`` on SQLite with its new definition, keeping every row.

    ``extra`` gives SQL expressions (over the old columns) for columns the old table lacks.
    """
    extra = extra or {}
    bind = op.get_bind()
    name = table.name
    aside = f"_{name}_0002"
    bind.exec_driver_sql("PRAGMA defer_foreign_keys = ON")
    bind.exec_driver_sql(f"CREATE TEMP TABLE {aside} AS SELECT * FROM {name}")
    bind.exec_driver_sql(f"DROP TABLE {name}")
    table.create(bind)
    columns = [c.name for c in table.columns]
    source = [extra.get(c, c) for c in columns]
    bind.exec_driver_sql(f"INSERT INTO {name} ({', '.join(columns)}) SELECT {', '.join(source)} FROM {aside}")
    bind.exec_driver_sql(f"DROP TABLE {aside}")


def _guard_sqlite(table: str, what: str) -> None:
    name = f"{table}_no_{what.lower()}"
    op.execute(
        f"CREATE TRIGGER {name} BEFORE {what} ON {table} FOR EACH ROW "
        f"BEGIN SELECT RAISE(ABORT, '{table} rows are immutable ({what} refused)'); END"
    )


def _guard_postgres(table: str, what: str) -> None:
    name = f"{table}_no_{what.lower()}"
    op.execute(
        f"CREATE FUNCTION {name}() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN "
        f"RAISE EXCEPTION '{table} rows are immutable ({what} refused)'; END $$"
    )
    op.execute(f"CREATE TRIGGER {name} BEFORE {what} ON {table} FOR EACH ROW EXECUTE FUNCTION {name}()")


def _guard(table: str, what: str) -> None:
    if op.get_bind().dialect.name == "postgresql":
        _guard_postgres(table, what)
    else:
        _guard_sqlite(table, what)


def upgrade() -> None:
    bind = op.get_bind()
    postgres = bind.dialect.name == "postgresql"
    meta = _metadata()

    # --- prescriptions: one row per (identifier, content) version
    if postgres:
        op.add_column("prescriptions", sa.Column("content_hash", sa.String(length=80), nullable=True))
        op.execute("ALTER TABLE prescriptions DISABLE TRIGGER prescriptions_no_update")
        op.execute("UPDATE prescriptions SET content_hash = 'legacy:' || raw_sha256")
        op.execute("ALTER TABLE prescriptions ENABLE TRIGGER prescriptions_no_update")
        op.alter_column("prescriptions", "content_hash", nullable=False)
        op.drop_constraint("uq_prescription_identifier", "prescriptions", type_="unique")
        op.create_index(
            "uq_prescription_version", "prescriptions", ["institution_id", "identifier", "content_hash"], unique=True
        )
    else:
        _rebuild_sqlite(_prescriptions_table(meta), extra={"content_hash": "'legacy:' || raw_sha256"})
        _guard_sqlite("prescriptions", "UPDATE")  # dropped with the old table

    op.create_index(op.f("ix_reviews_previous_review_id"), "reviews", ["previous_review_id"], unique=False)

    # --- tasks: superseded
    if postgres:
        op.drop_constraint("ck_task_status", "tasks", type_="check")
        op.create_check_constraint("ck_task_status", "tasks", _status_check(TASK_STATUSES))
    else:
        _rebuild_sqlite(_tasks_table(meta))

    # --- policies: what a timeout may pass
    op.add_column(
        "policies",
        sa.Column("timeout_pass_max_level", sa.Integer(), nullable=False, server_default=sa.text("7")),
    )

    # --- feedback: once per card
    op.add_column("feedback", sa.Column("outcome_at", sa.DateTime(), nullable=True))
    op.execute(
        "DELETE FROM feedback WHERE card_id IS NOT NULL AND id NOT IN "
        "(SELECT min_id FROM (SELECT MIN(id) AS min_id FROM feedback WHERE card_id IS NOT NULL GROUP BY card_id) AS firsts)"
    )
    op.create_index("uq_feedback_card", "feedback", ["card_id"], unique=True)

    # --- cards issued
    op.create_table(
        "cds_cards",
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("review_id", sa.String(length=32), nullable=False),
        sa.Column("institution_id", sa.Integer(), nullable=False),
        sa.Column("position", sa.Integer(), nullable=False),
        sa.Column("rule_id", sa.String(length=64), nullable=False),
        sa.Column("issued_at", sa.DateTime(), nullable=False),
        sa.ForeignKeyConstraint(["institution_id"], ["institutions.id"]),
        sa.ForeignKeyConstraint(["review_id"], ["reviews.id"]),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index(op.f("ix_cds_cards_review_id"), "cds_cards", ["review_id"], unique=False)
    _backfill_cards()

    # --- reads, apart from the history
    op.create_table(
        "review_access",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("review_id", sa.String(length=32), nullable=False),
        sa.Column("institution_id", sa.Integer(), nullable=True),
        sa.Column("actor_kind", sa.String(length=16), nullable=False),
        sa.Column("actor_id", sa.String(length=64), nullable=True),
        sa.Column("actor_name", sa.String(length=200), nullable=True),
        sa.Column("action", sa.String(length=24), nullable=False),
        sa.Column("at", sa.DateTime(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_review_access_review", "review_access", ["review_id", "at"], unique=False)
    _guard("review_access", "UPDATE")
    _guard("review_access", "DELETE")


def _backfill_cards() -> None:
    """Cards of the CDS reviews stored before 0002, with the ids they were issued under
    (``fhir_out.card_id``: the review id's first 24 hex digits, then the finding position)."""
    bind = op.get_bind()
    rows = bind.execute(
        sa.text(
            "SELECT f.review_id, f.position, f.rule_id, r.institution_id, r.created_at "
            "FROM findings f JOIN reviews r ON r.id = f.review_id "
            "JOIN prescriptions p ON p.id = r.prescription_id WHERE p.kind = 'cds'"
        )
    ).all()
    cards = [
        {
            "id": str(uuid.UUID(row.review_id[:24] + f"{row.position:08x}")),
            "review_id": row.review_id,
            "institution_id": row.institution_id,
            "position": row.position,
            "rule_id": row.rule_id,
            "issued_at": row.created_at,
        }
        for row in rows
        if len(row.review_id) == 32 and all(c in "0123456789abcdef" for c in row.review_id)
    ]
    if cards:
        insert = sa.text(
            "INSERT INTO cds_cards (id, review_id, institution_id, position, rule_id, issued_at) "
            "VALUES (:id, :review_id, :institution_id, :position, :rule_id, :issued_at)"
        )
        for start in range(0, len(cards), 1000):
            bind.execute(insert, cards[start : start + 1000])


def downgrade() -> None:
    """Back to 0001, refused while a prescription number has more than one stored version or a
    task is superseded (0001 cannot hold them)."""
    bind = op.get_bind()
    postgres = bind.dialect.name == "postgresql"
    versions = bind.execute(
        sa.text(
            "SELECT COUNT(*) FROM (SELECT institution_id, identifier FROM prescriptions "
            "WHERE identifier IS NOT NULL GROUP BY institution_id, identifier HAVING COUNT(*) > 1) AS v"
        )
    ).scalar_one()
    superseded = bind.execute(sa.text("SELECT COUNT(*) FROM tasks WHERE status = 'superseded'")).scalar_one()
    if versions or superseded:
        raise RuntimeError(
            f"0002 downgrade refused: {versions} prescription numbers have several versions and "
            f"{superseded} tasks are superseded; 0001 cannot hold them"
        )
    for what in ("UPDATE", "DELETE"):
        name = f"review_access_no_{what.lower()}"
        op.execute(f"DROP TRIGGER IF EXISTS {name}" + (" ON review_access" if postgres else ""))
        if postgres:
            op.execute(f"DROP FUNCTION IF EXISTS {name}()")
    op.drop_index("ix_review_access_review", table_name="review_access")
    op.drop_table("review_access")
    op.drop_index(op.f("ix_cds_cards_review_id"), table_name="cds_cards")
    op.drop_table("cds_cards")
    op.drop_index(op.f("ix_reviews_previous_review_id"), table_name="reviews")
    op.drop_index("uq_feedback_card", table_name="feedback")
    with op.batch_alter_table("feedback") as batch:
        batch.drop_column("outcome_at")
    with op.batch_alter_table("policies") as batch:
        batch.drop_column("timeout_pass_max_level")
    if postgres:
        op.drop_constraint("ck_task_status", "tasks", type_="check")
        op.create_check_constraint("ck_task_status", "tasks", _status_check(OLD_TASK_STATUSES))
        op.drop_index("uq_prescription_version", table_name="prescriptions")
        op.create_unique_constraint("uq_prescription_identifier", "prescriptions", ["institution_id", "identifier"])
        op.execute("ALTER TABLE prescriptions DISABLE TRIGGER prescriptions_no_update")
        op.drop_column("prescriptions", "content_hash")
        op.execute("ALTER TABLE prescriptions ENABLE TRIGGER prescriptions_no_update")
    else:
        tasks = _tasks_table(_metadata())
        for constraint in list(tasks.constraints):
            if isinstance(constraint, sa.CheckConstraint):
                tasks.constraints.discard(constraint)
        tasks.append_constraint(sa.CheckConstraint(_status_check(OLD_TASK_STATUSES), name="ck_task_status"))
        _rebuild_sqlite(tasks)
        old = _prescriptions_table(_metadata())
        old_meta = _metadata()
        restored = sa.Table(
            "prescriptions",
            old_meta,
            *[sa.Column(c.name, c.type, nullable=c.nullable) for c in old.columns if c.name != "content_hash"],
            sa.ForeignKeyConstraint(["institution_id"], ["institutions.id"]),
            sa.PrimaryKeyConstraint("id"),
            sa.UniqueConstraint("institution_id", "identifier", name="uq_prescription_identifier"),
            sa.Index("ix_prescriptions_received_at", "received_at"),
        )
        _rebuild_sqlite(restored)
        _guard_sqlite("prescriptions", "UPDATE")
