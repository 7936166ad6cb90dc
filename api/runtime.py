"""What one service process holds: a database engine and the loaded rulebase.

The loaded rulebase is the only state that lives in process memory, and even that follows
the database: every ``rulebase_poll_seconds`` a request asks the DB which version is
active (one indexed row) and, when it changed, loads that version from its stored files and
swaps it into the engine. Reviews already running finish on the old network
(``Engine.swap`` is atomic), so replicas converge within one poll interval.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
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
        from audit_engine.store.db import make_engine

        load_engine = self.engine_factory or default_load

        self.db = make_engine(self.settings.database_url)
        from api import rulebases
        from audit_engine.review import default_rulebase_path

        configured = load_engine(self.settings.rulebase_path)
        folder = Path(self.settings.rulebase_path) if self.settings.rulebase_path else default_rulebase_path()
        active_version = rulebases.register_shipped(self.db, version=configured.version, folder=folder)
        self.engine = configured
        if active_version != configured.version:
            active = self._active_version()
            if active is not None:
                try:
                    self.engine = load_engine(active[1])
                except Exception:  # e.g. the language changed under a stored version: serve the configured one
                    log.exception("active rulebase %s does not load; serving the configured %s",
                                  active[0], configured.version)
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
        if not self._sync_lock.acquire(blocking=False):
            return  # another thread is already checking; use the current engine meanwhile
        try:
            self._last_sync = now if now is not None else time.monotonic()
            active = self._active_version()
            if active is None or self.engine is None or active[0] == self.engine.version:
                return
            version, path = active
            try:
                compiled = compile_path(Path(path))
            except Exception:  # a broken stored version must never replace a working engine
                log.exception("cannot load active rulebase %s from %s; keeping %s", version, path, self.engine.version)
                return
            self.engine.swap(compiled)
            log.info("rulebase swapped to %s", self.engine.version)
        finally:
            self._sync_lock.release()

    def _active_version(self) -> tuple[str, str] | None:
        """(version, folder) of the active stored rulebase, or None when the DB names none."""
        if self.db is None:
            return None
        from api import rulebases

        return rulebases.active_version(self.db, self.settings)



def compile_path(path: Path) -> Any:
    """Load, check and compile a rulebase folder (raises RulebaseError), exactly as Engine.from_path."""
    from audit_engine.engine import load_compiled

    return load_compiled(path)
