"""Helpers for the intake and facts tests: load an intake fixture and normalise it with the shipped dictionary."""

from __future__ import annotations

import json
from datetime import date
from pathlib import Path
from typing import Any

from audit_engine import intake
from audit_engine.facts import normalise
from audit_engine.knowledge.dictionary import load_dictionary
from audit_engine.schema import PrescriptionFacts

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "fhir" / "intake"
EXTERNAL = FIXTURES / "external"  # copies of /work/shared/data/external (see SOURCES.md there)


def load_fixture(name: str) -> dict[str, Any]:
    return json.loads((FIXTURES / f"{name}.json").read_text(encoding="utf-8"))


def parse_any(payload: dict[str, Any]) -> intake.Intake:
    kind = payload.get("resourceType")
    if kind == "Bundle":
        return intake.parse_bundle(payload)
    if kind == "MedicationRequest":
        return intake.parse_medication_request(payload)
    return intake.parse_cds_request(payload)


def facts_of(name: str, *, today: date | None = None, client_institution: dict[str, Any] | None = None
             ) -> PrescriptionFacts:
    return normalise(parse_any(load_fixture(name)), dictionary=load_dictionary(), today=today,
                     client_institution=client_institution)


def issue_codes(facts: PrescriptionFacts) -> list[str]:
    return sorted(i.code for i in facts.issues)
