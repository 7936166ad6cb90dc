"""Database fixtures: every store and queue test runs on SQLite and on PostgreSQL (a fresh schema per test)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import sqlalchemy as sa
import store_support as testing

from audit_engine.settings import get_settings
from audit_engine.store.db import make_engine, upgrade_schema


@pytest.fixture(autouse=True)
def fresh_settings() -> Iterator[None]:
    """Settings are cached per process; a test that sets AUDIT_* variables sees them, and leaves
    no settings behind for the next test."""
    get_settings.cache_clear()
    yield
    get_settings.cache_clear()


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def db_url(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    if request.param == "sqlite":
        with testing.temporary_sqlite(str(tmp_path_factory.mktemp("db"))) as url:
            yield url
        return
    with testing.required_postgres() as url:
        yield url


@pytest.fixture
def engine(db_url: str) -> Iterator[sa.Engine]:
    upgrade_schema(db_url)
    eng = make_engine(db_url)
    yield eng
    eng.dispose()


@pytest.fixture
def world(engine: sa.Engine) -> testing.World:
    return testing.build_world(engine)


@pytest.fixture
def pipeline() -> testing.FakePipeline:
    return testing.FakePipeline()
