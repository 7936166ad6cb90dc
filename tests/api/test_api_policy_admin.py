"""An admin changes a member institution's verdict policy through the API; later reviews use it,
the change is audited, and an unusable policy is refused whole."""

from __future__ import annotations

import copy
import json
from typing import Any

import sqlalchemy as sa
from apiworld import World, load_fixture

WARFARIN_ASPIRIN = "flagged/interaction_warfarin_aspirin.json"  # level 5 in the stand-in engine


def renumbered(number: str) -> dict[str, Any]:
    bundle = copy.deepcopy(load_fixture(WARFARIN_ASPIRIN))
    bundle["identifier"] = {"system": "urn:oid:2.16.156.town01.rx", "value": number}
    for entry in bundle["entry"]:
        res = entry["resource"]
        if res["resourceType"] == "MedicationRequest":
            res["groupIdentifier"] = {"system": "urn:oid:2.16.156.town01.rx", "value": number}
    return bundle


def test_admin_raises_the_recheck_threshold_and_later_reviews_follow_it(any_world: World) -> None:
    w = any_world
    before = w.client.post("/api/v1/reviews", json=renumbered("RX-POL-1"), headers=w.his())
    assert before.json()["verdict"] == "recheck"

    r = w.client.patch("/api/v1/institutions/TOWN01/policy", json={"recheck_at": 6, "fail_mode": "open"},
                       headers=w.user("admin"))
    assert r.status_code == 200, r.text
    assert r.json()["recheck_at"] == 6 and r.json()["fail_mode"] == "open"
    assert r.json()["block_at"] == 8  # fields not named keep their value

    after = w.client.post("/api/v1/reviews", json=renumbered("RX-POL-2"), headers=w.his())
    assert after.json()["verdict"] == "explain"
    assert w.client.get("/api/v1/institutions/TOWN01/policy", headers=w.user("admin")).json()["recheck_at"] == 6
    # another member keeps the defaults
    assert w.client.get("/api/v1/institutions/VIL01/policy", headers=w.user("admin")).json()["recheck_at"] == 5


def test_a_policy_change_is_in_the_audit_log_with_before_and_after(world: World) -> None:
    w = world
    w.client.patch("/api/v1/institutions/TOWN01/policy", json={"timeout_action": "escalate"}, headers=w.user("admin"))
    db = sa.create_engine(w.url)
    with db.connect() as c:
        rows = c.execute(sa.text(
            "SELECT actor_name, object_id, detail FROM audit_log WHERE action = 'policy.updated'")).all()
    db.dispose()
    assert len(rows) == 1
    actor, code, detail = rows[0]
    detail = detail if isinstance(detail, dict) else json.loads(detail)
    assert (actor, code) == ("guanli", "TOWN01")
    assert detail["before"]["timeout_action"] == "pass" and detail["after"]["timeout_action"] == "escalate"


def test_thresholds_out_of_order_are_refused_and_nothing_changes(world: World) -> None:
    w = world
    r = w.client.patch("/api/v1/institutions/TOWN01/policy", json={"explain_at": 7, "recheck_at": 4},
                       headers=w.user("admin"))
    assert r.status_code == 422
    assert r.json()["resourceType"] == "OperationOutcome"
    assert "explain_at ≤ recheck_at" in r.json()["issue"][0]["diagnostics"]
    assert w.client.get("/api/v1/institutions/TOWN01/policy", headers=w.user("admin")).json()["explain_at"] == 3


def test_unknown_fields_and_institutions_are_named(world: World) -> None:
    w = world
    r = w.client.patch("/api/v1/institutions/TOWN01/policy", json={"block_level": 9}, headers=w.user("admin"))
    assert r.status_code == 422 and "block_level" in r.text
    r = w.client.patch("/api/v1/institutions/NOPE/policy", json={"block_at": 9}, headers=w.user("admin"))
    assert r.status_code == 404 and "NOPE" in r.text


def test_only_admins_read_or_change_policies(world: World) -> None:
    w = world
    for headers in (w.user("pharmacist"), w.user("quality"), w.his(), w.his(w.centre_key)):
        assert w.client.get("/api/v1/institutions/TOWN01/policy", headers=headers).status_code == 403
        assert w.client.patch("/api/v1/institutions/TOWN01/policy", json={"block_at": 9},
                              headers=headers).status_code == 403
    assert w.client.get("/api/v1/institutions/TOWN01/policy").status_code == 401
