"""At most ``AUDIT_MAX_ORDERS`` orders (default 60) under review in one prescription.

The limit answers 413 ``too-costly`` with the FHIRPath of the first order beyond it, for a
Bundle, a CDS Hooks request and the ``review`` command alike. Only orders under review
count: a patient's medication history in the same Bundle does not.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from audit_engine import intake
from audit_engine.cli import main
from audit_engine.errors import IntakeError
from audit_engine.intake import IntakeLimits, limits
from audit_engine.settings import get_settings

ROOT = Path(__file__).resolve().parents[2]
LARGE_TCM = ROOT / "fixtures" / "fhir" / "limits" / "tcm_large_decoction_60_herbs.json"


def large_tcm() -> dict[str, Any]:
    """A 饮片 prescription of 60 herbs: exactly at the default limit."""
    return json.loads(LARGE_TCM.read_text(encoding="utf-8"))


def with_extra_orders(bundle: dict[str, Any], n: int, *, status: str | None = None) -> dict[str, Any]:
    """``bundle`` with ``n`` more orders of the same prescription (copies of its last order
    under new ids), every order's status set to ``status`` when given."""
    out = copy.deepcopy(bundle)
    orders = [e for e in out["entry"] if e["resource"]["resourceType"] == "MedicationRequest"]
    for k in range(n):
        extra = copy.deepcopy(orders[-1])
        extra["resource"]["id"] = f"mr-extra-{k}"
        extra["fullUrl"] = f"https://his.demo-county.cn/fhir/MedicationRequest/mr-extra-{k}"
        out["entry"].append(extra)
    if status is not None:
        for e in out["entry"]:
            if e["resource"]["resourceType"] == "MedicationRequest":
                e["resource"]["status"] = status
    return out


def as_order_sign(bundle: dict[str, Any]) -> dict[str, Any]:
    """The same prescription as a CDS Hooks order-sign request (orders as drafts)."""
    orders = [{"resource": {**e["resource"], "status": "draft"}} for e in bundle["entry"]
              if e["resource"]["resourceType"] == "MedicationRequest"]
    patient = next(e["resource"] for e in bundle["entry"] if e["resource"]["resourceType"] == "Patient")
    return {"hook": "order-sign", "hookInstance": "5b0c7c1e-6f0e-4a55-9d4b-6c1f2f7e0a61",
            "context": {"userId": "Practitioner/doc", "patientId": patient["id"],
                        "draftOrders": {"resourceType": "Bundle", "type": "collection", "entry": orders}},
            "prefetch": {"patient": patient}}


@pytest.fixture
def max_orders(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Whatever the environment says, the tests here see the shipped default."""
    monkeypatch.delenv("AUDIT_MAX_ORDERS", raising=False)
    get_settings.cache_clear()
    yield
    get_settings.cache_clear()


def test_the_default_limit_is_sixty_orders() -> None:
    assert IntakeLimits().max_orders == 60


def test_sixty_herbs_are_at_the_limit_and_accepted(max_orders: None) -> None:
    received = intake.parse_bundle(large_tcm())
    assert len(received.orders) == 60


@pytest.mark.parametrize("status", ["active", "draft"])
def test_one_order_beyond_the_limit_is_413_naming_the_limit_and_the_extra_order(max_orders: None, status: str) -> None:
    bundle = with_extra_orders(large_tcm(), 1, status=status)
    with pytest.raises(IntakeError) as err:
        intake.parse_bundle(bundle)
    assert err.value.status == 413
    (issue,) = err.value.issues
    assert issue.code == "too-costly"
    assert "61" in issue.message and "60" in issue.message
    first_extra = next(i for i, e in enumerate(bundle["entry"]) if e["resource"]["id"] == "mr-extra-0")
    assert issue.expression == f"Bundle.entry[{first_extra}].resource"


def test_drafts_beyond_the_limit_are_refused_before_any_order_is_validated(max_orders: None) -> None:
    bundle = with_extra_orders(large_tcm(), 1, status="draft")
    bundle["entry"][-1]["resource"]["dosageInstruction"][0]["timing"]["repeat"]["frequency"] = "三次"  # invalid
    with pytest.raises(IntakeError) as err:
        intake.parse_bundle(bundle)
    assert err.value.status == 413  # not the 422 that validating the bad order would give


def test_a_cds_request_beyond_the_limit_names_the_draft_order(max_orders: None) -> None:
    request = as_order_sign(with_extra_orders(large_tcm(), 1))
    assert len(intake.parse_cds_request(as_order_sign(large_tcm())).orders) == 60
    with pytest.raises(IntakeError) as err:
        intake.parse_cds_request(request)
    assert err.value.status == 413
    assert err.value.issues[0].expression == "context.draftOrders.entry[60].resource"


def test_the_patients_medication_history_does_not_count(max_orders: None) -> None:
    bundle = with_extra_orders(large_tcm(), 30)
    for e in bundle["entry"]:
        if e["resource"]["id"].startswith("mr-extra-"):
            e["resource"]["status"] = "stopped"  # earlier prescriptions: context, not under review
    received = intake.parse_bundle(bundle)
    assert len(received.orders) == 60 and len(received.context_orders) == 30


def test_the_limit_comes_from_audit_max_orders(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AUDIT_MAX_ORDERS", "10")
    get_settings.cache_clear()
    try:
        assert limits.get_limits().max_orders == 10
        with pytest.raises(IntakeError) as err:
            intake.parse_bundle(large_tcm())
        assert "10" in err.value.issues[0].message
    finally:
        monkeypatch.delenv("AUDIT_MAX_ORDERS")
        get_settings.cache_clear()


def test_the_review_command_prints_the_413_outcome(max_orders: None, tmp_path: Path,
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "61_orders.json"
    path.write_text(json.dumps(with_extra_orders(large_tcm(), 1), ensure_ascii=False), encoding="utf-8")
    assert main(["review", str(path)]) == 1
    outcome = json.loads(capsys.readouterr().out)
    assert outcome["resourceType"] == "OperationOutcome"
    assert outcome["issue"][0]["code"] == "too-costly"
    assert outcome["issue"][0]["expression"][0].startswith("Bundle.entry[")
