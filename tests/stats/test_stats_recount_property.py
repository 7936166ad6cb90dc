"""Property: for random sequences of reviews, pharmacist decisions, doctors' answers, CDS
feedback and timeouts — many of them arriving after the review's month ended — every
figure of ``GET /api/v1/stats/indicators`` equals a brute-force recount from the base
tables (reviews and their stored facts, tasks, feedback), done here independently in Python."""

from __future__ import annotations

import uuid
from collections import defaultdict
from datetime import date, datetime, timedelta
from typing import Any

import sqlalchemy as sa
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from scenario import ScenarioPipeline, bundle_of, quality_principal
from store_support import World

from audit_engine import feedback as doctor_feedback
from audit_engine import queue, submission
from audit_engine.errors import ServiceError
from audit_engine.stats.indicators import indicators
from audit_engine.stats.periods import day_range
from audit_engine.store.db import session_scope
from audit_engine.store.models import Feedback, FindingRow, Institution, Review, Task

START = datetime(2026, 10, 25)
ITEMS = [
    {"drug_id": "amoxicillin", "name": "阿莫西林", "route": "口服", "antimicrobial_grade": "非限制使用级", "essential": True},
    {"drug_id": "ceftriaxone", "name": "头孢曲松", "route": "静滴", "injection": True, "antimicrobial_grade": "限制使用级"},
    {"drug_id": "dexamethasone", "name": "地塞米松", "atc": "H02AB02", "route": "静注", "injection": True, "essential": True},
    {"drug_id": "amlodipine", "name": "氨氯地平", "route": "口服", "essential": True},
    {"written": "奥拉西坦注射液", "route": "静滴"},
]

submit = st.fixed_dictionaries({
    "op": st.just("rx"),
    "institution": st.sampled_from(["C1", "M1"]),
    "minutes": st.integers(0, 60 * 24 * 40),  # 40 days from 25 October: crosses two month ends
    "type": st.sampled_from(["门诊", "急诊", None]),
    "items": st.lists(st.integers(0, len(ITEMS) - 1), min_size=1, max_size=3),
    "levels": st.lists(st.integers(0, 9), max_size=2),
    "off_list": st.booleans(),
})
later = st.integers(1, 60 * 24 * 20)  # up to 20 days later
decide = st.fixed_dictionaries({"op": st.just("decide"), "target": st.integers(0, 30), "after": later,
                                "decision": st.sampled_from(["approve", "reject", "return"])})
answer = st.fixed_dictionaries({"op": st.just("answer"), "target": st.integers(0, 30), "after": later,
                                "kind": st.sampled_from(["insist", "modify"])})
feedback = st.fixed_dictionaries({"op": st.just("feedback"), "target": st.integers(0, 30), "after": later,
                                  "outcome": st.sampled_from(["accepted", "overridden"]), "reason": st.booleans()})
timeout = st.fixed_dictionaries({"op": st.just("timeout"), "minutes": st.integers(0, 60 * 24 * 60)})
operations = st.lists(st.one_of(submit, submit, decide, answer, feedback, timeout), min_size=1, max_size=25)


def play(engine: sa.Engine, world: World, ops: list[dict[str, Any]]) -> None:
    made: list[tuple[str, datetime, Any]] = []  # (review id, created, HIS principal)
    for op in ops:
        if op["op"] == "rx":
            at = START + timedelta(minutes=op["minutes"])
            levels = [lv for lv in op["levels"] if lv > 0]
            step = {"rx": uuid.uuid4().hex[:12], "institution": op["institution"], "at": at.isoformat(),
                    "items": [ITEMS[i] for i in op["items"]],
                    "findings": [{"rule": f"R-{lv}", "level": lv} for lv in levels]
                    + ([{"rule": "LEG-OFF-FORMULARY", "level": 1, "items": [0]}] if op["off_list"] else [])}
            if op["type"]:
                step["type"] = op["type"]
            principal = world.principals[f"his_{op['institution'].lower()}"]
            with session_scope(engine) as s:
                rec = submission.submit_review(s, principal=principal, payload=bundle_of(step), kind="bundle",
                                            engine=None, review_fn=ScenarioPipeline(), now=at)
            made.append((rec.id, at, principal))
            continue
        if op["op"] == "timeout":
            with session_scope(engine) as s:
                queue.apply_timeouts(s, now=START + timedelta(minutes=op["minutes"]))
            continue
        if not made:
            continue
        review_id, created, his = made[op["target"] % len(made)]
        at = created + timedelta(minutes=op["after"])
        try:
            with session_scope(engine) as s:
                task = s.scalar(sa.select(Task).where(Task.review_id == review_id))
                if op["op"] == "decide" and task is not None and task.status in ("pending", "escalated"):
                    task.status, task.claimed_by, task.lease_expires_at = "claimed", "ph_c1", datetime(2100, 1, 1)
                    s.flush()
                    queue.decide(s, task_id=task.id, principal=world.ph_c1, decision=op["decision"],
                                 reason="理由", now=at)
                elif op["op"] == "answer" and task is not None and task.status == "returned":
                    if op["kind"] == "insist":
                        queue.doctor_answer(s, task_id=task.id, principal=his, kind="insist", reason="坚持", now=at)
                    else:
                        step = {"rx": uuid.uuid4().hex[:12], "institution": "C1" if his is world.his_c1 else "M1",
                                "at": at.isoformat(), "items": [ITEMS[3]]}
                        submission.submit_review(s, principal=his, payload=bundle_of(step), kind="bundle", engine=None,
                                              review_fn=ScenarioPipeline(), now=at, replaces_review_id=review_id)
                elif op["op"] == "feedback":
                    doctor_feedback.record_feedback(s, review_id=review_id, principal=his, outcome=op["outcome"],
                                            rule_id="R-3", reason="已说明" if op["reason"] else None, now=at)
        except ServiceError:
            pass  # a move the state machine refuses changes nothing; the recount must still agree


