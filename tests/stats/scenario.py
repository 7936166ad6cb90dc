"""Scenario files for the statistics tests: prescriptions, late events and hand-computed checks.

A scenario (``scenarios/*.json``, one per file) lists *steps* in time order:

* ``{"rx": "A1", "institution": "M1", "at": "2026-11-03T02:00:00", "type": "门诊", ...}`` submits a
  prescription through the real ``submit_review`` (HIS of that institution). What the pipeline
  finds is stated in the step (``items`` with their dictionary facts, ``findings`` with rule,
  level and implicated item positions), so the figures can be computed by hand.
  ``"replaces": "A0"`` sends it as the doctor's modified version of a returned review.
* ``{"decide": "A1", "decision": "return", "at": ...}``: a pharmacist decides its task (real ``queue.decide``);
* ``{"answer": "A1", "kind": "insist", "at": ...}``: the doctor's double signature (real ``queue.doctor_answer``);
* ``{"feedback": "A1", "outcome": "overridden", "rule": "R1", "reason": ..., "at": ...}``: CDS feedback;
* ``{"timeouts_at": ...}``: the worker's timeout pass at that instant;
* ``{"check": {...}}``: query the statistics *now* and compare with the hand-computed figures
  (``[numerator, denominator]``; a denominator of 0 means the value must be null).
"""

from __future__ import annotations

import json
from datetime import date, datetime
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from store_support import World

from audit_engine import feedback, queue, submission
from audit_engine.findings import Finding
from audit_engine.review import ReviewResult
from audit_engine.schema import PrescriptionFacts
from audit_engine.stats.indicators import indicators
from audit_engine.stats.periods import day_range
from audit_engine.store.db import session_scope, utcnow
from audit_engine.store.models import Institution, Task, User

SCENARIOS = Path(__file__).parent / "scenarios"


def bundle_of(step: dict[str, Any]) -> dict[str, Any]:
    """A FHIR R4 collection Bundle for the step: Encounter, Practitioner and MedicationRequests;
    the step itself rides in ``meta.tag`` for :class:`ScenarioPipeline`."""
    enc_class = "EMER" if step.get("type") == "急诊" else "AMB"
    entries: list[dict[str, Any]] = [
        {"resource": {"resourceType": "Encounter", "id": "enc1", "status": "in-progress",
                      "class": {"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": enc_class}}},
    ]
    for n, item in enumerate(step.get("items", [])):
        entries.append({"resource": {
            "resourceType": "MedicationRequest", "id": f"mr{n}", "status": "draft", "intent": "order",
            "medicationCodeableConcept": {"text": item.get("written") or item.get("name") or "未知药品"},
            "subject": {"reference": "Patient/p1"}, "authoredOn": step["at"][:10],
            "groupIdentifier": {"system": "urn:his:prescription", "value": step.get("identifier", step["rx"])},
        }})
    return {"resourceType": "Bundle", "type": "collection",
            "meta": {"tag": [{"system": "urn:test:stats-scenario", "code": "rx",
                              "display": json.dumps(step, ensure_ascii=False)}]},
            "entry": entries}


class ScenarioPipeline:
    """A stand-in for ``review_payload`` that returns exactly the facts and findings of the step."""

    def __call__(self, payload: dict[str, Any], *, kind: str, engine: Any,
                 client_institution: dict[str, Any] | None = None, today: date | None = None) -> ReviewResult:
        step = json.loads(payload["meta"]["tag"][0]["display"])
        items = []
        for n, spec in enumerate(step.get("items", [])):
            item = {"id": f"mr{n}", "reference": f"MedicationRequest/mr{n}"}
            item.update({k: v for k, v in spec.items() if k != "written"})
            items.append(item)
        prescription: dict[str, Any] = {"item_count": len(items)}
        if step.get("type"):
            prescription["type"] = step["type"]
        if step.get("department"):
            prescription["department"] = step["department"]
        prescriber = step.get("prescriber") or {}
        facts = PrescriptionFacts(
            prescription=prescription,
            prescriber={"title": prescriber["title"]} if prescriber.get("title") else {},
            institution=dict(client_institution or {}),
            items=items,
            prescription_id=step.get("identifier", step["rx"]),
            identity={k: prescriber[k] for k in ("code", "name") if prescriber.get(k)},
        )
        findings = tuple(sorted((
            Finding(rule_id=f["rule"], title=f.get("title", f"规则 {f['rule']}"), category="适宜性", subtype="测试",
                    level=f["level"], message="测试", evidence="测试",
                    implicated=tuple(f"MedicationRequest/mr{i}" for i in f.get("items", [0])))
            for f in step.get("findings", [])), key=Finding.sort_key))
        return ReviewResult(facts.prescription_id, facts, findings, "rb-stats-test",
                            tuple(i["reference"] for i in items), {})


def _at(text: str) -> datetime:
    return datetime.fromisoformat(text)


def quality_principal(engine: sa.Engine, institution: str | None) -> Any:
    """A quality user bound to ``institution`` (or alliance-wide), created on first use."""
    from audit_engine import auth

    username = f"q_{(institution or 'all').lower()}"
    with session_scope(engine) as s:
        user = s.scalar(sa.select(User).where(User.username == username))
        if user is None:
            inst_id = s.scalar(sa.select(Institution.id).where(Institution.code == institution)) if institution else None
            user = User(username=username, password_hash="x", role="quality", institution_id=inst_id,
                        created_at=utcnow())
            s.add(user)
            s.flush()
        return auth.principal_for_user(s, user)


