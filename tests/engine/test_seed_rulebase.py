"""The shipped county rulebase, on the realistic FHIR fixtures: network == interpreter."""

from __future__ import annotations

import json
from pathlib import Path

from audit_engine import facts as facts_mod
from audit_engine import intake
from audit_engine.engine import Engine
from audit_engine.errors import IntakeError
from audit_engine.knowledge.dictionary import load_dictionary
from audit_engine.lang import interpreter
from audit_engine.lang.compiler import compile_rulebase
from audit_engine.lang.loader import load_rulebase

ROOT = Path(__file__).resolve().parents[2]


def test_the_seed_rulebase_fires_the_same_findings_in_network_and_interpreter() -> None:
    rulebase = load_rulebase(ROOT / "rulebase")
    engine = Engine(compile_rulebase(rulebase))
    dictionary = load_dictionary()
    checked = fired = 0
    for path in sorted((ROOT / "fixtures" / "fhir").glob("*/*.json")):
        if path.name.endswith(".expect.json"):
            continue
        payload = json.loads(path.read_text(encoding="utf-8"))
        if payload.get("resourceType") != "Bundle":
            continue
        try:
            facts = facts_mod.normalise(intake.parse_bundle(payload), dictionary=dictionary)
        except IntakeError:
            continue  # deliberately invalid input (fixtures/fhir/intake)
        found = engine.evaluate(facts)
        assert found == interpreter.evaluate(rulebase, facts), path.name
        checked += 1
        fired += len(found)
    assert checked >= 50 and fired > 0
    engine.close()
