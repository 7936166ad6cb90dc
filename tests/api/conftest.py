"""Fixtures for the HTTP API tests (helpers live in apiworld.py)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from apiworld import SAMPLE_RULEBASE, World, build_world
from dbutil import fresh_database


@pytest.fixture
def world(tmp_path: Path) -> Iterator[World]:
    for url in fresh_database("sqlite", tmp_path):
        yield from build_world(url, tmp_path)


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def any_world(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[World]:
    for url in fresh_database(request.param, tmp_path):
        yield from build_world(url, tmp_path)


@pytest.fixture
def rules_world(tmp_path: Path) -> Iterator[World]:
    """A world whose engine is the real rules network, compiled from the sample rulebase."""
    for url in fresh_database("sqlite", tmp_path):
        yield from build_world(url, tmp_path, real_engine=True, rulebase_path=str(SAMPLE_RULEBASE))
