"""Fixtures for service tests (helpers live in svcutil.py)."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "api"))

from dbutil import fresh_database
from svcutil import Deployment, deploy


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def deployment(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Deployment]:
    for url in fresh_database(request.param, tmp_path):
        yield deploy(url, tmp_path)


@pytest.fixture
def pg_deployment(tmp_path: Path) -> Iterator[Deployment]:
    for url in fresh_database("postgresql", tmp_path):
        yield deploy(url, tmp_path)
