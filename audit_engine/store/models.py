"""ORM models of the review store (SQLAlchemy 2.x typed mappings).

Every table is created by the Alembic migrations (``store/migrations/versions``: 0001 the
initial schema, 0002 prescription versions, card issuance, read records); keep them in step. Times are naive UTC ``datetime`` values everywhere, so that SQLite and
PostgreSQL compare and hash them the same way. Public ids (prescriptions, reviews, tasks,
deliveries) are random 32-hex strings so they reveal neither volume nor order; reference
data uses integer keys.

Two tables refuse updates: ``prescriptions`` (stored as received) and ``audit_log``
(append-only, hash-chained). Both are guarded twice: an ORM ``before_update`` hook here
and a database trigger created by the migration, so raw SQL is refused too.
"""

from __future__ import annotations

import uuid
from datetime import date, datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy import event
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from audit_engine.errors import AuditEngineError
from audit_engine.schema import INSTITUTION_LEVELS

# JSON everywhere; JSONB on PostgreSQL so statistics can index into it.
JSONType = sa.JSON().with_variant(JSONB(), "postgresql")


def new_id() -> str:
    """A fresh public id: 32 lowercase hex characters."""
    return uuid.uuid4().hex


def _one_of(column: str, name: str, values: tuple[str, ...]) -> sa.CheckConstraint:
    """A CHECK that ``column`` holds one of ``values`` (closed vocabularies stay closed in SQL too)."""
    return sa.CheckConstraint(f"{column} IN ({', '.join(repr(v) for v in values)})", name=name)


class Base(DeclarativeBase):
    """Declarative base of every store table."""


# --------------------------------------------------------------------------- reference data
class Institution(Base):
    """A member institution of the alliance; ``is_centre`` marks the lead county hospital."""

    __tablename__ = "institutions"
    __table_args__ = (_one_of("level", "ck_institution_level", INSTITUTION_LEVELS),)

    id: Mapped[int] = mapped_column(primary_key=True)
    code: Mapped[str] = mapped_column(sa.String(64), unique=True)
    name: Mapped[str] = mapped_column(sa.String(200))
    level: Mapped[str] = mapped_column(sa.String(32))  # one of schema.INSTITUTION_LEVELS
    is_centre: Mapped[bool] = mapped_column(default=False)
    # The review centre this member belongs to (None for a centre itself).
    centre_id: Mapped[int | None] = mapped_column(sa.ForeignKey("institutions.id"), default=None)
    created_at: Mapped[datetime]


class Policy(Base):
    """Verdict policy of one institution (absent row = the defaults of ``policy.Policy``)."""

    __tablename__ = "policies"
    __table_args__ = (
        _one_of("fail_mode", "ck_policy_fail_mode", ("open", "closed")),
        _one_of("timeout_action", "ck_policy_timeout_action", ("pass", "escalate")),
        sa.CheckConstraint("explain_at <= recheck_at AND recheck_at <= block_at", name="ck_policy_thresholds"),
    )

    institution_id: Mapped[int] = mapped_column(sa.ForeignKey("institutions.id"), primary_key=True)
    explain_at: Mapped[int]
    recheck_at: Mapped[int]
    block_at: Mapped[int]
    fail_mode: Mapped[str] = mapped_column(sa.String(8))  # open | closed
    work_start: Mapped[str] = mapped_column(sa.String(5))  # "HH:MM" local time
    work_end: Mapped[str] = mapped_column(sa.String(5))  # "HH:MM"; "24:00" = midnight
    work_days: Mapped[list[int]] = mapped_column(JSONType)  # ISO weekdays 1..7
    timezone: Mapped[str] = mapped_column(sa.String(64))
    timeout_minutes: Mapped[int]
    timeout_action: Mapped[str] = mapped_column(sa.String(16))  # pass | escalate
    # A timeout passes a task only when its highest finding level is at most this; above it escalates.
    timeout_pass_max_level: Mapped[int] = mapped_column(server_default=sa.text("7"))
    answer_hours: Mapped[int]  # how long a returned prescription waits for the doctor
    updated_at: Mapped[datetime]


