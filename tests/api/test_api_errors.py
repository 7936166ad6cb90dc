"""Bad input never gets a 5xx: OperationOutcome with a FHIRPath, fhir+json media type, 413 on size."""

from __future__ import annotations

import json
from typing import Any

from apiworld import World, load_fixture
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

POSTS = ("/api/v1/reviews", "/cds-services/county-prescription-review",
         "/cds-services/county-prescription-review/feedback", "/api/v1/subscriptions")

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=8),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4),
    max_leaves=20,
)
FHIR_KEYS = ("resourceType", "type", "entry", "resource", "id", "status", "intent", "subject",
             "medicationCodeableConcept", "dosageInstruction", "hook", "context", "draftOrders", "prefetch")
fhir_like = st.recursive(
    st.sampled_from(["Bundle", "MedicationRequest", "collection", "order-sign", "draft", ""]) | st.integers(),
    lambda children: st.lists(children, max_size=3) | st.dictionaries(st.sampled_from(FHIR_KEYS), children,
                                                                        max_size=5),
    max_leaves=25,
)


def _assert_outcome(r: Any) -> None:
    assert r.status_code < 500, r.text
    if r.status_code >= 400:
        assert r.headers["content-type"].startswith("application/fhir+json")
        body = r.json()
        assert body["resourceType"] == "OperationOutcome" and body["issue"]
        assert "Traceback" not in r.text


def test_malformed_json_gets_400_operation_outcome(world: World) -> None:
    for path in POSTS:
        r = world.client.post(path, content=b'{"resourceType": "Bundle",', headers=world.his() | {
            "Content-Type": "application/json"})
        assert 400 <= r.status_code < 500
        _assert_outcome(r)


def test_bad_fhir_names_the_fhirpath_of_the_element(world: World) -> None:
    bundle = load_fixture("flagged/interaction_simvastatin_clarithromycin.json")
    mr = next(e for e in bundle["entry"] if e["resource"]["resourceType"] == "MedicationRequest")
    mr["resource"]["status"] = 42
    r = world.client.post("/api/v1/reviews", json=bundle, headers=world.his())
    assert r.status_code == 422
    _assert_outcome(r)
    assert any("status" in e for i in r.json()["issue"] for e in i.get("expression", []))


def test_a_body_over_the_limit_gets_413(world: World) -> None:
    big = b'{"resourceType":"Bundle","type":"collection","entry":[' + b'{},' * 1_000_000 + b'{}]}'
    r = world.client.post("/api/v1/reviews", content=big, headers=world.his() | {"Content-Type": "application/json"})
    assert r.status_code == 413
    _assert_outcome(r)


def test_a_refused_submission_leaves_nothing_behind(world: World) -> None:
    import sqlalchemy as sa

    from audit_engine.store.db import make_engine
    from audit_engine.store.models import Prescription, Review

    r = world.client.post("/api/v1/reviews", json={"resourceType": "Bundle", "type": "collection", "entry": []},
                          headers=world.his())
    assert 400 <= r.status_code < 500
    db = make_engine(world.url)
    with db.connect() as c:
        assert c.scalar(sa.select(sa.func.count()).select_from(Prescription)) == 0
        assert c.scalar(sa.select(sa.func.count()).select_from(Review)) == 0
    db.dispose()


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(doc=json_values, path=st.sampled_from(POSTS))
def test_arbitrary_json_never_gets_a_5xx(world: World, doc: Any, path: str) -> None:
    r = world.client.post(path, content=json.dumps(doc).encode(), headers=world.his() | {
        "Content-Type": "application/json"})
    _assert_outcome(r)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(doc=fhir_like, path=st.sampled_from(POSTS[:2]))
def test_fhir_shaped_garbage_never_gets_a_5xx(world: World, doc: Any, path: str) -> None:
    r = world.client.post(path, content=json.dumps(doc).encode(), headers=world.his() | {
        "Content-Type": "application/json"})
    _assert_outcome(r)


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.binary(max_size=64))
def test_random_bytes_never_get_a_5xx(world: World, data: bytes) -> None:
    r = world.client.post("/api/v1/reviews", content=data, headers=world.his() | {"Content-Type": "application/json"})
    _assert_outcome(r)
