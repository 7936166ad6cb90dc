"""What the workbench reads: the queue page (order, filters, visibility, waiting time), the
history chain, the patient identifier as sent, and the drug-by-drug changes between versions."""

from __future__ import annotations

import json
from datetime import datetime, timedelta
from typing import Any

from hypothesis import given
from hypothesis import strategies as st
from store_support import FakePipeline, medication_bundle

from audit_engine import queue, submission
from audit_engine import workbench_reads as reads
from audit_engine.store.db import session_scope

T0 = datetime(2026, 11, 23, 1, 0)


def submit(engine: Any, principal: Any, identifier: str, *, level: int = 6, emergency: bool = False,
           at: datetime = T0, drugs: tuple[str, ...] = ("阿莫西林胶囊",)) -> str:
    with session_scope(engine) as s:
        rec = submission.submit_review(
            s, principal=principal, kind="bundle", engine=None, review_fn=FakePipeline(), now=at,
            payload=medication_bundle(identifier, levels=(level,), drugs=drugs,
                                      encounter_class="EMER" if emergency else "AMB"),
        )
    assert rec.task is not None
    return rec.task.id


def page(engine: Any, principal: Any, now: datetime = T0 + timedelta(minutes=1), **filters: Any) -> reads.QueuePage:
    with session_scope(engine) as s:
        return reads.queue_page(s, principal=principal, filters=reads.QueueFilters(**filters), now=now)


def test_the_page_is_in_claim_order_and_counts_everything_it_filters(engine: Any, world: Any) -> None:
    low = submit(engine, world.his_m1, "RX-LOW", level=5)
    high = submit(engine, world.his_m1, "RX-HIGH", level=7)
    urgent = submit(engine, world.his_c1, "RX-EMER", level=5, emergency=True)
    p = page(engine, world.ph_c1)
    assert [r.task_id for r in p.rows] == [urgent, high, low] and p.total == 3
    assert [r.prescription_number for r in p.rows] == ["RX-EMER", "RX-HIGH", "RX-LOW"]
    assert page(engine, world.ph_c1, min_level=7).total == 1
    assert [r.task_id for r in page(engine, world.ph_c1, institution="M1").rows] == [high, low]
    assert [r.task_id for r in page(engine, world.ph_c1, rx_type="急诊").rows] == [urgent]
    assert {(i.code, i.count) for i in p.institutions} == {("C1", 1), ("M1", 2)}


def test_waiting_time_filter_counts_from_arrival(engine: Any, world: Any) -> None:
    old = submit(engine, world.his_m1, "RX-OLD", at=T0)
    submit(engine, world.his_m1, "RX-NEW", at=T0 + timedelta(minutes=25))
    now = T0 + timedelta(minutes=30)
    assert [r.task_id for r in page(engine, world.ph_c1, now=now, waited_minutes=15).rows] == [old]
    assert page(engine, world.ph_c1, now=now, waited_minutes=5).total == 2


def test_a_member_pharmacist_sees_only_their_institution_and_another_centre_nothing(engine: Any, world: Any) -> None:
    submit(engine, world.his_m1, "RX-M1")
    submit(engine, world.his_c1, "RX-C1")
    assert {r.institution_code for r in page(engine, world.ph_m1).rows} == {"M1"}
    assert page(engine, world.ph_c2).total == 0


def test_claimed_tasks_stay_listed_with_their_holder_and_decided_ones_leave(engine: Any, world: Any) -> None:
    first = submit(engine, world.his_m1, "RX-1")
    second = submit(engine, world.his_m1, "RX-2")
    with session_scope(engine) as s:
        queue.claim(s, task_id=second, principal=world.ph2_c1, now=T0)
    with session_scope(engine) as s:
        queue.claim(s, task_id=first, principal=world.ph_c1, now=T0)
        queue.decide(s, task_id=first, principal=world.ph_c1, decision="approve", now=T0)
    rows = page(engine, world.ph_c1).rows
    assert [(r.task_id, r.status, r.claimed_by) for r in rows] == [(second, "claimed", "ph2_c1")]


def test_rows_summarise_the_drugs_as_first_two_then_the_count(engine: Any, world: Any) -> None:
    submit(engine, world.his_m1, "RX-3D", drugs=("阿莫西林胶囊", "布洛芬片", "氨溴索片"))
    row = page(engine, world.ph_c1).rows[0]
    assert row.drug_count == 3 and len(row.drugs) == 2
    assert row.drugs_text == f"{row.drugs[0]}、{row.drugs[1]} 等 3 种"


