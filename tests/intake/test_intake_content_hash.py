"""The content hash behind idempotency: envelope and order do not count, clinical content does."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from audit_engine.intake.content import content_hash

VERSIONS = Path(__file__).resolve().parents[2] / "fixtures" / "fhir" / "versions"


def load(name: str) -> dict[str, Any]:
    return json.loads((VERSIONS / f"{name}.json").read_text(encoding="utf-8"))


def test_a_retry_with_a_new_hook_instance_and_reordered_prefetch_has_the_same_content() -> None:
    assert content_hash(load("cds_p0003_order_sign")) == content_hash(load("cds_p0003_order_sign_retry_new_hook_instance"))


def test_versions_of_one_number_have_different_content() -> None:
    names = ["p0001_v1_simvastatin_alone_clean", "p0001_v2_clarithromycin_added_same_number_dangerous",
             "p0002_v1_warfarin_aspirin_to_pharmacist", "p0002_v2_aspirin_removed_same_number",
             "draft_orders_1_2_3_no_number_first_prescription", "draft_orders_1_2_3_no_number_second_prescription"]
    assert len({content_hash(load(n)) for n in names}) == len(names)


BASE = load("p0002_v1_warfarin_aspirin_to_pharmacist")


@settings(max_examples=60, deadline=None)
@given(order=st.permutations(range(len(BASE["entry"]))), stamp=st.text(max_size=20), tag=st.text(max_size=20),
       version=st.integers(min_value=1, max_value=99))
def test_envelope_fields_and_entry_order_never_change_the_content(order: list[int], stamp: str, tag: str,
                                                                  version: int) -> None:
    resent = copy.deepcopy(BASE)
    resent["entry"] = [resent["entry"][i] for i in order]
    resent["timestamp"], resent["id"] = stamp, f"rx-{tag}"
    resent["meta"] = {"lastUpdated": stamp, "tag": [{"code": tag}]}
    for e in resent["entry"]:
        e["fullUrl"] = f"urn:uuid:{tag}-{e['resource']['id']}"
        e["resource"]["meta"] = {"versionId": str(version)}
        e["resource"]["text"] = {"status": "generated", "div": f"<div>{tag}</div>"}
    assert content_hash(resent) == content_hash(BASE)


@settings(max_examples=60, deadline=None)
@given(dose=st.one_of(st.integers(min_value=1, max_value=5000), st.floats(min_value=0.01, max_value=5000)))
def test_any_change_of_a_dose_changes_the_content_and_40_equals_40_point_0(dose: float) -> None:
    changed = copy.deepcopy(BASE)
    mr = next(e["resource"] for e in changed["entry"] if e["resource"]["resourceType"] == "MedicationRequest")
    quantity = mr["dosageInstruction"][0]["doseAndRate"][0]["doseQuantity"]
    before = quantity["value"]
    quantity["value"] = dose
    same = float(dose) == float(before)
    assert (content_hash(changed) == content_hash(BASE)) == same
    quantity["value"] = float(before)
    assert content_hash(changed) == content_hash(BASE)
