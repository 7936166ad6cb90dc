"""The append-only audit log: who did what, when, to which record, hash-chained.

Sealed entry number ``n`` (``chain_seq``) stores ``hash = sha256(prev_hash + canonical JSON
of the entry)``, where ``prev_hash`` is entry ``n-1``'s hash (64 zeros for the first). The
sequence is gapless, so a deleted row shows as a gap, an edited row as a hash mismatch and
a truncated tail as a head mismatch; database triggers refuse edits and deletes outright.

Writing and sealing are separate steps. The transaction that does something writes its
entry (content only) without waiting for anyone; ``seal`` then chains unsealed entries in
the order they became visible, under the lock of the single ``audit_head`` row. On SQLite
(one writer at a time anyway) every append seals at once. On PostgreSQL the worker seals
every pass, so concurrent reviews never queue behind one lock held through their commits;
an entry is tamper-evident from its sealing (normally within a second), and
tamper-proof against everything short of dropping the triggers from the moment it is written.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any, cast

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
    """Result of :func:`verify_chain`: ``ok``, how many entries were checked, and the first bad
    one: its chain position ``bad_seq``, its row ``bad_id`` (None when the row is missing from
    the end) and what is wrong."""

    ok: bool
    checked: int
    bad_id: int | None = None
    problem: str | None = None
    unsealed: int = 0
    bad_seq: int | None = None

    @property
    def location(self) -> str | None:
        return f"audit_log/{self.bad_id}" if self.bad_id is not None else None


@dataclass(frozen=True, slots=True)
class ChainCursor:
    """A verified position in the chain: entry ``seq`` and its hash (seq 0: before the first)."""

    seq: int
    hash: str


GENESIS = ChainCursor(0, GENESIS_HASH)


@dataclass(frozen=True, slots=True)
class Segment:
    """What :func:`verify_segment` found: the cursor it reached, how many entries it checked,
    and the first bad entry (``bad_seq``, ``bad_id``, ``problem``) if any."""

    cursor: ChainCursor
    checked: int
    bad_seq: int | None = None
    bad_id: int | None = None
    problem: str | None = None


def canonical(entry: dict[str, Any]) -> str:
    """The canonical JSON of an entry: sorted keys, no spaces, UTF-8 text kept as is."""
    return json.dumps(entry, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str)


def _content(row: Any) -> dict[str, Any]:
    """What is hashed: every content column, exactly as the database returns it."""
    return {
        "id": row.id,
        "seq": row.chain_seq,
        "at": row.at.isoformat(timespec="microseconds"),
        "actor_kind": row.actor_kind,
        "actor_id": row.actor_id,
        "actor_name": row.actor_name,
        "institution_id": row.institution_id,
        "action": row.action,
        "object_type": row.object_type,
        "object_id": row.object_id,
        "detail": row.detail,
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
_ENTRY_TABLE: sa.Table = AuditEntry.__table__  # type: ignore[assignment]
_HEAD_TABLE: sa.Table = AuditHead.__table__  # type: ignore[assignment]
_INSERT_ENTRY = _ENTRY_TABLE.insert()
_SEAL_ROW = (
    sa.update(_ENTRY_TABLE)
    .where(_ENTRY_TABLE.c.id == sa.bindparam("row_id"), _ENTRY_TABLE.c.chain_seq.is_(None))
    .values(chain_seq=sa.bindparam("seq"), prev_hash=sa.bindparam("prev"), hash=sa.bindparam("digest"))
)
_LOCK_HEAD = (
    sa.select(_HEAD_TABLE.c.last_seq, _HEAD_TABLE.c.last_hash)
    .where(_HEAD_TABLE.c.id == 1)
    .with_for_update(skip_locked=True)
)
_UNSEALED = (
    sa.select(_ENTRY_TABLE)
    .where(_ENTRY_TABLE.c.chain_seq.is_(None))
    .order_by(_ENTRY_TABLE.c.id)
    .limit(sa.bindparam("limit"))
)
_MOVE_HEAD = (
    sa.update(_HEAD_TABLE)
    .where(_HEAD_TABLE.c.id == 1)
    .values(last_seq=sa.bindparam("new_seq"), last_hash=sa.bindparam("new_hash"))
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
) -> None:
    """Write one entry inside the caller's transaction (committed with it, or not at all)."""
    append_many(s, [NewEntry(actor, action, object_type, object_id, institution_id, detail, at)])


def append_many(s: Session, entries: list[NewEntry]) -> None:
    """Write entries in order with one INSERT; on SQLite they are sealed at once."""
    if not entries:
        return
    rows = [
        {
            "at": e.at or utcnow(),
            "actor_kind": e.actor.kind,
            "actor_id": e.actor.id,
            "actor_name": e.actor.name,
            "institution_id": e.institution_id if e.institution_id is not None else e.actor.institution_id,
            "action": e.action,
            "object_type": e.object_type,
            "object_id": e.object_id,
            # normalised through JSON: what is hashed later is exactly what the database returns
            "detail": json.loads(canonical(e.detail or {})),
        }
        for e in entries
    ]
    s.execute(_INSERT_ENTRY, rows)
    if s.get_bind().dialect.name == "sqlite":
        seal(s)


