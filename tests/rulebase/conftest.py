"""Shared fixtures for the seed-rulebase tests: the shipped rulebase, its engine, the FHIR fixtures."""

from __future__ import annotations

import json
from datetime import date
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]
RULEBASE = ROOT / "rulebase"
CLEAN = ROOT / "fixtures" / "fhir" / "clean"
FLAGGED = ROOT / "fixtures" / "fhir" / "flagged"
# The date every fixture was written (MedicationRequest.authoredOn); ages are computed at it.
FIXTURE_DAY = date(2026, 11, 23)


def clean_paths() -> list[Path]:
    return sorted(CLEAN.glob("*.json"))


def flagged_paths() -> list[Path]:
    return sorted(p for p in FLAGGED.glob("*.json") if not p.name.endswith(".expect.json"))


def read_json(path: Path) -> Any:
    return json.loads(path.read_text(encoding="utf-8"))


@pytest.fixture(scope="session")
def rulebase() -> Any:
    from audit_engine.lang.loader import load_rulebase

    return load_rulebase(RULEBASE)


@pytest.fixture(scope="session")
def engine() -> Any:
    from audit_engine.review import load_engine

    return load_engine(RULEBASE)
