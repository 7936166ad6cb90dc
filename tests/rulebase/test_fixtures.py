"""The realistic prescriptions through the real pipeline: clean ones stay quiet, flagged ones are caught.

Each prescription goes through ``audit_engine.review.review_payload`` twice: as a native FHIR
Bundle (POST /api/v1/reviews) and as a CDS Hooks order-sign request built from the same
resources (POST /cds-services/{id}), so both HTTP entry points see the same findings.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from audit_engine.policy import VERDICTS, Policy, decide_verdict
from audit_engine.review import review_payload

from .conftest import FIXTURE_DAY, clean_paths, flagged_params, flagged_paths, read_json

POLICY = Policy()  # the shipped default thresholds (rulebase/README.md)


def _resources(bundle: dict[str, Any], kind: str) -> list[dict[str, Any]]:
    return [e["resource"] for e in bundle["entry"] if e["resource"]["resourceType"] == kind]


def _searchset(resources: list[dict[str, Any]]) -> dict[str, Any]:
    return {"resourceType": "Bundle", "type": "searchset", "entry": [{"resource": r} for r in resources]}


def cds_request(bundle: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """The order-sign request a HIS plugin would send for ``bundle``, and the calling institution."""
    patient = _resources(bundle, "Patient")[0]
    org = _resources(bundle, "Organization")[0]
    request = {
        "hookInstance": f"fixture-{bundle['id']}",
        "hook": "order-sign",
        "context": {
            "userId": "Practitioner/doc",
            "patientId": patient["id"],
            "draftOrders": _searchset(_resources(bundle, "MedicationRequest")) | {"type": "collection"},
        },
        "prefetch": {
            "patient": patient,
            "encounter": _resources(bundle, "Encounter")[0],
            "practitioner": _resources(bundle, "Practitioner")[0],
            "conditions": _searchset(_resources(bundle, "Condition")),
            "allergies": _searchset(_resources(bundle, "AllergyIntolerance")),
            "observations": _searchset(_resources(bundle, "Observation")),
        },
    }
    institution = {"code": org["identifier"][0]["value"], "level": org["type"][0]["text"]}
    return request, institution


def _reviews(path: Path, engine: Any) -> list[Any]:
    bundle = read_json(path)
    request, institution = cds_request(bundle)
    return [
        review_payload(bundle, kind="bundle", engine=engine, today=FIXTURE_DAY),
        review_payload(request, kind="cds", engine=engine, client_institution=institution, today=FIXTURE_DAY),
    ]


def _shown(findings: Any) -> str:
    return "\n".join(f"  {f.rule_id} L{f.level} {f.implicated}: {f.message}" for f in findings)


# ------------------------------------------------------------------ the fixture sets themselves


def test_there_are_at_least_fifty_clean_prescriptions_across_settings() -> None:
    bundles = [read_json(p) for p in clean_paths()]
    assert len(bundles) >= 50

    def texts(kind: str, pick: Any) -> Counter[str]:
        return Counter(pick(r) for b in bundles for r in _resources(b, kind))

    departments = texts("Encounter", lambda r: r["serviceType"]["text"])
    levels = texts("Organization", lambda r: r["type"][0]["text"])
    classes = texts("Encounter", lambda r: r["class"]["code"])
    assert len(departments) >= 10, departments
    assert set(levels) == {"县级医院", "乡镇卫生院", "社区卫生服务中心", "村卫生室"}
    assert {"AMB", "EMER"} <= set(classes)
    births = sorted(r["birthDate"] for b in bundles for r in _resources(b, "Patient"))
    assert births[0] < "1960" and births[-1] >= "2026-10", "needs elderly patients and a neonate"
    pregnant = [b for b in bundles for o in _resources(b, "Observation")
                if o["code"]["coding"][0]["code"] == "82810-3" and o["valueCodeableConcept"]["text"] == "妊娠"]
    assert len(pregnant) >= 3


def test_every_flagged_prescription_has_an_expectation() -> None:
    paths = flagged_paths()
    assert len(paths) >= 20
    for p in paths:
        expect = read_json(p.with_suffix(".expect.json"))
        assert expect["expected_rule_ids"], p.name
        assert expect["minimum_verdict"] in VERDICTS


# ------------------------------------------------------------------ clean: no warning-level finding


@pytest.mark.parametrize("path", clean_paths(), ids=lambda p: p.stem)
def test_clean_prescription_gets_no_warning_level_finding(path: Path, engine: Any) -> None:
    for result in _reviews(path, engine):
        loud = [f for f in result.findings if f.level >= POLICY.explain_at]
        assert loud == [], f"{path.name}:\n{_shown(loud)}"
        assert not result.unchecked, f"{path.name}: {result.facts.issues}"
        assert decide_verdict(result.findings, unchecked=result.unchecked, policy=POLICY) == "pass"


# ------------------------------------------------------------------ flagged: the right rule, the right drugs


@pytest.mark.parametrize("path", flagged_params())
def test_flagged_prescription_is_caught_with_the_right_drugs(path: Path, engine: Any) -> None:
    expect = read_json(path.with_suffix(".expect.json"))
    wanted_refs = set(expect["expected_implicated"])
    for result in _reviews(path, engine):
        by_rule: dict[str, list[Any]] = {}
        for f in result.findings:
            by_rule.setdefault(f.rule_id, []).append(f)
        for rule_id in expect["expected_rule_ids"]:
            assert rule_id in by_rule, f"{path.name}: {rule_id} missing; got\n{_shown(result.findings)}"
            # A per-item rule implicates one drug per finding (one CDS card each): the union must cover them.
            implicated = {ref for f in by_rule[rule_id] for ref in f.implicated}
            if wanted_refs:
                assert wanted_refs <= implicated, (
                    f"{path.name}: {rule_id} does not implicate {sorted(wanted_refs)}:\n{_shown(by_rule[rule_id])}")
        verdict = decide_verdict(result.findings, unchecked=result.unchecked, policy=POLICY)
        assert VERDICTS.index(verdict) >= VERDICTS.index(expect["minimum_verdict"]), (
            f"{path.name}: verdict {verdict} below {expect['minimum_verdict']}:\n{_shown(result.findings)}")
        assert max(f.level for f in result.findings) >= expect["minimum_level"]


def test_every_rule_subtype_has_a_flagged_prescription(rulebase: Any) -> None:
    expected = {rid for p in flagged_paths() for rid in read_json(p.with_suffix(".expect.json"))["expected_rule_ids"]}
    subtypes: dict[str, set[str]] = {}
    for rule in rulebase.rules:
        subtypes.setdefault(f"{rule.category.main}.{rule.category.sub}", set()).add(rule.id)
    uncovered = sorted(sub for sub, ids in subtypes.items() if not ids & expected)
    assert uncovered == []


@pytest.mark.parametrize("path", [*clean_paths(), *flagged_paths()], ids=lambda p: p.stem)
def test_network_and_reference_interpreter_agree_on_the_fixture(path: Path, engine: Any, rulebase: Any) -> None:
    from audit_engine.lang.interpreter import evaluate

    result = review_payload(read_json(path), kind="bundle", engine=engine, today=FIXTURE_DAY)
    network = sorted((f.rule_id, f.level, f.implicated, f.message) for f in result.findings
                     if not f.rule_id.startswith("SYS-"))
    oracle = sorted((f.rule_id, f.level, f.implicated, f.message) for f in evaluate(rulebase, result.facts))
    assert network == oracle
