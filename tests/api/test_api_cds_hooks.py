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


def _signed(w: World, key: str | None = None) -> dict[str, Any]:
    body = w.client.post(SERVICE, json=order_sign(load_fixture("flagged/interaction_clopidogrel_omeprazole.json")),
                         headers=w.his(key)).json()
    assert body["cards"]
    return body


def _feedback(w: World, card: str, outcome: str = "accepted", key: str | None = None, **extra: Any) -> Any:
    item = {"card": card, "outcome": outcome, "outcomeTimestamp": "2026-11-23T08:00:00Z", **extra}
    return w.client.post(f"{SERVICE}/feedback", json={"feedback": [item]}, headers=w.his(key))


def _feedback_rows(w: World) -> list[tuple[str | None, str]]:
    import sqlalchemy as sa

    from audit_engine.store.db import make_engine
    from audit_engine.store.models import Feedback

    db = make_engine(w.url)
    try:
        with db.connect() as conn:
            return [tuple(r) for r in conn.execute(sa.select(Feedback.card_id, Feedback.outcome))]  # type: ignore[misc]
    finally:
        db.dispose()


def test_a_card_id_the_service_never_issued_is_refused_even_next_to_a_real_one(world: World) -> None:
    import uuid

    w = world
    card = _signed(w)["cards"][0]["uuid"]
    # the same review prefix, a finding position that has no card: shaped like ours, never issued
    forged = str(uuid.UUID(uuid.UUID(card).hex[:24] + f"{99:08x}"))
    for fake in (forged, str(uuid.uuid4())):
        r = _feedback(w, fake)
        assert r.status_code == 404 and r.json()["resourceType"] == "OperationOutcome"
    assert _feedback_rows(w) == []


def test_another_institutions_card_is_refused_even_for_its_centre(world: World) -> None:
    w = world
    card = _signed(w)["cards"][0]["uuid"]  # issued to the member TOWN01
    for key in (w.other_member_key, w.centre_key):
        assert _feedback(w, card, key=key).status_code == 404
    assert _feedback_rows(w) == []
    assert _feedback(w, card).status_code == 200


def test_the_same_feedback_twice_is_recorded_once_and_a_contrary_one_is_a_conflict(world: World) -> None:
    w = world
    card = _signed(w)["cards"][0]["uuid"]
    first, again = _feedback(w, card), _feedback(w, card)
    assert first.json() == {"recorded": 1, "already_recorded": 0}
    assert again.status_code == 200 and again.json() == {"recorded": 0, "already_recorded": 1}
    contrary = _feedback(w, card, "overridden")
    assert contrary.status_code == 409 and contrary.json()["resourceType"] == "OperationOutcome"
    assert _feedback_rows(w) == [(card, "accepted")]


def test_a_replayed_order_sign_keeps_its_card_ids_so_feedback_still_counts_once(world: World) -> None:
    w = world
    a, b = _signed(w), _signed(w)
    assert [c["uuid"] for c in a["cards"]] == [c["uuid"] for c in b["cards"]]
    assert _feedback(w, a["cards"][0]["uuid"]).json()["recorded"] == 1
    assert _feedback(w, b["cards"][0]["uuid"]).json()["recorded"] == 0


def test_outcome_timestamp_must_be_a_fhir_instant(world: World) -> None:
    w = world
    card = _signed(w)["cards"][0]["uuid"]
    for bad in ("yesterday", "2026-11-23", "2026-11-23T08:00", "2026-11-23T08:00:00", "2026-02-30T08:00:00Z", 20261123):
        r = _feedback(w, card, outcomeTimestamp=bad)
        assert r.status_code == 422, bad
        assert r.json()["issue"][0]["expression"] == ["feedback[0].outcomeTimestamp"]
    assert _feedback_rows(w) == []
    assert _feedback(w, card, outcomeTimestamp="2026-11-23T16:00:00+08:00").status_code == 200


def test_unknown_service_id_is_404(world: World) -> None:
    r = world.client.post("/cds-services/nope", json={}, headers=world.his())
    assert r.status_code == 404 and r.json()["resourceType"] == "OperationOutcome"