def run_scenario(engine: sa.Engine, world: World, name: str, *, checks_too: bool = True) -> int:
    """Play a scenario file; returns how many checks it made (a scenario must make some).
    ``checks_too=False`` only loads its data (to combine several scenarios)."""
    scenario = json.loads((SCENARIOS / name).read_text(encoding="utf-8"))
    return run_steps(engine, world, scenario["steps"], name=name, checks_too=checks_too)


def run_steps(engine: sa.Engine, world: World, steps: list[dict[str, Any]], *, name: str = "steps",
              checks_too: bool = True) -> int:
    """Play steps (see the module docstring); returns how many checks were made."""
    review_ids: dict[str, str] = {}
    his: dict[str, Any] = {}
    sent: dict[str, dict[str, Any]] = {}
    payloads: dict[str, dict[str, Any]] = {}
    checks = 0
    for n, step in enumerate(steps):
        where = f"{name} step {n}"
        if "rx" in step or "resend" in step:
            replay = "resend" in step  # the HIS sends the very same prescription again
            first = sent[step["resend"]] if replay else step
            payload = payloads[first["rx"]] if replay else bundle_of(step)
            principal = world.principals[f"his_{first['institution'].lower()}"]
            with session_scope(engine) as s:
                rec = submission.submit_review(
                    s, principal=principal, payload=payload, kind="bundle", engine=None,
                    review_fn=ScenarioPipeline(), now=_at(step["at"]),
                    replaces_review_id=review_ids[step["replaces"]] if step.get("replaces") else None,
                )
            if "verdict" in step:
                assert rec.verdict == step["verdict"], where
            assert bool(rec.replayed) == replay, where
            if replay:
                assert rec.id == review_ids[first["rx"]], where
                continue
            sent[step["rx"]], payloads[step["rx"]] = step, payload
            review_ids[step["rx"]] = rec.id
            his[step["rx"]] = principal
        elif "decide" in step:
            at = _at(step["at"])
            with session_scope(engine) as s:
                task = s.scalar(sa.select(Task).where(Task.review_id == review_ids[step["decide"]]))
                assert task is not None, where
                # Put the task in the pharmacist's hands directly: claim order is not what this tests.
                task.status, task.claimed_by, task.claimed_at = "claimed", "ph_c1", at
                task.lease_expires_at = datetime(2100, 1, 1)
                s.flush()
                queue.decide(s, task_id=task.id, principal=world.ph_c1, decision=step["decision"],
                             reason=step.get("reason", "测试理由"), now=at)
        elif "answer" in step:
            with session_scope(engine) as s:
                task_id = s.scalar(sa.select(Task.id).where(Task.review_id == review_ids[step["answer"]]))
                inst = s.scalar(sa.select(Institution).join(Task, Task.institution_id == Institution.id)
                                .where(Task.id == task_id))
                assert task_id is not None and inst is not None, where
                queue.doctor_answer(s, task_id=task_id, principal=world.principals[f"his_{inst.code.lower()}"],
                                    kind=step["kind"], reason=step.get("reason", "坚持理由"), now=_at(step["at"]))
        elif "feedback" in step:
            with session_scope(engine) as s:
                rid = review_ids[step["feedback"]]
                feedback.record_feedback(s, review_id=rid, principal=his[step["feedback"]], outcome=step["outcome"],
                                        rule_id=step.get("rule"), reason=step.get("reason"), now=_at(step["at"]))
        elif "timeouts_at" in step:
            with session_scope(engine) as s:
                queue.apply_timeouts(s, now=_at(step["timeouts_at"]))
        elif "check" in step:
            if checks_too:
                check(engine, step["check"], where)
                checks += 1
        else:
            raise AssertionError(f"{where}: unknown step {step}")
    return checks


def _compare(actual: dict[str, Any], expected: dict[str, Any], where: str) -> None:
    for code, want in expected.items():
        got = actual[code]
        if isinstance(want, list):
            num, den = want
            assert got["numerator"] == num and got["denominator"] == den, f"{where} {code}: {got} != {want}"
            if den is None:
                assert got["value"] == num, f"{where} {code}: {got}"
            elif den == 0:
                assert got["value"] is None, f"{where} {code}: empty denominator must give null, got {got}"
            else:
                assert abs(got["value"] - num / den) < 1e-6, f"{where} {code}: {got}"
        else:  # a plain value (times)
            assert got["value"] == want, f"{where} {code}: {got['value']} != {want}"


def check(engine: sa.Engine, spec: dict[str, Any], where: str) -> dict[str, Any]:
    principal = quality_principal(engine, spec.get("as"))
    with session_scope(engine) as s:
        answer = indicators(s, principal=principal, period=day_range(spec["from"], spec["to"]),
                            group_by=spec.get("group_by", "institution"), institution=spec.get("institution"),
                            visit_type=spec.get("type"))
    rows = {r["key"]: r for r in answer["rows"]}
    if "rows" in spec:
        if spec.get("exact_rows", True):
            assert sorted(rows) == sorted(spec["rows"]), f"{where}: rows {sorted(rows)} != {sorted(spec['rows'])}"
        for key, want in spec["rows"].items():
            assert key in rows, f"{where}: no row {key}"
            _compare(rows[key]["indicators"], want, f"{where} row {key}")
    if "alliance" in spec:
        _compare(answer["alliance"]["indicators"], spec["alliance"], f"{where} alliance")
    for code, want in (spec.get("spread") or {}).items():
        got = answer["spread"][code]
        for k, v in want.items():
            assert got[k] == v, f"{where} spread {code}.{k}: {got[k]} != {v}"
    return answer
