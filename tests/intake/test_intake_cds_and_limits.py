"""CDS Hooks requests (current and legacy HL7 PDDI shapes), size limits, and the OperationOutcome."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest
from fhir_support import EXTERNAL, load_fixture

from audit_engine import intake
from audit_engine.errors import IntakeError
from audit_engine.intake import IntakeLimits, check_limits, check_structure, load_json, operation_outcome
from audit_engine.intake.limits import get_limits
from audit_engine.settings import get_settings

PDDI = EXTERNAL / "hl7-pddi-cds"


def _pddi(name: str) -> dict[str, Any]:
    return json.loads((PDDI / name).read_text(encoding="utf-8"))


def test_order_sign_request_groups_prefetch_resources() -> None:
    received = intake.parse_cds_request(load_fixture("cds_order_sign_full_prefetch"))
    assert received.kind == "cds" and [o.id for o in received.orders] == ["draft-simva", "draft-clari"]
    assert received.patient is not None and received.patient.id == "p-cds"
    assert received.encounter is not None and len(received.conditions) == 2 and len(received.observations) == 2
    assert received.allergies_supplied and received.conditions_supplied
    assert received.user_id == "PractitionerRole/role-001"
    assert received.orders[0].path == "context.draftOrders.entry[0].resource"


def test_every_prefetch_key_is_optional() -> None:
    full = load_fixture("cds_order_sign_full_prefetch")
    for key in list(full["prefetch"]):
        payload = copy.deepcopy(full)
        del payload["prefetch"][key]
        assert intake.parse_cds_request(payload).orders
    payload = copy.deepcopy(full)
    payload["prefetch"] = {k: None for k in full["prefetch"]}  # the EHR could not prefetch
    assert intake.parse_cds_request(payload).patient is None


def test_unknown_hook_is_refused() -> None:
    payload = load_fixture("cds_order_sign_without_prefetch")
    payload["hook"] = "patient-view"
    with pytest.raises(IntakeError) as err:
        intake.parse_cds_request(payload)
    assert [i.expression for i in err.value.issues] == ["hook"]


def test_missing_draft_orders_is_refused() -> None:
    payload = load_fixture("cds_order_sign_without_prefetch")
    del payload["context"]["draftOrders"]
    with pytest.raises(IntakeError) as err:
        intake.parse_cds_request(payload)
    assert [i.expression for i in err.value.issues] == ["context.draftOrders"]


def test_bad_draft_order_is_named_inside_the_request() -> None:
    payload = load_fixture("cds_order_sign_without_prefetch")
    payload["context"]["draftOrders"]["entry"][0]["resource"]["dosageInstruction"][0]["timing"]["repeat"]["period"] = "1天"
    with pytest.raises(IntakeError) as err:
        intake.parse_cds_request(payload)
    assert [i.expression for i in err.value.issues] == [
        "context.draftOrders.entry[0].resource.dosageInstruction[0].timing.repeat.period"]


@pytest.mark.parametrize("name", sorted(p.name for p in PDDI.glob("request-warfarin-nsaid-*.json")))
def test_legacy_pddi_requests_are_accepted_with_warnings(name: str) -> None:
    received = intake.parse_cds_request(_pddi(name))
    assert len(received.orders) == 1 and received.warnings
    messages = " ".join(w.message for w in received.warnings)
    assert "context.medications" in messages and "encounter" in messages
    assert all(w.severity == "warning" for w in received.warnings)


def test_legacy_prefetch_wrapper_is_unwrapped() -> None:
    received = intake.parse_cds_request(_pddi("request-warfarin-nsaid-scenario-02.json"))
    assert [o.id for o in received.context_orders] == ["medicationrequest-warfarin-nsaid-warfarin-prefetch"]


def test_legacy_draft_order_without_intent_gets_a_precise_outcome() -> None:
    with pytest.raises(IntakeError) as err:
        intake.parse_cds_request(_pddi("multi-update-draft-orders-1.json"))
    outcome = operation_outcome(err.value)
    assert outcome["resourceType"] == "OperationOutcome"
    assert [i["expression"] for i in outcome["issue"]] == [["context.draftOrders.entry[0].resource.intent"]]
    assert outcome["issue"][0]["code"] == "required" and outcome["issue"][0]["severity"] == "error"


def test_outcome_carries_chinese_diagnostics_and_valid_codes() -> None:
    with pytest.raises(IntakeError) as err:
        intake.parse_bundle(load_fixture("bad_fhir_period_unit"))
    outcome = operation_outcome(err.value)
    (issue,) = outcome["issue"]
    assert issue["code"] == "code-invalid" and "无效的代码" in issue["diagnostics"]
    from fhir.resources.R4B.operationoutcome import OperationOutcome

    OperationOutcome.model_validate(outcome)  # a valid FHIR resource


def test_body_over_the_limit_is_413_before_parsing() -> None:
    with pytest.raises(IntakeError) as err:
        check_limits(b"{" + b" " * 100, IntakeLimits(max_body_bytes=50))
    assert err.value.status == 413 and err.value.issues[0].code == "too-long"


def test_default_limits_are_2000000_bytes_2000_entries_depth_64() -> None:
    assert IntakeLimits() == IntakeLimits(max_body_bytes=2_000_000, max_entries=2000, max_depth=64)


def test_the_intake_and_the_http_body_limit_share_one_default(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("AUDIT_MAX_BODY_BYTES", raising=False)
    assert get_settings().max_body_bytes == IntakeLimits().max_body_bytes == get_limits().max_body_bytes


def test_limits_come_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    from audit_engine.intake import limits

    monkeypatch.setenv("AUDIT_MAX_ENTRIES", "10")
    get_settings.cache_clear()
    try:
        assert limits.get_limits().max_entries == 10
    finally:
        monkeypatch.delenv("AUDIT_MAX_ENTRIES")
        get_settings.cache_clear()


def test_too_many_entries_is_413() -> None:
    b = load_fixture("adult_outpatient_full_context")
    with pytest.raises(IntakeError) as err:
        check_structure(b, IntakeLimits(max_entries=len(b["entry"]) - 1))
    assert err.value.status == 413 and err.value.issues[0].expression == "Bundle.entry"


def test_deep_nesting_is_422() -> None:
    deep: dict[str, Any] = {"resourceType": "Bundle"}
    node = deep
    for _ in range(70):
        node["extension"] = [{}]
        node = node["extension"][0]
    with pytest.raises(IntakeError) as err:
        check_structure(deep)
    assert err.value.status == 422


def test_hostile_depth_does_not_blow_the_stack() -> None:
    raw = b'{"a":' * 100_000 + b"1" + b"}" * 100_000
    with pytest.raises(IntakeError) as err:
        load_json(raw, IntakeLimits(max_body_bytes=10**7))
    assert err.value.status == 422


def test_not_json_is_400_and_not_an_object_is_422() -> None:
    with pytest.raises(IntakeError) as err:
        load_json(b"{not json")
    assert err.value.status == 400
    with pytest.raises(IntakeError) as err:
        load_json(b"[1, 2]")
    assert err.value.status == 422


def test_load_json_accepts_a_real_bundle(tmp_path: Path) -> None:
    raw = (EXTERNAL / "synthea-bundles" / "Louis_Maggio.json").read_bytes()
    assert load_json(raw)["resourceType"] == "Bundle"
