"""Fresh databases for API and service tests: a SQLite file, or a throwaway PostgreSQL schema.

The PostgreSQL side is the store's own test helper (``tests/store_support.py``), so every
test folder uses one rule: unreachable PostgreSQL fails under CI=true and skips elsewhere.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import store_support as testing


def fresh_database(kind: str, tmp_path: Path) -> Iterator[str]:
    """A brand-new empty database: a SQLite file, or a throwaway PostgreSQL schema."""
    if kind == "sqlite":
        yield f"sqlite:///{tmp_path / 'audit.sqlite'}"
        return
    with testing.required_postgres() as url:
        yield url
