"""Database connection, schema upgrades and the unit of work.

SQLite is the embedded default (a file under ``./data/``); PostgreSQL is chosen with
``AUDIT_DATABASE_URL``. On SQLite every transaction starts with ``BEGIN IMMEDIATE``: it
takes the single write lock up front, so a transaction that reads and then writes (the
audit chain, idempotency checks, queue claims) can never fail halfway with a stale
snapshot, and ``busy_timeout`` makes competitors wait instead of erroring. Writers queue
for it in order: threads on a Python lock, processes (``serve --workers N``) on an flock of
``<database>-writer.lock`` (see ``_configure_sqlite``).
"""

from __future__ import annotations

import collections
import fcntl
import os
import threading
import time
import weakref
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy import event
from sqlalchemy.orm import Session

SQLITE_BUSY_TIMEOUT_MS = 30_000
MIGRATIONS_DIR = Path(__file__).resolve().parent / "migrations"
READ_ONLY_OPTION = "audit_read_only"
MIGRATION_LOCK_KEY = 0x41554454  # "AUDT": advisory lock held while migrating


def utcnow() -> datetime:
    """Now, as the naive UTC datetime every table stores."""
    return datetime.now(UTC).replace(tzinfo=None)


def is_postgres(bind: sa.Engine | sa.Connection | Session) -> bool:
    """True when ``bind`` talks to PostgreSQL (claims then use SKIP LOCKED)."""
    engine = bind.get_bind() if isinstance(bind, Session) else bind
    return engine.dialect.name == "postgresql"


def _prepare_sqlite_file(url: sa.URL) -> None:
    db = url.database
    if db and db != ":memory:" and not db.startswith("file:"):
        Path(db).parent.mkdir(parents=True, exist_ok=True)


def make_engine(url: str, **kw: Any) -> sa.Engine:
    """An Engine for ``url`` (the setting ``AUDIT_DATABASE_URL``): SQLite gets WAL, foreign keys, busy timeout."""
    parsed = sa.make_url(url)
    if parsed.get_backend_name() == "sqlite":
        _prepare_sqlite_file(parsed)
        kw.setdefault("connect_args", {"timeout": SQLITE_BUSY_TIMEOUT_MS / 1000, "check_same_thread": False})
        engine = sa.create_engine(parsed, **kw)
        _configure_sqlite(engine)
        return engine
    kw.setdefault("pool_size", 10)
    kw.setdefault("max_overflow", 20)
    kw.setdefault("pool_pre_ping", True)
    return sa.create_engine(parsed, **kw)


class FairLock:
    """A first-come, first-served lock: a thread that releases and at once asks again queues
    behind those already waiting (``threading.Lock`` would usually hand it straight back)."""

    def __init__(self) -> None:
        self._mutex = threading.Lock()
        self._held = False
        self._waiters: collections.deque[threading.Event] = collections.deque()

    def acquire(self, timeout: float = -1) -> bool:
        with self._mutex:
            if not self._held and not self._waiters:
                self._held = True
                return True
            turn = threading.Event()
            self._waiters.append(turn)
        if turn.wait(None if timeout < 0 else timeout):
            return True  # release() handed the lock to us
        with self._mutex:
            if turn.is_set():  # handed over just as we gave up
                return True
            self._waiters.remove(turn)
            return False

    def release(self) -> None:
        with self._mutex:
            if self._waiters:
                self._waiters.popleft().set()  # stays held: ownership passes to the next in line
            else:
                self._held = False

    def locked(self) -> bool:
        return self._held


# The in-process writer lock of each SQLite engine (exposed for tests and diagnostics).
WRITE_LOCKS: weakref.WeakKeyDictionary[sa.Engine, FairLock] = weakref.WeakKeyDictionary()


def _switch_to_wal(cur: Any) -> None:
    # Switching a brand-new file to WAL can meet another process doing the same; SQLite then
    # answers "locked" at once, without its busy handler. Try again a few times.
    for attempt in range(50):
        try:
            cur.execute("PRAGMA journal_mode=WAL")
            return
        except Exception as exc:  # sqlite3.OperationalError: database is locked
            if "locked" not in str(exc) or attempt == 49:
                raise
            time.sleep(0.02)


