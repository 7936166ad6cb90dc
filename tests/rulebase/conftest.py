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


# Flagged prescriptions whose rule needs a fact the normaliser does not establish yet. Strict: the
# test starts failing (XPASS) the day the fact arrives, so the mark cannot outlive its reason.
PENDING_FACTS: dict[str, str] = {}


def flagged_params() -> list[Any]:
    """The flagged fixtures as pytest parameters, the pending ones marked strict xfail."""
    return [pytest.param(p, id=p.stem, marks=[pytest.mark.xfail(reason=PENDING_FACTS[p.stem], strict=True)]
                         if p.stem in PENDING_FACTS else []) for p in flagged_paths()]


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
