"""Verifying the audit chain: the ``audit verify`` command, the worker's periodic check, and
the status ``/health`` shows.

* ``audit-engine audit verify`` walks the whole chain (``audit_log.verify_chain``) and exits
  0 with the count, or 1 naming the first bad entry's sequence number and what is wrong.
* The background worker runs a :class:`ChainMonitor` every ``AUDIT_CHAIN_CHECK_SECONDS``.
  Each check verifies the *tail*, the entries sealed since the last check (from the
  remembered cursor, never from the start), and re-verifies one more slice of the older
  entries (the *sweep*, which starts over from the first entry when it reaches the tail), so an
  entry edited after it was verified is found too, within a bounded number of checks. At most
  ``batch`` entries of each per check: a million-entry chain never stalls the worker.
* When the result changes (first result after start, intact → broken, broken → intact) the
  worker logs it (an error for a break) and appends an ``audit.chain_broken`` /
  ``audit.chain_intact`` entry about the object ``audit_chain/chain``. API processes read the
  latest of those (an indexed lookup, cached) for ``/health``: the worker runs in another
  process, and several replicas share one database.
"""

from __future__ import annotations

import logging
import sys
import time
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

import sqlalchemy as sa
from sqlalchemy.orm import Session

from audit_engine import audit_log
from audit_engine.audit_log import GENESIS
from audit_engine.store.db import session_scope, utcnow
from audit_engine.store.models import AuditEntry

log = logging.getLogger("audit_engine.chain_check")

OBJECT_TYPE = "audit_chain"
OBJECT_ID = "chain"
BROKEN = "audit.chain_broken"
INTACT = "audit.chain_intact"

State = Literal["unchecked", "intact", "broken"]


@dataclass(frozen=True, slots=True)
class ChainStatus:
    """The chain as last checked: ``state``, how far it is verified, the first bad entry."""

    state: State
    verified_seq: int = 0
    bad_seq: int | None = None
    bad_id: int | None = None
    problem: str | None = None
    checked_at: datetime | None = None

    def json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"status": self.state, "verified_seq": self.verified_seq}
        if self.state == "broken":
            out |= {"first_bad_seq": self.bad_seq, "problem": self.problem}
        if self.checked_at is not None:
            out["checked_at"] = self.checked_at.isoformat(timespec="seconds") + ("Z" if self.checked_at.tzinfo is None else "")
        return out


class ChainMonitor:
    """Incremental verification, state kept between checks (one per worker process)."""

    def __init__(self, *, batch: int = 5000) -> None:
        self.batch = batch
        self.tail = GENESIS  # every entry up to here verified, in order, from the first
        self.sweep = GENESIS  # the re-verification pass over entries already verified
        self.caught_up = False  # the tail reached the head once: the first full pass is done
        self.status = ChainStatus("unchecked")

    def check(self, s: Session, *, now: datetime | None = None) -> ChainStatus:
        """One check: the tail up to the head, then one slice of the sweep."""
        at = now or utcnow()
        head = audit_log.chain_head(s)
        seg = audit_log.verify_segment(s, self.tail, limit=self.batch, upto=head.seq)
        if seg.problem is not None:
            return self._found(seg.bad_seq, seg.bad_id, seg.problem, at)
        self.tail = seg.cursor
        if seg.checked < self.batch:  # nothing more up to the head: it must end where the head says
            problem = audit_log.head_problem(head, self.tail)
            if problem is not None:
                return self._found(self.tail.seq + 1, None, problem, at)
            self.caught_up = True
        if self.caught_up and self.tail.seq > 0:
            sweep = audit_log.verify_segment(s, self.sweep, limit=self.batch, upto=self.tail.seq)
            if sweep.problem is not None:
                return self._found(sweep.bad_seq, sweep.bad_id, sweep.problem, at)
            # Back to the first entry once the sweep meets the tail.
            self.sweep = GENESIS if sweep.cursor.seq >= self.tail.seq else sweep.cursor
        if not self.caught_up:
            return self.status  # the first pass over a long chain continues next time
        self.status = ChainStatus("intact", self.tail.seq, checked_at=at)
        return self.status

    def _found(self, bad_seq: int | None, bad_id: int | None, problem: str, at: datetime) -> ChainStatus:
        # The cursors stay before the break: every later check finds it again, or finds it
        # repaired (a restored backup) and moves on.
        self.status = ChainStatus("broken", self.tail.seq, bad_seq, bad_id, problem, at)
        return self.status


