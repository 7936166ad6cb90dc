"""Whatever a HIS sends, intake answers IntakeError or normalise answers facts: never another exception."""

from __future__ import annotations

import copy
from typing import Any

from fhir_support import FIXTURES, load_fixture, parse_any
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from audit_engine.errors import IntakeError
from audit_engine.facts import normalise
from audit_engine.knowledge.dictionary import load_dictionary

NAMES = sorted(p.stem for p in FIXTURES.glob("*.json") if not p.stem.startswith("bad_fhir"))
JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers(-5, 10**6) | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=8) | st.sampled_from(["mg", "片", "d", "tid", "每日三次", "2026-11-20", "active", "静滴"]),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.sampled_from(["value", "unit", "code", "text"]), inner,
                                                                max_size=3),
    max_leaves=6,
)


def _paths(node: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    out = [prefix] if prefix else []
    if isinstance(node, dict):
        for k, v in node.items():
            out += _paths(v, (*prefix, k))
    elif isinstance(node, list):
        for i, v in enumerate(node):
            out += _paths(v, (*prefix, i))
    return out


def _resources(payload: dict[str, Any]) -> list[dict[str, Any]]:
    """Every resource in the payload: the orders and the patient context."""
    if payload.get("resourceType") == "MedicationRequest":
        return [payload]
    if payload.get("resourceType") == "Bundle":
        return [e["resource"] for e in payload["entry"]]
    out = [e["resource"] for e in payload["context"]["draftOrders"]["entry"]]
    for value in payload.get("prefetch", {}).values():
        out += [e["resource"] for e in value["entry"]] if value.get("resourceType") == "Bundle" else [value]
    return out


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.sampled_from(NAMES), st.data())
def test_mutated_resources_never_crash_normalisation(name: str, data: st.DataObject) -> None:
    payload = copy.deepcopy(load_fixture(name))
    resource = data.draw(st.sampled_from(_resources(payload)))
    path = data.draw(st.sampled_from([p for p in _paths(resource) if p[0] not in ("resourceType", "id")]))
    parent = resource
    for step in path[:-1]:
        parent = parent[step]
    if data.draw(st.booleans()):
        del parent[path[-1]]
    else:
        parent[path[-1]] = data.draw(JSON_VALUES)
    try:
        received = parse_any(payload)
    except IntakeError as err:
        assert err.issues and err.status in (400, 413, 422)
        return
    facts = normalise(received, dictionary=load_dictionary())
    assert len(facts.items) == len(received.orders)
    for issue in facts.issues:
        assert issue.message and issue.where