def _process_lock(engine: sa.Engine) -> int | None:
    """An open descriptor of ``<database>-writer.lock``, closed with the engine (None in memory)."""
    database = engine.url.database
    if database is None or database in ("", ":memory:") or database.startswith("file:"):
        return None
    fd = os.open(f"{database}-writer.lock", os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    weakref.finalize(engine, os.close, fd)
    return fd


def _configure_sqlite(engine: sa.Engine) -> None:
    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_conn: Any, _record: Any) -> None:
        # Let SQLAlchemy's "begin" hook below issue BEGIN itself (pysqlite would defer it).
        dbapi_conn.isolation_level = None
        cur = dbapi_conn.cursor()
        cur.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
        if engine.url.database not in (None, "", ":memory:"):
            _switch_to_wal(cur)
        cur.execute("PRAGMA foreign_keys=ON")
        cur.execute("PRAGMA synchronous=NORMAL")
        cur.close()

    # Writers queue for the write lock in order instead of in SQLite's busy handler, which
    # sleeps 1, 2, 5 … 100 ms between tries and turns a few concurrent writers into a p99 of
    # hundreds of milliseconds: the threads of this engine on a Python lock, then the holder
    # of that lock against every other process (and engine) on an flock of a file beside the
    # database, which the kernel hands on at once and drops if its holder dies. SQLite's own
    # lock and busy_timeout still stand behind both. Released after COMMIT/ROLLBACK.
    # The flock wait has no timeout (Linux has none without polling, and polling would
    # reopen the gaps this closes): a process that hangs, alive, inside a write transaction
    # stalls the other processes' writers, where before they failed after busy_timeout.
    # Either way the hung process holds SQLite's write lock and must be restarted.
    writer = FairLock()
    holders: set[int] = set()
    WRITE_LOCKS[engine] = writer
    across = _process_lock(engine)

    def _release(connection: Any) -> None:
        # SQLAlchemy hands over either the DBAPI connection or the pool's proxy of it.
        key = id(getattr(connection, "dbapi_connection", None) or connection)
        if key in holders:
            holders.discard(key)
            if across is not None:
                fcntl.flock(across, fcntl.LOCK_UN)
            writer.release()

    @event.listens_for(engine, "begin")
    def _on_begin(conn: sa.Connection) -> None:
        # Read-only scopes (see read_scope) start deferred, so readers never queue for the write lock.
        if conn.get_execution_options().get(READ_ONLY_OPTION, False):
            conn.exec_driver_sql("BEGIN")
            return
        dbapi_conn = conn.connection.dbapi_connection
        # A thread that already writes on another connection would wait for itself: after the
        # busy timeout it goes on without the Python lock, and SQLite decides as before.
        if writer.acquire(timeout=SQLITE_BUSY_TIMEOUT_MS / 1000):
            if across is not None:
                fcntl.flock(across, fcntl.LOCK_EX)  # blocks without the GIL until no other process writes
            holders.add(id(dbapi_conn))
        try:
            conn.exec_driver_sql("BEGIN IMMEDIATE")
        except BaseException:
            _release(dbapi_conn)
            raise

    dialect: Any = engine.dialect
    plain_commit, plain_rollback = dialect.do_commit, dialect.do_rollback

    def do_commit(dbapi_conn: Any) -> None:
        try:
            plain_commit(dbapi_conn)
        finally:
            _release(dbapi_conn)

    def do_rollback(dbapi_conn: Any) -> None:
        try:
            plain_rollback(dbapi_conn)
        finally:
            _release(dbapi_conn)

    dialect.do_commit, dialect.do_rollback = do_commit, do_rollback

    @event.listens_for(engine, "close")
    def _on_close(dbapi_conn: Any, _record: Any) -> None:  # a connection dropped mid-transaction
        _release(dbapi_conn)


def upgrade_schema(url: str | sa.Engine) -> None:
    """Run ``alembic upgrade head`` through the Alembic API (migrations live in this package)."""
    from alembic import command
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
    engine = url if isinstance(url, sa.Engine) else make_engine(url)
    try:
        with engine.begin() as conn:
            if conn.dialect.name == "postgresql":
                # Several processes may start at once (serve --workers N): one migrates, the
                # others wait here and then find the schema already at head.
                conn.execute(sa.text("SELECT pg_advisory_xact_lock(:key)"), {"key": MIGRATION_LOCK_KEY})
            cfg.attributes["connection"] = conn
            command.upgrade(cfg, "head")
    finally:
        if not isinstance(url, sa.Engine):
            engine.dispose()


@contextmanager
def session_scope(engine: sa.Engine) -> Iterator[Session]:
    """One unit of work: commit when the block ends, roll back everything if it raises."""
    session = Session(engine, expire_on_commit=False)
    try:
        yield session
        session.commit()
    except BaseException:
        session.rollback()
        raise
    finally:
        session.close()


@contextmanager
def read_scope(engine: sa.Engine) -> Iterator[Session]:
    """A unit of work that only reads (authentication, polling): on SQLite it begins
    deferred and so never waits for, or holds, the write lock. Nothing it changes is kept."""
    session = Session(engine.execution_options(**{READ_ONLY_OPTION: True}), expire_on_commit=False)
    try:
        yield session
    finally:
        session.rollback()
        session.close()