class Department(Base):
    __tablename__ = "departments"
    __table_args__ = (sa.UniqueConstraint("institution_id", "code"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    institution_id: Mapped[int] = mapped_column(sa.ForeignKey("institutions.id"))
    code: Mapped[str] = mapped_column(sa.String(64))
    name: Mapped[str] = mapped_column(sa.String(200))


class Practitioner(Base):
    """A prescriber: title (职称) and special prescribing rights (处方权)."""

    __tablename__ = "practitioners"
    __table_args__ = (sa.UniqueConstraint("institution_id", "code"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    institution_id: Mapped[int] = mapped_column(sa.ForeignKey("institutions.id"))
    department_id: Mapped[int | None] = mapped_column(sa.ForeignKey("departments.id"), default=None)
    code: Mapped[str] = mapped_column(sa.String(64))
    name: Mapped[str] = mapped_column(sa.String(200))
    title: Mapped[str | None] = mapped_column(sa.String(32), default=None)  # schema.TITLES
    rights: Mapped[list[str]] = mapped_column(JSONType, default=list)


class User(Base):
    """A pharmacist, quality manager or rule administrator."""

    __tablename__ = "users"
    __table_args__ = (_one_of("role", "ck_user_role", ("pharmacist", "quality", "admin")),)

    id: Mapped[int] = mapped_column(primary_key=True)
    username: Mapped[str] = mapped_column(sa.String(64), unique=True)
    password_hash: Mapped[str] = mapped_column(sa.String(200))  # argon2id
    role: Mapped[str] = mapped_column(sa.String(16))  # pharmacist | quality | admin
    institution_id: Mapped[int | None] = mapped_column(sa.ForeignKey("institutions.id"), default=None)
    active: Mapped[bool] = mapped_column(default=True)
    created_at: Mapped[datetime]


class ApiKey(Base):
    """An institution's HIS key: only ``key_id`` (lookup) and SHA-256 of the whole key are kept."""

    __tablename__ = "api_keys"

    id: Mapped[int] = mapped_column(primary_key=True)
    institution_id: Mapped[int] = mapped_column(sa.ForeignKey("institutions.id"))
    key_id: Mapped[str] = mapped_column(sa.String(32), unique=True)
    key_hash: Mapped[str] = mapped_column(sa.String(64))
    created_at: Mapped[datetime]
    revoked_at: Mapped[datetime | None] = mapped_column(default=None)


class UserToken(Base):
    """A login token: random, kept as SHA-256 only, with an expiry."""

    __tablename__ = "user_tokens"

    id: Mapped[int] = mapped_column(primary_key=True)
    user_id: Mapped[int] = mapped_column(sa.ForeignKey("users.id"))
    token_hash: Mapped[str] = mapped_column(sa.String(64), unique=True)
    created_at: Mapped[datetime]
    expires_at: Mapped[datetime] = mapped_column(index=True)


# --------------------------------------------------------------------------- prescriptions and reviews
class Prescription(Base):
    """A prescription exactly as received. Immutable: no update path exists or is allowed.

    One row per *version*: the HIS may resend its prescription number with edited content
    (the doctor changed a drug), and that is a new row with the same ``identifier`` and a
    different ``content_hash`` (see ``audit_engine.intake.content``). The unique index makes
    (institution, identifier, content) the idempotency key, so concurrent twins of one
    version insert one row.
    """

    __tablename__ = "prescriptions"
    __table_args__ = (
        sa.Index("uq_prescription_version", "institution_id", "identifier", "content_hash", unique=True),
    )

    id: Mapped[str] = mapped_column(sa.String(32), primary_key=True, default=new_id)
    institution_id: Mapped[int] = mapped_column(sa.ForeignKey("institutions.id"))
    # The HIS's prescription identifier; None when it sent none (then no idempotency).
    identifier: Mapped[str | None] = mapped_column(sa.String(200), default=None)
    # sha256 of the clinical content; "legacy:<raw_sha256>" for rows stored before migration 0002.
    content_hash: Mapped[str] = mapped_column(sa.String(80))
    kind: Mapped[str] = mapped_column(sa.String(24))  # bundle | cds | medication_request
    raw: Mapped[str] = mapped_column(sa.Text)  # the received JSON text
    raw_sha256: Mapped[str] = mapped_column(sa.String(64))
    received_at: Mapped[datetime] = mapped_column(index=True)
    retention_class: Mapped[str] = mapped_column(sa.String(16))  # ordinary | toxic_psy2 | narcotic_psy1
    retain_until: Mapped[date]


class Review(Base):
    """One system review of one prescription, with the policy that decided its verdict."""

    __tablename__ = "reviews"
    __table_args__ = (
        sa.Index("ix_reviews_institution_created", "institution_id", "created_at"),
        _one_of("verdict", "ck_review_verdict", ("pass", "explain", "recheck", "block")),
    )

    id: Mapped[str] = mapped_column(sa.String(32), primary_key=True, default=new_id)
    prescription_id: Mapped[str] = mapped_column(sa.ForeignKey("prescriptions.id"), index=True)
    institution_id: Mapped[int] = mapped_column(sa.ForeignKey("institutions.id"))
    # The earlier review this one replaces: an earlier version of the same prescription number,
    # or the returned prescription a doctor modified. Indexed: reads look for the next version.
    previous_review_id: Mapped[str | None] = mapped_column(sa.ForeignKey("reviews.id"), index=True, default=None)
    rulebase_version: Mapped[str] = mapped_column(sa.String(128))
    verdict: Mapped[str] = mapped_column(sa.String(16))  # pass | explain | recheck | block
    # Where the review stands: system_pass, awaiting_reason, explained, pending, pharmacist_pass,
    # rejected, returned, modified, double_signed, timeout_pass, escalated, auto_return.
    outcome: Mapped[str] = mapped_column(sa.String(24))
    max_level: Mapped[int]
    unchecked: Mapped[bool]
    emergency: Mapped[bool]
    items: Mapped[list[str]] = mapped_column(JSONType)
    facts: Mapped[dict[str, Any]] = mapped_column(JSONType)
    policy: Mapped[dict[str, Any]] = mapped_column(JSONType)  # snapshot of the deciding policy
    fail_mode: Mapped[str] = mapped_column(sa.String(8))
    engine_failed: Mapped[bool] = mapped_column(default=False)
    engine_error: Mapped[str | None] = mapped_column(sa.Text, default=None)
    timings_ms: Mapped[dict[str, float]] = mapped_column(JSONType)
    created_at: Mapped[datetime]
    decided_at: Mapped[datetime | None] = mapped_column(default=None)


class FindingRow(Base):
    """One finding of one review (rows, so statistics can count rules with SQL)."""

    __tablename__ = "findings"

    id: Mapped[int] = mapped_column(primary_key=True)
    review_id: Mapped[str] = mapped_column(sa.ForeignKey("reviews.id"), index=True)
    position: Mapped[int]  # order within the review (most severe first)
    rule_id: Mapped[str] = mapped_column(sa.String(64), index=True)
    title: Mapped[str] = mapped_column(sa.String(300))
    category: Mapped[str] = mapped_column(sa.String(16))
    subtype: Mapped[str] = mapped_column(sa.String(64))
    level: Mapped[int]
    message: Mapped[str] = mapped_column(sa.Text)
    evidence: Mapped[str] = mapped_column(sa.Text)
    implicated: Mapped[list[str]] = mapped_column(JSONType)
    suggestion: Mapped[str | None] = mapped_column(sa.Text, default=None)
    source: Mapped[str | None] = mapped_column(sa.String(300), default=None)


class Feedback(Base):
    """A doctor's response to a card or finding (CDS Hooks feedback: accepted / overridden).

    A card gets one response: the unique index on ``card_id`` makes a resent feedback a no-op
    even when both copies arrive at once. Native explanations carry no card (NULL, not unique).
    """

    __tablename__ = "feedback"
    __table_args__ = (sa.Index("uq_feedback_card", "card_id", unique=True),)

    id: Mapped[int] = mapped_column(primary_key=True)
    review_id: Mapped[str] = mapped_column(sa.ForeignKey("reviews.id"), index=True)
    rule_id: Mapped[str | None] = mapped_column(sa.String(64), default=None)
    card_id: Mapped[str | None] = mapped_column(sa.String(64), default=None)
    outcome: Mapped[str] = mapped_column(sa.String(16))  # accepted | overridden
    reason: Mapped[str | None] = mapped_column(sa.Text, default=None)
    created_at: Mapped[datetime]
    outcome_at: Mapped[datetime | None] = mapped_column(default=None)  # CDS outcomeTimestamp, naive UTC


class CdsCard(Base):
    """A CDS Hooks card the service issued: feedback is accepted only for these, and only from
    the institution it was issued to. One card per finding; the id is stable across replays."""

    __tablename__ = "cds_cards"

    id: Mapped[str] = mapped_column(sa.String(36), primary_key=True)  # the card's uuid
    review_id: Mapped[str] = mapped_column(sa.ForeignKey("reviews.id"), index=True)
    institution_id: Mapped[int] = mapped_column(sa.ForeignKey("institutions.id"))
    position: Mapped[int]  # the finding's position in the review
    rule_id: Mapped[str] = mapped_column(sa.String(64))
    issued_at: Mapped[datetime]


class Task(Base):
    """The pharmacist recheck work item of one review (see ``audit_engine.queue``)."""

    __tablename__ = "tasks"
    __table_args__ = (
        sa.Index("ix_tasks_queue", "status", "institution_id"),
        sa.Index("ix_tasks_deadline", "status", "deadline_at"),
        # The state machine lives in audit_engine.queue; the database refuses any other status.
        _one_of(
            "status",
            "ck_task_status",
            ("pending", "claimed", "returned", "escalated", "approved", "rejected", "modified",
             "double_signed", "timeout_passed", "abandoned", "superseded"),
        ),
    )

    id: Mapped[str] = mapped_column(sa.String(32), primary_key=True, default=new_id)
    review_id: Mapped[str] = mapped_column(sa.ForeignKey("reviews.id"), unique=True)
    institution_id: Mapped[int] = mapped_column(sa.ForeignKey("institutions.id"))
    status: Mapped[str] = mapped_column(sa.String(16))
    emergency: Mapped[bool]
    escalated: Mapped[bool] = mapped_column(default=False)
    max_level: Mapped[int]
    created_at: Mapped[datetime]
    deadline_at: Mapped[datetime | None] = mapped_column(default=None)  # timeout fires here
    # Who holds or decided it, as the audit log names them (a username, or "institution:<code>").
    claimed_by: Mapped[str | None] = mapped_column(sa.String(200), default=None)
    claimed_at: Mapped[datetime | None] = mapped_column(default=None)
    lease_expires_at: Mapped[datetime | None] = mapped_column(default=None)
    decision: Mapped[str | None] = mapped_column(sa.String(16), default=None)  # approve | reject | return
    reason: Mapped[str | None] = mapped_column(sa.Text, default=None)
    decided_by: Mapped[str | None] = mapped_column(sa.String(200), default=None)
    decided_at: Mapped[datetime | None] = mapped_column(default=None)
    answer_due_at: Mapped[datetime | None] = mapped_column(
        default=None
    )  # doctor must answer a return by then
    doctor_answer: Mapped[str | None] = mapped_column(sa.String(16), default=None)  # modify | insist
    doctor_reason: Mapped[str | None] = mapped_column(sa.Text, default=None)
    next_review_id: Mapped[str | None] = mapped_column(sa.ForeignKey("reviews.id"), default=None)
    closed_at: Mapped[datetime | None] = mapped_column(default=None)
    # Bumped by every UPDATE (optimistic concurrency): a transition computed from a stale
    # read fails instead of overwriting a competitor's.
    version: Mapped[int] = mapped_column(default=1)

    __mapper_args__ = {"version_id_col": version}  # noqa: RUF012 (SQLAlchemy reads it as a class attribute)


# --------------------------------------------------------------------------- audit log
class AuditEntry(Base):
    """One append-only, hash-chained audit record (see ``audit_engine.audit_log``).

    A row is written with its content in the transaction that did the thing; it is
    *sealed* into the chain (``chain_seq``, ``prev_hash``, ``hash``) right away on SQLite
    and by the worker on PostgreSQL. The database refuses any change of content, any change
    of a sealed row and any delete.
    """

    __tablename__ = "audit_log"
    __table_args__ = (
        sa.Index("ix_audit_object", "object_type", "object_id"),
        sa.Index(
            "ix_audit_unsealed",
            "id",
            postgresql_where=sa.text("chain_seq IS NULL"),
            sqlite_where=sa.text("chain_seq IS NULL"),
        ),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    at: Mapped[datetime]
    actor_kind: Mapped[str] = mapped_column(sa.String(16))  # institution | user | system
    actor_id: Mapped[str | None] = mapped_column(sa.String(64), default=None)
    actor_name: Mapped[str | None] = mapped_column(sa.String(200), default=None)
    institution_id: Mapped[int | None] = mapped_column(default=None)
    action: Mapped[str] = mapped_column(sa.String(48))
    object_type: Mapped[str] = mapped_column(sa.String(24))
    object_id: Mapped[str] = mapped_column(sa.String(64))
    detail: Mapped[dict[str, Any]] = mapped_column(JSONType)
    # Position in the chain (gapless 1, 2, 3 … in sealing order) and the links; NULL until sealed.
    chain_seq: Mapped[int | None] = mapped_column(unique=True, default=None)
    prev_hash: Mapped[str | None] = mapped_column(sa.String(64), default=None)
    hash: Mapped[str | None] = mapped_column(sa.String(64), default=None)


class AuditHead(Base):
    """The single row holding the chain's tip; the sealer locks it."""

    __tablename__ = "audit_head"

    id: Mapped[int] = mapped_column(primary_key=True, autoincrement=False)  # always 1
    last_seq: Mapped[int]
    last_hash: Mapped[str] = mapped_column(sa.String(64))


class ReviewAccess(Base):
    """Who read a review, when, and how: reads are audited here, never in the review's history.

    Append-only (database triggers refuse updates and deletes). No foreign key: the record of
    who saw a prescription outlives the prescription's destruction at the end of retention.
    """

    __tablename__ = "review_access"
    __table_args__ = (sa.Index("ix_review_access_review", "review_id", "at"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    review_id: Mapped[str] = mapped_column(sa.String(32))
    institution_id: Mapped[int | None] = mapped_column(default=None)  # the review's institution
    actor_kind: Mapped[str] = mapped_column(sa.String(16))  # institution | user | system
    actor_id: Mapped[str | None] = mapped_column(sa.String(64), default=None)
    actor_name: Mapped[str | None] = mapped_column(sa.String(200), default=None)
    action: Mapped[str] = mapped_column(sa.String(24))  # read | read_raw | list | replay
    at: Mapped[datetime]


# --------------------------------------------------------------------------- webhooks
class WebhookSubscription(Base):
    __tablename__ = "webhook_subscriptions"

    id: Mapped[int] = mapped_column(primary_key=True)
    institution_id: Mapped[int] = mapped_column(sa.ForeignKey("institutions.id"), index=True)
    url: Mapped[str] = mapped_column(sa.String(1000))
    secret: Mapped[str] = mapped_column(sa.String(128))  # HMAC key; must be readable to sign
    active: Mapped[bool] = mapped_column(default=True)
    created_at: Mapped[datetime]


class WebhookAllowedHost(Base):
    """A host an institution's webhooks may call, added by an admin (migration 0004)."""

    __tablename__ = "webhook_allowed_hosts"
    __table_args__ = (sa.UniqueConstraint("institution_id", "host", name="uq_webhook_allowed_host"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    institution_id: Mapped[int] = mapped_column(sa.ForeignKey("institutions.id"), index=True)
    host: Mapped[str] = mapped_column(sa.String(253))  # lower-case DNS name or IP literal
    added_by: Mapped[str] = mapped_column(sa.String(200))
    created_at: Mapped[datetime]


class WebhookDelivery(Base):
    __tablename__ = "webhook_deliveries"
    __table_args__ = (
        sa.Index("ix_deliveries_due", "status", "next_attempt_at"),
        _one_of("status", "ck_delivery_status", ("pending", "delivered", "failed")),
    )

    id: Mapped[str] = mapped_column(sa.String(32), primary_key=True, default=new_id)
    subscription_id: Mapped[int] = mapped_column(sa.ForeignKey("webhook_subscriptions.id"))
    review_id: Mapped[str] = mapped_column(sa.ForeignKey("reviews.id"), index=True)
    event: Mapped[str] = mapped_column(sa.String(48))
    payload: Mapped[dict[str, Any]] = mapped_column(JSONType)
    status: Mapped[str] = mapped_column(sa.String(16))  # pending | delivered | failed
    attempts: Mapped[int] = mapped_column(default=0)
    next_attempt_at: Mapped[datetime]
    last_status: Mapped[int | None] = mapped_column(default=None)
    last_error: Mapped[str | None] = mapped_column(sa.Text, default=None)
    created_at: Mapped[datetime]
    delivered_at: Mapped[datetime | None] = mapped_column(default=None)


# --------------------------------------------------------------------------- rulebase versions
class RulebaseVersion(Base):
    """An uploaded rulebase (all its files); exactly one row is ``active`` at a time."""

    __tablename__ = "rulebase_versions"

    version: Mapped[str] = mapped_column(sa.String(128), primary_key=True)
    label: Mapped[str | None] = mapped_column(sa.String(200), default=None)
    files: Mapped[dict[str, str]] = mapped_column(JSONType)  # relative path -> text
    status: Mapped[str] = mapped_column(sa.String(16))  # uploaded | active | retired
    uploaded_by: Mapped[str | None] = mapped_column(sa.String(64), default=None)
    uploaded_at: Mapped[datetime]
    activated_at: Mapped[datetime | None] = mapped_column(default=None)


# --------------------------------------------------------------------------- immutability guards
class ImmutableRecordError(AuditEngineError):
    """An update of a record that is immutable by law or design (a prescription, an audit entry)."""

    def __init__(self, table: str, key: object) -> None:
        self.location = f"{table}/{key}"
        super().__init__(f"{table} rows are immutable: refused to update {self.location}")


@event.listens_for(Prescription, "before_update")
def _refuse_prescription_update(mapper: Any, connection: Any, target: Prescription) -> None:
    raise ImmutableRecordError("prescriptions", target.id)


@event.listens_for(AuditEntry, "before_update")
def _refuse_audit_update(mapper: Any, connection: Any, target: AuditEntry) -> None:
    raise ImmutableRecordError("audit_log", target.id)
