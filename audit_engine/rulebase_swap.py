"""Hot swap: the engine a process serves follows the version the database says is active.

At start the configured (shipped) rulebase is registered (``rulebase_lifecycle.register_shipped``)
and, when an administrator activated another version, that one is loaded instead. Later, each
process asks the database now and then which version is active (one indexed row) and, when it
changed, loads that version from its stored files and swaps it into the engine. Reviews already
running finish on the old network (``Engine.swap`` is atomic), so replicas converge within one
poll interval. When to ask is the caller's business (``api/runtime.py``); what to do is here.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from audit_engine import rulebase_lifecycle

if TYPE_CHECKING:
    import sqlalchemy as sa

    from audit_engine.engine import Engine

log = logging.getLogger("audit_engine.rulebase_swap")


class SwapSettings(Protocol):
    """What the hot swap needs of the service settings."""

    @property
    def rulebase_path(self) -> str | None: ...

    @property
    def rulebase_store_dir(self) -> str: ...


def start_serving(db: sa.Engine, settings: SwapSettings, load_engine: Callable[[str | None], Engine]) -> Engine:
    """The engine to serve at start: the configured rulebase, registered, unless the database
    names another active version that loads (a broken stored version never replaces it)."""
    from audit_engine.review import default_rulebase_path

    configured = load_engine(settings.rulebase_path)
    folder = Path(settings.rulebase_path) if settings.rulebase_path else default_rulebase_path()
    active_version = rulebase_lifecycle.register_shipped(db, version=configured.version, folder=folder)
    if active_version == configured.version:
        return configured
    active = rulebase_lifecycle.active_version(db, settings)
    if active is None:
        return configured
    try:
        return load_engine(active[1])
    except Exception:  # e.g. the language changed under a stored version: serve the configured one
        log.exception("active rulebase %s does not load; serving the configured %s", active[0], configured.version)
        return configured


def follow_active(db: sa.Engine, settings: SwapSettings, engine: Engine) -> bool:
    """Swap the version the database says is active into ``engine`` if it differs; True when swapped."""
    active = rulebase_lifecycle.active_version(db, settings)
    if active is None or active[0] == engine.version:
        return False
    version, path = active
    try:
        compiled = compile_path(Path(path))
    except Exception:  # a broken stored version must never replace a working engine
        log.exception("cannot load active rulebase %s from %s; keeping %s", version, path, engine.version)
        return False
    engine.swap(compiled)
    log.info("rulebase swapped to %s", engine.version)
    return True


def compile_path(path: Path) -> Any:
    """Load, check and compile a rulebase folder (raises RulebaseError), exactly as Engine.from_path."""
    from audit_engine.engine import load_compiled

    return load_compiled(path)