def test_history_follows_previous_review_links_both_ways(engine: Any, world: Any) -> None:
    first = submit(engine, world.his_m1, "RX-V1")
    with session_scope(engine) as s:
        queue.claim(s, task_id=first, principal=world.ph_c1, now=T0)
        queue.decide(s, task_id=first, principal=world.ph_c1, decision="return", reason="请减量", now=T0)
        old_review = queue.get_task(s, task_id=first, principal=world.ph_c1)
    assert old_review is not None
    with session_scope(engine) as s:
        new = submission.submit_review(s, principal=world.his_m1, kind="bundle", engine=None, review_fn=FakePipeline(),
                                    now=T0 + timedelta(minutes=5), payload=medication_bundle("RX-V2", levels=(6,)),
                                    replaces_review_id=old_review.review_id)
    assert new.task is not None
    with session_scope(engine) as s:
        h_new = reads.task_history(s, task_id=new.task.id, principal=world.ph_c1)
        h_old = reads.task_history(s, task_id=first, principal=world.ph_c1)
        hidden = reads.task_history(s, task_id=first, principal=world.ph_c2)
    assert h_new is not None and h_old is not None and hidden is None
    assert [v.review_id for v in h_new.versions] == [v.review_id for v in h_old.versions]
    assert [v.prescription_number for v in h_new.versions] == ["RX-V1", "RX-V2"]
    assert h_new.versions[0].task_status == "modified" and h_new.versions[0].reason == "请减量"
    assert h_new.versions[0].doctor_answer == "modify" and h_new.versions[1].current
    assert h_new.previous_review_id == old_review.review_id and h_old.previous_review_id is None


def test_prescription_numbers_are_shown_as_their_value() -> None:
    assert reads.identifier_value("https://his.example.cn/rx|RX-0001") == "RX-0001"
    assert reads.identifier_value("RX-0002") == "RX-0002"
    assert reads.identifier_value("sha256:ab12") is None and reads.identifier_value(None) is None


def test_patient_identifiers_are_read_as_sent_from_each_kind_of_submission() -> None:
    bundle = {"resourceType": "Bundle", "entry": [{"resource": {
        "resourceType": "Patient", "identifier": [{"system": "urn:mrn", "value": "MRN-1"}, {"value": "身份证后四位 1234"}]}}]}
    cds = {"hook": "order-sign", "prefetch": {"patient": {"resourceType": "Patient", "identifier": [{"value": "P-9"}]}}}
    lone = {"resourceType": "MedicationRequest", "subject": {"identifier": {"system": "urn:mrn", "value": "MRN-7"}}}
    assert reads.patient_identifiers(json.dumps(bundle)) == (
        reads.PatientIdentifier("urn:mrn", "MRN-1"), reads.PatientIdentifier(None, "身份证后四位 1234"))
    assert reads.patient_identifiers(json.dumps(cds)) == (reads.PatientIdentifier(None, "P-9"),)
    assert reads.patient_identifiers(json.dumps(lone)) == (reads.PatientIdentifier("urn:mrn", "MRN-7"),)
    assert reads.patient_identifiers("not json") == () and reads.patient_identifiers("[1]") == ()


def test_an_unrecognised_drug_is_named_as_written() -> None:
    assert reads.item_label({"name": "华法林"}) == "华法林"
    assert reads.item_label({"written_name": "复方某某胶囊"}) == "复方某某胶囊（未识别）"
    assert reads.item_label({}) == "未识别药品"


def test_a_changed_dose_an_added_and_a_removed_drug_are_each_reported() -> None:
    before = [{"drug_id": "W", "name": "华法林", "dose_mg": 3, "frequency": 1, "days": 7, "route": "口服"},
              {"drug_id": "A", "name": "阿司匹林", "dose_mg": 100, "frequency": 1, "days": 7, "route": "口服"}]
    after = [{"drug_id": "W", "name": "华法林", "dose_mg": 2.5, "frequency": 1, "days": 14, "route": "口服"},
             {"drug_id": "O", "name": "奥美拉唑", "dose_mg": 20, "frequency": 1, "days": 7, "route": "口服"}]
    assert reads.diff_items(before, after) == (
        reads.ItemChange("removed", "阿司匹林"),
        reads.ItemChange("added", "奥美拉唑"),
        reads.ItemChange("changed", "华法林", (reads.FieldChange("dose", "3 mg", "2.5 mg"),
                                               reads.FieldChange("days", "7 天", "14 天"))),
    )


ITEM = st.fixed_dictionaries({
    "drug_id": st.sampled_from(["D1", "D2", "D3", "D4", "D5"]),
    "dose_mg": st.sampled_from([5, 10, 12.5, 500]),
    "frequency": st.sampled_from([1, 2, 3]),
    "days": st.sampled_from([3, 7, 14]),
    "route": st.sampled_from(["口服", "静脉滴注"]),
}).map(lambda d: {**d, "name": "药" + d["drug_id"]})
VERSION = st.lists(ITEM, max_size=5, unique_by=lambda i: i["drug_id"])


@given(VERSION, VERSION)
def test_changes_recount_exactly_the_drugs_added_removed_and_changed(before: list[dict[str, Any]],
                                                                   after: list[dict[str, Any]]) -> None:
    changes = reads.diff_items(before, after)
    old = {i["drug_id"]: i for i in before}
    new = {i["drug_id"]: i for i in after}
    assert {c.name for c in changes if c.kind == "added"} == {"药" + k for k in new.keys() - old.keys()}
    assert {c.name for c in changes if c.kind == "removed"} == {"药" + k for k in old.keys() - new.keys()}
    differing = {k for k in old.keys() & new.keys()
                 if any(old[k][f] != new[k][f] for f in ("dose_mg", "frequency", "days", "route"))}
    assert {c.name for c in changes if c.kind == "changed"} == {"药" + k for k in differing}
    assert all(c.changes and all(f.before != f.after for f in c.changes) for c in changes if c.kind == "changed")
    assert reads.diff_items(after, after) == ()
