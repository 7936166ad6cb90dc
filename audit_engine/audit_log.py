"""The append-only audit log: who did what, when, to which record, hash-chained.

Entry ``n`` stores ``hash = sha256(prev_hash + canonical JSON of the entry)`` where
``prev_hash`` is entry ``n-1``'s hash (64 zeros for the first). Ids are gapless (1, 2, 3 …),
so a deleted row shows as a gap, an edited row as a hash mismatch, and a truncated tail as
a head mismatch. Appends lock the single ``audit_head`` row (``FOR UPDATE`` on
PostgreSQL; SQLite write transactions are already serial), so concurrent writers can never
fork the chain. Callers append late in their transaction to hold that lock briefly.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa
from sqlalchemy.orm import Session

from audit_engine.store.db import utcnow
from audit_engine.store.models import AuditEntry, AuditHead

if TYPE_CHECKING:
    from audit_engine.auth import Principal

GENESIS_HASH = "0" * 64


@dataclass(frozen=True, slots=True)
class Actor:
    """Who acted: a principal, or the system itself (worker, timeouts)."""

    kind: str  # institution | user | system
    id: str | None
    name: str | None
    institution_id: int | None = None

    @classmethod
    def of(cls, principal: Principal) -> Actor:
        return cls(principal.kind, str(principal.id), principal.actor, principal.institution_id)


SYSTEM = Actor("system", None, "system")


@dataclass(frozen=True, slots=True)
class HistoryEntry:
    """One audit entry as the API shows it in a review's history."""

    id: int
    at: datetime
    actor: str | None
    action: str
    object_type: str
    object_id: str
    detail: dict[str, Any]


@dataclass(frozen=True, slots=True)
class ChainReport:
    """Result of :func:`verify_chain`: ``ok``, how many entries were checked, and the first bad one."""

    ok: bool
    checked: int
    bad_id: int | None = None
    problem: str | None = None

    @property
    def location(self) -> str | None:
        return f"audit_log/{self.bad_id}" if self.bad_id is not None else None


def canonical(entry: dict[str, Any]) -> str:
    """The canonical JSON of an entry: sorted keys, no spaces, UTF-8 text kept as is."""
    return json.dumps(entry, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str)


def _content(
    *,
    id: int,
    at: datetime,
    actor_kind: str,
    actor_id: str | None,
    actor_name: str | None,
    institution_id: int | None,
    action: str,
    object_type: str,
    object_id: str,
    detail: dict[str, Any],
) -> dict[str, Any]:
    return {
        "id": id,
        "at": at.isoformat(timespec="microseconds"),
        "actor_kind": actor_kind,
        "actor_id": actor_id,
        "actor_name": actor_name,
        "institution_id": institution_id,
        "action": action,
        "object_type": object_type,
        "object_id": object_id,
        "detail": detail,
    }


def entry_hash(prev_hash: str, content: dict[str, Any]) -> str:
    return hashlib.sha256((prev_hash + canonical(content)).encode()).hexdigest()


@dataclass(frozen=True, slots=True)
class NewEntry:
    """One entry to append (see :func:`append_many`)."""

    actor: Actor
    action: str
    object_type: str
    object_id: str
    institution_id: int | None = None
    detail: dict[str, Any] | None = None
    at: datetime | None = None


# Built once: appends run on every write of the service.
_LOCK_HEAD = sa.select(AuditHead.last_id, AuditHead.last_hash).where(AuditHead.id == 1).with_for_update()
_ENTRY_TABLE: sa.Table = AuditEntry.__table__  # type: ignore[assignment]
_HEAD_TABLE: sa.Table = AuditHead.__table__  # type: ignore[assignment]
_INSERT_ENTRY = _ENTRY_TABLE.insert()
_MOVE_HEAD = (
    sa.update(_HEAD_TABLE)
    .where(_HEAD_TABLE.c.id == 1)
    .values(last_id=sa.bindparam("new_id"), last_hash=sa.bindparam("new_hash"))
)


def append(
    s: Session,
    *,
    actor: Actor,
    action: str,
    object_type: str,
    object_id: str,
    institution_id: int | None = None,
    detail: dict[str, Any] | None = None,
    at: datetime | None = None,
) -> int:
    """Append one entry to the chain inside the caller's transaction; returns its id."""
    return append_many(s, [NewEntry(actor, action, object_type, object_id, institution_id, detail, at)])[0]


