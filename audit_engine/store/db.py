"""Database connection, schema upgrades and the unit of work.

SQLite is the embedded default (a file under ``./data/``); PostgreSQL is chosen with
``AUDIT_DATABASE_URL``. On SQLite every transaction starts with ``BEGIN IMMEDIATE``: it
takes the single write lock up front, so a transaction that reads and then writes (the
audit chain, idempotency checks, queue claims) can never fail halfway with a stale
snapshot, and ``busy_timeout`` makes competitors wait instead of erroring. The threads of
one engine queue for it in order on a Python lock (see ``_configure_sqlite``). On SQLite the
service runs one API process; the background worker, the demo feed and administration
commands are the other writers, and SQLite's busy handler makes them take turns.
"""

from __future__ import annotations

import collections
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

    # The threads of this engine queue for the write lock in order, on a Python lock, instead of
    # in SQLite's busy handler, which sleeps 1, 2, 5 … 100 ms between tries and turns a few
    # concurrent writers into a p99 of hundreds of milliseconds. Released after COMMIT/ROLLBACK.
    # Other processes (the background worker, a CLI command) still meet SQLite's own lock and
    # busy_timeout. They once also queued on an flock of ``<database>-writer.lock`` (for
    # ``serve --workers N`` on SQLite). With one API process beside the worker it bought nothing
    # measurable, so it was dropped: 4 writer threads against a worker's 4 write transactions
    # every 0.2 s gave p50 1.4 ms and p99 16-30 ms either way; 6 HTTP clients posting reviews
    # while the worker fired about 500 timeouts gave p99 440-660 ms with it and 530-580 ms
    # without, no "database is locked" either way (a loaded shared 2-core machine). Several
    # API processes on one SQLite file are not supported any more (``api.server.cmd_serve``).
    writer = FairLock()
    holders: set[int] = set()
    WRITE_LOCKS[engine] = writer

    def _release(connection: Any) -> None:
        # SQLAlchemy hands over either the DBAPI connection or the pool's proxy of it.
        key = id(getattr(connection, "dbapi_connection", None) or connection)
        if key in holders:
            holders.discard(key)
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
