"""What one service process holds: a database engine and the loaded rulebase.

The loaded rulebase is the only state that lives in process memory, and even that follows
the database: every ``rulebase_poll_seconds`` a request asks whether the active version
changed (``audit_engine.rulebase_swap``, which loads and swaps it).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from audit_engine.settings import Settings

if TYPE_CHECKING:
    import sqlalchemy as sa

    from api.throttle import Throttle
    from audit_engine.engine import Engine

log = logging.getLogger("api.runtime")


@dataclass
class Runtime:
    """Per-process state, created in the app's lifespan and reached through ``app.state.runtime``."""

    settings: Settings
    db: sa.Engine | None = None
    engine: Engine | None = None
    ready: bool = False
    startup_error: str | None = None
    _last_sync: float = 0.0
    _sync_lock: threading.Lock = field(default_factory=threading.Lock)
    extras: dict[str, Any] = field(default_factory=dict)
    throttle: Throttle | None = None  # api/throttle.py; set by create_app
    # Tests inject a factory (path or None -> engine); production loads real rulebases.
    engine_factory: Callable[[str | None], Engine] | None = None
    _chain: Any = None  # chain_check.StatusCache, made on first use

    def chain_status(self) -> Any:
        """The audit chain's state as the background worker last recorded it (a
        ``chain_check.ChainStatus``; read from the DB at most every ``rulebase_poll_seconds``)."""
        from audit_engine.chain_check import ChainStatus, StatusCache

        if self.db is None:
            return ChainStatus("unchecked")
        if self._chain is None:
            self._chain = StatusCache(self.settings.rulebase_poll_seconds)
        return self._chain.get(self.db)

    def start(self) -> None:
        """Open the database and load the active rulebase (the shipped one if none is active)."""
        from audit_engine.review import load_engine as default_load
        from audit_engine.rulebase_swap import start_serving
        from audit_engine.store.db import make_engine

        self.db = make_engine(self.settings.database_url)
        self.engine = start_serving(self.db, self.settings, self.engine_factory or default_load)
        self._last_sync = time.monotonic()
        self.ready = True
        log.info("rulebase %s loaded", self.engine.version)

    @property
    def is_sqlite(self) -> bool:
        return self.db is not None and self.db.dialect.name == "sqlite"

    def stop(self) -> None:
        if self.db is not None:
            self.db.dispose()
        self.ready = False

    def review_engine(self) -> Engine:
        """The engine to review with, after a cheap check that it is still the active version."""
        if self.engine is None:
            raise RuntimeError("service not started")
        now = time.monotonic()
        if now - self._last_sync >= self.settings.rulebase_poll_seconds:
            self.sync_rulebase(now)
        return self.engine

    def sync_rulebase(self, now: float | None = None) -> None:
        """Swap in the version the database says is active, if it differs from ours."""
        from audit_engine.rulebase_swap import follow_active

        if not self._sync_lock.acquire(blocking=False):
            return  # another thread is already checking; use the current engine meanwhile
        try:
            self._last_sync = now if now is not None else time.monotonic()
            if self.db is not None and self.engine is not None:
                follow_active(self.db, self.settings, self.engine)
        finally:
            self._sync_lock.release()