def append_many(s: Session, entries: list[NewEntry]) -> list[int]:
    """Append entries in order with one lock of the head and one INSERT; returns their ids."""
    if not entries:
        return []
    head = s.execute(_LOCK_HEAD).one()
    last_id, last_hash = int(head.last_id), str(head.last_hash)
    rows: list[dict[str, Any]] = []
    for e in entries:
        when = e.at or utcnow()
        content = _content(
            id=last_id + 1,
            at=when,
            actor_kind=e.actor.kind,
            actor_id=e.actor.id,
            actor_name=e.actor.name,
            institution_id=e.institution_id if e.institution_id is not None else e.actor.institution_id,
            action=e.action,
            object_type=e.object_type,
            object_id=e.object_id,
            # normalised through JSON so that what is hashed is exactly what the database returns
            detail=json.loads(canonical(e.detail or {})),
        )
        digest = entry_hash(last_hash, content)
        rows.append(
            {
                "id": content["id"],
                "at": when,
                "actor_kind": e.actor.kind,
                "actor_id": e.actor.id,
                "actor_name": e.actor.name,
                "institution_id": content["institution_id"],
                "action": e.action,
                "object_type": e.object_type,
                "object_id": e.object_id,
                "detail": content["detail"],
                "prev_hash": last_hash,
                "hash": digest,
            }
        )
        last_id, last_hash = content["id"], digest
    s.execute(_INSERT_ENTRY, rows)
    s.execute(_MOVE_HEAD, {"new_id": last_id, "new_hash": last_hash})
    return [r["id"] for r in rows]


def verify_chain(s: Session, *, batch: int = 2000) -> ChainReport:
    """Walk the whole chain; report the first row that was edited, removed or reordered."""
    prev_hash, expected_id, checked = GENESIS_HASH, 1, 0
    last_seen = 0
    while True:
        # Core rows, not ORM objects: nothing lands in the caller's identity map.
        table = AuditEntry.__table__
        rows = s.execute(
            sa.select(table).where(table.c.id > last_seen).order_by(table.c.id).limit(batch)
        ).all()
        if not rows:
            break
        for row in rows:
            if row.id != expected_id:
                return ChainReport(
                    False, checked, expected_id, f"audit_log/{expected_id}: 记录缺失（下一条为 {row.id}）"
                )
            if row.prev_hash != prev_hash:
                return ChainReport(False, checked, row.id, f"audit_log/{row.id}: prev_hash 与上一条不符")
            content = _content(
                id=row.id,
                at=row.at,
                actor_kind=row.actor_kind,
                actor_id=row.actor_id,
                actor_name=row.actor_name,
                institution_id=row.institution_id,
                action=row.action,
                object_type=row.object_type,
                object_id=row.object_id,
                detail=row.detail,
            )
            if entry_hash(prev_hash, content) != row.hash:
                return ChainReport(
                    False, checked, row.id, f"audit_log/{row.id}: 内容与哈希不符（记录被篡改）"
                )
            prev_hash, expected_id, checked = row.hash, row.id + 1, checked + 1
        last_seen = rows[-1].id
    head = s.execute(sa.select(AuditHead.last_id, AuditHead.last_hash).where(AuditHead.id == 1)).one()
    if head.last_id != checked or head.last_hash != prev_hash:
        return ChainReport(
            False, checked, checked + 1, f"audit_log/{checked + 1}: 链尾被截断（头指向 {head.last_id}）"
        )
    return ChainReport(True, checked)


def history(s: Session, *, object_ids: Iterable[str]) -> list[HistoryEntry]:
    """Every entry about the given objects, oldest first."""
    ids = [i for i in object_ids if i]
    if not ids:
        return []
    rows = s.scalars(sa.select(AuditEntry).where(AuditEntry.object_id.in_(ids)).order_by(AuditEntry.id)).all()
    return [
        HistoryEntry(r.id, r.at, r.actor_name, r.action, r.object_type, r.object_id, dict(r.detail))
        for r in rows
    ]