def seal(s: Session, *, limit: int = 5000) -> int:
    """Chain every committed-and-visible unsealed entry, oldest id first; returns how many.

    Only one sealer works at a time: on PostgreSQL a second one finds the head row locked
    and returns 0 at once (SKIP LOCKED) instead of waiting.
    """
    head = s.execute(_LOCK_HEAD).first()
    if head is None:
        return 0
    pending = s.execute(_UNSEALED, {"limit": limit}).all()
    if not pending:
        return 0
    seq, last = int(head.last_seq), str(head.last_hash)
    updates: list[dict[str, Any]] = []
    for row in pending:
        seq += 1
        content = _content(row) | {"seq": seq}
        digest = entry_hash(last, content)
        updates.append({"row_id": row.id, "seq": seq, "prev": last, "digest": digest})
        last = digest
    result = cast("sa.CursorResult[Any]", s.execute(_SEAL_ROW, updates))
    if result.rowcount not in (-1, len(updates)):  # someone sealed concurrently: impossible under the head lock
        raise RuntimeError("audit chain: concurrent sealing detected")
    s.execute(_MOVE_HEAD, {"new_seq": seq, "new_hash": last})
    return len(updates)


def verify_segment(s: Session, after: ChainCursor, *, limit: int, upto: int | None = None) -> Segment:
    """Check at most ``limit`` sealed entries following ``after`` (and not past ``upto``): each
    must have the next sequence number, link to the previous hash, and hash to its content."""
    table = _ENTRY_TABLE
    query = sa.select(table).where(table.c.chain_seq > after.seq)
    if upto is not None:
        query = query.where(table.c.chain_seq <= upto)
    # Core rows, not ORM objects: nothing lands in the caller's identity map.
    rows = s.execute(query.order_by(table.c.chain_seq).limit(limit)).all()
    cursor, checked = after, 0
    for row in rows:
        expected = cursor.seq + 1
        if row.chain_seq != expected:
            return Segment(cursor, checked, expected, row.id, f"链序号 {expected} 缺失（记录被删除），其后为 audit_log/{row.id}")
        if row.prev_hash != cursor.hash:
            return Segment(cursor, checked, expected, row.id, f"audit_log/{row.id}: prev_hash 与上一条不符")
        if entry_hash(cursor.hash, _content(row)) != row.hash:
            return Segment(cursor, checked, expected, row.id, f"audit_log/{row.id}: 内容与哈希不符（记录被篡改）")
        cursor, checked = ChainCursor(expected, str(row.hash)), checked + 1
    return Segment(cursor, checked)


def chain_head(s: Session) -> ChainCursor:
    """Where the sealer says the chain ends (``audit_head``)."""
    head = s.execute(sa.select(_HEAD_TABLE.c.last_seq, _HEAD_TABLE.c.last_hash).where(_HEAD_TABLE.c.id == 1)).one()
    return ChainCursor(int(head.last_seq), str(head.last_hash))


def head_problem(head: ChainCursor, reached: ChainCursor) -> str | None:
    """Why the chain does not end where the head says, or None. ``reached`` is the last
    entry verified up to the head's position (the walk ran out of rows, or reached it)."""
    if reached.seq < head.seq:
        return f"audit_log: 链尾被截断（头指向第 {head.seq} 条，实存 {reached.seq} 条）"
    if reached.seq == head.seq and reached.hash != head.hash:
        return f"audit_log: 链头哈希与第 {head.seq} 条不符"
    return None


def verify_chain(s: Session, *, batch: int = 2000) -> ChainReport:
    """Walk the sealed chain; report the first row that was edited, removed or reordered.

    Entries not yet sealed are counted (``unsealed``), not judged: they become verifiable
    when the worker seals them. The head is read first, so entries sealed during the walk
    cannot look like a truncation.
    """
    head = chain_head(s)
    cursor, checked = GENESIS, 0
    for upto in (head.seq, None):  # up to the head, then what was sealed since it was read
        while True:
            seg = verify_segment(s, cursor, limit=batch, upto=upto)
            if seg.problem is not None:
                return ChainReport(False, checked + seg.checked, seg.bad_id, seg.problem, bad_seq=seg.bad_seq)
            checked, cursor = checked + seg.checked, seg.cursor
            if seg.checked < batch:
                break
        if upto is not None and (problem := head_problem(head, cursor)) is not None:
            unsealed = _unsealed(s)
            return ChainReport(False, checked, None, problem, unsealed, bad_seq=cursor.seq + 1)
    return ChainReport(True, checked, unsealed=_unsealed(s))


def _unsealed(s: Session) -> int:
    table = _ENTRY_TABLE
    return int(s.scalar(sa.select(sa.func.count()).select_from(table).where(table.c.chain_seq.is_(None))) or 0)


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