def run_check(engine: sa.Engine, monitor: ChainMonitor, *, now: datetime | None = None) -> ChainStatus:
    """One check in its own transaction, recording a change of state (the worker's step)."""
    with session_scope(engine) as s:
        before = monitor.status
        after = monitor.check(s, now=now)
        record_change(s, before, after)
    return after


def record_change(s: Session, before: ChainStatus, after: ChainStatus) -> bool:
    """Log and append an audit entry when the state changed; True when it did."""
    if after.state == before.state or after.state == "unchecked":
        return False
    if after.state == "broken":
        log.error("audit chain broken at seq %s (audit_log/%s): %s", after.bad_seq, after.bad_id, after.problem)
        detail = {"first_bad_seq": after.bad_seq, "bad_id": after.bad_id, "problem": after.problem,
                  "verified_seq": after.verified_seq}
        audit_log.append(s, actor=audit_log.SYSTEM, action=BROKEN, object_type=OBJECT_TYPE, object_id=OBJECT_ID,
                         detail=detail)
    else:
        log.info("audit chain intact: %s entries verified", after.verified_seq)
        audit_log.append(s, actor=audit_log.SYSTEM, action=INTACT, object_type=OBJECT_TYPE, object_id=OBJECT_ID,
                         detail={"verified_seq": after.verified_seq})
    return True


def latest_status(s: Session) -> ChainStatus:
    """The last result a worker recorded (``unchecked`` when none has yet)."""
    row = s.execute(
        sa.select(AuditEntry.action, AuditEntry.detail, AuditEntry.at)
        .where(AuditEntry.object_type == OBJECT_TYPE, AuditEntry.object_id == OBJECT_ID)
        .order_by(AuditEntry.id.desc())
        .limit(1)
    ).first()
    if row is None:
        return ChainStatus("unchecked")
    detail = dict(row.detail or {})
    if row.action == BROKEN:
        return ChainStatus("broken", int(detail.get("verified_seq") or 0), detail.get("first_bad_seq"),
                           detail.get("bad_id"), detail.get("problem"), row.at)
    return ChainStatus("intact", int(detail.get("verified_seq") or 0), checked_at=row.at)


class StatusCache:
    """``latest_status`` read at most every ``ttl_s`` seconds (what ``/health`` calls)."""

    def __init__(self, ttl_s: float) -> None:
        self.ttl_s = ttl_s
        self._at = float("-inf")
        self._status = ChainStatus("unchecked")

    def get(self, engine: sa.Engine) -> ChainStatus:
        now = time.monotonic()
        if now - self._at >= self.ttl_s:
            self._at = now
            before = self._status
            try:
                with Session(engine) as s:
                    self._status = latest_status(s)
            except sa.exc.SQLAlchemyError as exc:  # a database hiccup: keep the last known state
                log.warning("cannot read the audit chain status: %s", exc.__class__.__name__)
                return before
            if self._status.state == "broken" and before.state != "broken":
                log.error("audit chain broken at seq %s: %s", self._status.bad_seq, self._status.problem)
        return self._status


def cmd_verify(url: str) -> int:
    """``audit-engine audit verify``: 0 and the count when intact; 1 naming the first bad entry."""
    from audit_engine.store.db import make_engine

    engine = make_engine(url)
    try:
        with Session(engine) as s:
            report = audit_log.verify_chain(s)
    except sa.exc.SQLAlchemyError as exc:
        print(f"无法读取审计日志：{exc.__class__.__name__}: {exc}", file=sys.stderr)
        return 2
    finally:
        engine.dispose()
    pending = f"（另有 {report.unsealed} 条待封存）" if report.unsealed else ""
    if report.ok:
        print(f"审计链完整：已核验 {report.checked} 条记录{pending}")
        return 0
    where = f"链序号 {report.bad_seq}" + (f"（audit_log/{report.bad_id}）" if report.bad_id is not None else "")
    print(f"审计链损坏：第一处问题在{where}：{report.problem}；此前 {report.checked} 条完好{pending}")
    return 1