def _local(at: datetime) -> date:
    return (at + timedelta(hours=8)).date()  # Asia/Shanghai has had no daylight saving since 1991


def recount(engine: sa.Engine, start: date, end: date) -> dict[str, dict[str, tuple[Any, Any]]]:
    """Per institution code (and "ALL"): (numerator, denominator) of every ratio indicator."""
    n: dict[str, dict[str, int]] = defaultdict(lambda: defaultdict(int))
    with session_scope(engine) as s:
        codes = dict(s.execute(sa.select(Institution.id, Institution.code)).all())
        tasks = {t.review_id: t for t in s.scalars(sa.select(Task))}
        overridden = {f.review_id for f in s.scalars(sa.select(Feedback).where(Feedback.outcome == "overridden"))}
        off_refs: dict[str, set[str]] = defaultdict(set)
        for f in s.scalars(sa.select(FindingRow).where(FindingRow.rule_id == "LEG-OFF-FORMULARY")):
            off_refs[f.review_id].update(f.implicated)
        for r in s.scalars(sa.select(Review)):
            if not start <= _local(r.created_at) <= end:
                continue
            for key in (codes[r.institution_id], "ALL"):
                c = n[key]
                facts = r.facts
                items = facts.get("items", [])
                emergency = facts.get("prescription", {}).get("type") == "急诊"
                known = [i for i in items if "drug_id" in i]
                c["rx"] += 1
                c["flagged"] += r.verdict != "pass"
                c["recheck"] += r.verdict == "recheck"
                c["block"] += r.verdict == "block"
                c["explain"] += r.verdict == "explain"
                c["explained"] += r.verdict == "explain" and (r.id in overridden or r.outcome == "explained")
                c["items"] += len(items)
                c["anti"] += any("antimicrobial_grade" in i for i in known)
                c["inj"] += any(i.get("injection") or i.get("route") in ("静滴", "静注", "肌注", "皮下") for i in items)
                c["ess_items"] += sum(1 for i in known if i.get("essential"))
                c["ess_rx"] += any(i.get("essential") for i in known)
                c["emer"] += emergency
                c["ivs"] += emergency and any(str(i.get("atc", "")).startswith("H02") and i.get("route") in ("静滴", "静注")
                                              for i in known)
                c["off"] += sum(1 for i in items if "drug_id" not in i or i.get("reference") in off_refs[r.id])
                t = tasks.get(r.id)
                if t is not None:
                    c["tasks"] += 1
                    c["decided"] += t.decision in ("approve", "reject", "return")
                    c["timeout"] += t.decision == "timeout_pass" or bool(t.escalated)
                    c["intervened"] += t.decision in ("reject", "return")
                    c["answered"] += t.decision == "return" and t.doctor_answer is not None
                    c["modified"] += t.decision == "return" and t.doctor_answer == "modify"
                    c["insisted"] += t.decision == "return" and t.doctor_answer == "insist"
    out: dict[str, dict[str, tuple[Any, Any]]] = {}
    for key, c in n.items():
        out[key] = {
            "prescriptions": (c["rx"], None), "flag_rate": (c["flagged"], c["rx"]), "recheck_rate": (c["recheck"], c["rx"]),
            "block_rate": (c["block"], c["rx"]), "pharmacist_decided_rate": (c["decided"], c["tasks"]),
            "timeout_rate": (c["timeout"], c["tasks"]), "intervention_rate": (c["intervened"], c["rx"]),
            "acceptance_rate": (c["modified"], c["answered"]), "double_sign_rate": (c["insisted"], c["answered"]),
            "explain_override_rate": (c["explained"], c["explain"]), "drugs_per_prescription": (c["items"], c["rx"]),
            "antimicrobial_rate": (c["anti"], c["rx"]), "injection_rate": (c["inj"], c["rx"]),
            "essential_item_rate": (c["ess_items"], c["items"]), "essential_prescription_rate": (c["ess_rx"], c["rx"]),
            "emergency_iv_steroid_rate": (c["ivs"], c["emer"]), "off_formulary_rate": (c["off"], c["items"]),
        }
    return out


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture,
                                                                  HealthCheck.too_slow])
@given(ops=operations, window=st.sampled_from([("2026-10-01", "2026-10-31"), ("2026-11-01", "2026-11-30"),
                                               ("2026-10-25", "2026-12-31")]))
def test_every_figure_equals_a_recount_from_the_base_tables(engine: sa.Engine, world: World,
                                                             ops: list[dict[str, Any]], window: tuple[str, str]) -> None:
    play(engine, world, ops)
    period = day_range(*window)
    expected = recount(engine, period.start, period.end)
    with session_scope(engine) as s:
        answer = indicators(s, principal=quality_principal(engine, None), period=period, group_by="institution")
    got = {r["key"]: r["indicators"] for r in answer["rows"]}
    assert sorted(got) == sorted(k for k in expected if k != "ALL")
    if "ALL" in expected:
        got["ALL"] = answer["alliance"]["indicators"]
    for key, figures in expected.items():
        for code, (num, den) in figures.items():
            assert (got[key][code]["numerator"], got[key][code]["denominator"]) == (num, den), (key, code)
