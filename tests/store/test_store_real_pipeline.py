"""The store driven by the real pipeline (intake → facts → rulebase) on real-looking fixtures."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from audit_engine import review, submission
from audit_engine.errors import IntakeError
from audit_engine.policy import Policy
from audit_engine.store import reviews
from audit_engine.store.db import session_scope
from audit_engine.store.models import AuditEntry, Prescription, Task
from audit_engine.store.policies import set_policy

FIXTURES = Path(__file__).resolve().parents[2] / "fixtures" / "fhir"


@pytest.fixture(scope="module")
def rules() -> Any:
    return review.load_engine()


def load(name: str) -> dict[str, Any]:
    return dict(json.loads((FIXTURES / name).read_text(encoding="utf-8")))


def submit(engine: sa.Engine, principal: Any, payload: dict[str, Any], rules: Any) -> reviews.ReviewRecord:
    with session_scope(engine) as s:
        return submission.submit_review(s, principal=principal, payload=payload, kind="bundle", engine=rules)


def test_a_clean_morphine_prescription_passes_and_is_kept_three_years(engine, world, rules) -> None:
    payload = load("clean/cancer_pain_morphine_sr_15d.json")
    rec = submit(engine, world.his_m1, payload, rules)
    assert rec.verdict == "pass" and rec.task is None
    assert rec.prescription_identifier and rec.prescription_identifier.endswith(payload["identifier"]["value"])
    assert rec.retention_class == "narcotic_psy1"
    assert rec.rulebase_version == rules.version
    again = submit(engine, world.his_m1, payload, rules)
    assert again.replayed and again.id == rec.id


def test_a_flagged_prescription_reaches_a_pharmacist_under_a_lenient_block_level(engine, world, rules) -> None:
    with session_scope(engine) as s:
        set_policy(s, institution_id=world.ids["M1"], policy=Policy(block_at=10))
    rec = submit(engine, world.his_m1, load("flagged/allergy_penicillin_amoxicillin.json"), rules)
    assert rec.findings and rec.max_level >= 5
    assert rec.verdict == "recheck" and rec.task is not None and rec.task.status == "pending"
    assert rec.policy["block_at"] == 10
    assert all(ref.startswith("MedicationRequest/") for f in rec.findings for ref in f.implicated)


def test_the_same_prescription_is_blocked_under_the_default_policy(engine, world, rules) -> None:
    rec = submit(engine, world.his_m1, load("flagged/allergy_penicillin_amoxicillin.json"), rules)
    assert rec.verdict == "block" and rec.outcome == "auto_return" and rec.task is None


def test_input_that_is_not_a_prescription_is_refused_and_nothing_is_written(engine, world, rules) -> None:
    patient = {"resourceType": "Patient", "id": "p1"}
    with pytest.raises(IntakeError) as caught:
        submit(engine, world.his_m1, patient, rules)
    assert caught.value.status in (400, 422)
    with session_scope(engine) as s:
        for model in (Prescription, Task, AuditEntry):
            assert s.scalar(sa.select(sa.func.count()).select_from(model)) == 0
