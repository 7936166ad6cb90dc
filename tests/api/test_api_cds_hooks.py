"""CDS Hooks 2.0: discovery, order-sign cards, feedback; real requests from the HL7 PDDI guide."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from apiworld import World, load_fixture

SERVICE = "/cds-services/county-prescription-review"
# HL7 PDDI CDS Hooks requests (CC0), copied once for all tests; see the SOURCES.md there.
DATA = Path(__file__).resolve().parents[2] / "fixtures" / "fhir" / "intake" / "external" / "hl7-pddi-cds"


def order_sign(bundle: dict[str, Any]) -> dict[str, Any]:
    """A native Bundle as an order-sign request: orders as draftOrders, the rest as prefetch."""
    orders, prefetch = [], {}
    searchsets: dict[str, list[dict[str, Any]]] = {"conditions": [], "allergies": [], "observations": []}
    for e in bundle["entry"]:
        res = e["resource"]
        rt = res["resourceType"]
        if rt == "MedicationRequest":
            orders.append({"resource": res})
        elif rt == "Patient":
            prefetch["patient"] = res
        elif rt == "Encounter":
            prefetch["encounter"] = res
        elif rt in ("PractitionerRole", "Practitioner") and "practitioner" not in prefetch:
            prefetch["practitioner"] = res
        elif rt == "Condition":
            searchsets["conditions"].append({"resource": res})
        elif rt == "AllergyIntolerance":
            searchsets["allergies"].append({"resource": res})
        elif rt == "Observation":
            searchsets["observations"].append({"resource": res})
    for key, entries in searchsets.items():
        if entries:
            prefetch[key] = {"resourceType": "Bundle", "type": "searchset", "entry": entries}
    return {
        "hook": "order-sign",
        "hookInstance": "2f0c4c1e-2d0a-4c59-9d53-0b2a3c4d5e6f",
        "context": {"userId": "Practitioner/doc-1", "patientId": prefetch.get("patient", {}).get("id", "p"),
                    "draftOrders": {"resourceType": "Bundle", "type": "collection", "entry": orders}},
        "prefetch": prefetch,
    }


def test_discovery_lists_an_order_sign_service_with_the_contract_prefetch_keys(world: World) -> None:
    services = world.client.get("/cds-services").json()["services"]
    svc = next(s for s in services if s["hook"] == "order-sign")
    assert {"patient", "encounter", "practitioner", "conditions", "allergies", "observations"} <= set(svc["prefetch"])


def test_blocking_finding_becomes_a_critical_card_with_rule_id_and_implicated_orders(world: World) -> None:
    w = world
    r = w.client.post(SERVICE, json=order_sign(load_fixture("flagged/interaction_simvastatin_clarithromycin.json")),
                      headers=w.his())
    assert r.status_code == 200, r.text
    body = r.json()
    card = body["cards"][0]
    assert card["indicator"] == "critical"
    assert card["source"]["topic"]["code"] == "DDI-TABLE"
    assert len(card["summary"]) <= 140
    assert card["extension"]["implicated"] == ["MedicationRequest/mr-simvastatin", "MedicationRequest/mr-clarithromycin"]
    assert card["overrideReasons"] and card["suggestions"][0]["actions"][0]["type"] == "delete"
    assert body["extension"]["review"]["verdict"] == "block"
    assert body["extension"]["review"]["id"]


def test_explain_level_finding_becomes_a_warning_card(world: World) -> None:
    w = world
    r = w.client.post(SERVICE, json=order_sign(load_fixture("flagged/interaction_clopidogrel_omeprazole.json")),
                      headers=w.his())
    cards = r.json()["cards"]
    assert [c["indicator"] for c in cards if c["source"]["topic"]["code"] == "DDI-CLOPIDOGREL-PPI"] == ["warning"]
    assert r.json()["extension"]["review"]["verdict"] == "explain"


def test_a_clean_prescription_gets_no_cards_or_only_info(world: World) -> None:
    w = world
    clean = sorted((Path(__file__).resolve().parents[2] / "fixtures/fhir/clean").glob("*.json"))[:5]
    for path in clean:
        r = w.client.post(SERVICE, json=order_sign(json.loads(path.read_text(encoding="utf-8"))), headers=w.his())
        assert r.status_code == 200, (path.name, r.text)
        body = r.json()
        if body["extension"]["review"]["verdict"] == "pass":
            assert all(c["indicator"] == "info" for c in body["cards"]), path.name


def test_hl7_pddi_requests_never_get_a_5xx(world: World) -> None:
    w = world
    paths = sorted(DATA.glob("*.json"))
    assert len(paths) == 4, "the four HL7 PDDI requests must be there"
    for path in paths:
        doc = json.loads(path.read_text(encoding="utf-8"))
        r = w.client.post(SERVICE, json=doc, headers=w.his())
        assert r.status_code < 500, path.name
        if r.status_code == 200:
            assert "cards" in r.json() and "review" in r.json()["extension"]
        else:
            assert r.json()["resourceType"] == "OperationOutcome"
            assert r.headers["content-type"].startswith("application/fhir+json")


def test_feedback_records_overrides_against_the_card_rule(world: World) -> None:
    w = world
    body = w.client.post(SERVICE, json=order_sign(load_fixture("flagged/interaction_clopidogrel_omeprazole.json")),
                         headers=w.his()).json()
    card = body["cards"][0]
    fb = {"feedback": [{"card": card["uuid"], "outcome": "overridden", "outcomeTimestamp": "2026-11-23T08:00:00Z",
                        "overrideReason": {"reason": card["overrideReasons"][0], "userComment": "已告知患者"}}]}
    r = w.client.post(f"{SERVICE}/feedback", json=fb, headers=w.his())
    assert r.status_code == 200, r.text
    review = w.client.get(f"/api/v1/reviews/{body['extension']['review']['id']}", headers=w.his()).json()
    assert review["outcome"] == "explained"
    assert any(h["action"] == "feedback.overridden" for h in review["history"])


def test_feedback_for_an_unknown_card_is_a_404_outcome(world: World) -> None:
    r = world.client.post(f"{SERVICE}/feedback", json={"feedback": [{"card": "not-a-card", "outcome": "accepted"}]},
                          headers=world.his())
    assert r.status_code == 404
    assert r.json()["issue"][0]["expression"] == ["feedback[0].card"]


def test_unknown_service_id_is_404(world: World) -> None:
    r = world.client.post("/cds-services/nope", json={}, headers=world.his())
    assert r.status_code == 404 and r.json()["resourceType"] == "OperationOutcome"
