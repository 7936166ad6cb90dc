"""The teaching-case library (教学案例库): real interventions and 点评 findings, anonymised.

A case is built from the stored *normalised facts* of the review (never from the prescription
as received), keeping what teaches — sex, age, population, weight, renal function, pregnancy,
diagnoses, the drugs with dose, frequency, route and days, the system's findings, the
pharmacist's intervention and the doctor's answer, the 点评 codes — and nothing that names
anyone: no patient name or identifier, no prescription number, no prescriber, no institution
(only its level). Free text written by people (reasons, notes) is scrubbed of every name and
identifier found in the prescription as received.
"""

from __future__ import annotations

import json
import re
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Session

from audit_engine import audit_log
from audit_engine.auth import Principal, can_see, visible_institution_ids
from audit_engine.errors import InvalidRequestError, NotFoundError
from audit_engine.quality.codes import by_code
from audit_engine.store.db import utcnow
from audit_engine.store.models import FindingRow, Institution, Prescription, Review, Task, new_id
from audit_engine.store.quality_models import Comment, TeachingCase

MASK = "＊＊"
_INTERVENED = ("rejected", "returned", "modified", "double_signed")


def _identifiers(raw: str) -> set[str]:
    """Every name and identifier value in the prescription as received (to scrub from free text)."""
    found: set[str] = set()
    try:
        doc = json.loads(raw)
    except ValueError:
        return found

    def walk(node: Any, key: str = "") -> None:
        if isinstance(node, dict):
            if key in ("identifier", "groupIdentifier") and isinstance(node.get("value"), str):
                found.add(node["value"])
            for k, v in node.items():
                if k == "name" and isinstance(v, list):  # HumanName: text, family, given
                    for n in v:
                        if isinstance(n, dict):
                            for part in (n.get("text"), n.get("family"), *(n.get("given") or [])):
                                if isinstance(part, str):
                                    found.add(part)
                            if isinstance(n.get("family"), str):
                                found.add(n["family"] + "".join(g for g in n.get("given") or [] if isinstance(g, str)))
                walk(v, k)
        elif isinstance(node, list):
            for v in node:
                walk(v, key)

    walk(doc)
    return {f for f in found if len(f.strip()) >= 2}


def scrub(text: str | None, secrets_: set[str]) -> str | None:
    if not text:
        return text
    for value in sorted(secrets_, key=len, reverse=True):
        text = text.replace(value, MASK)
    return re.sub(r"\b\d{15}[\dXx]|\b\d{17}[\dXx]\b|1[3-9]\d{9}", MASK, text)  # ID card and mobile numbers


def _age(patient: dict[str, Any]) -> str | None:
    if patient.get("age_years") is not None and patient["age_years"] >= 3:
        return f"{patient['age_years']} 岁"
    if patient.get("age_months") is not None and patient["age_months"] >= 1:
        return f"{patient['age_months']} 月龄"
    if patient.get("age_days") is not None:
        return f"{patient['age_days']} 日龄"
    return None


def _dose(item: dict[str, Any]) -> str | None:
    for key, unit in (("dose_mg", "mg"), ("dose_ml", "mL"), ("dose_iu", "IU")):
        if item.get(key) is not None:
            value = float(item[key])
            if unit == "mg" and value >= 1000:
                return f"{value / 1000:g} g"
            return f"{value:g} {unit}"
    return None


def secrets_of(s: Session, review: Review) -> set[str]:
    """Names and identifiers of this prescription: its patient's, its prescriber's, its number."""
    rx = s.get(Prescription, review.prescription_id)
    found = _identifiers(rx.raw) if rx is not None else set()
    identity = (review.facts or {}).get("identity") or {}
    found |= {v for v in identity.values() if isinstance(v, str) and len(v) >= 2}
    if rx is not None and rx.identifier:
        found.add(rx.identifier)
    return found


def anonymised_case(s: Session, review: Review) -> dict[str, Any]:
    """The anonymised content of a case (also what the API shows)."""
    secrets_ = secrets_of(s, review)
    facts = review.facts or {}
    patient = facts.get("patient") or {}
    prescription = facts.get("prescription") or {}
    level = s.scalar(sa.select(Institution.level).where(Institution.id == review.institution_id))
    findings = s.scalars(sa.select(FindingRow).where(FindingRow.review_id == review.id)
                         .order_by(FindingRow.position)).all()
    task = s.scalar(sa.select(Task).where(Task.review_id == review.id))
    comment = s.get(Comment, review.id)
    known = by_code()
    return {
        "patient": {
            "sex": patient.get("sex"), "age": _age(patient), "population": patient.get("population"),
            "weight_kg": patient.get("weight"), "egfr": patient.get("egfr"), "pregnant": patient.get("pregnant"),
            "diagnoses": [{"code": d.get("code"), "name": d.get("name")} for d in facts.get("diagnoses") or []],
        },
        "prescription": {"type": prescription.get("type"), "department": prescription.get("department"),
                         "institution_level": level, "verdict": review.verdict},
        "items": [{"name": i.get("name"), "dose": _dose(i), "frequency_per_day": i.get("frequency"),
                   "route": i.get("route"), "days": i.get("days")} for i in facts.get("items") or []],
        "findings": [{"rule_id": f.rule_id, "title": f.title, "level": f.level,
                      "message": scrub(f.message, secrets_), "suggestion": scrub(f.suggestion, secrets_)}
                     for f in findings],
        "intervention": None if task is None or task.decision is None else {
            "decision": task.decision, "reason": scrub(task.reason, secrets_),
            "doctor_answer": task.doctor_answer, "doctor_reason": scrub(task.doctor_reason, secrets_)},
        "comment": None if comment is None else {
            "judgement": comment.judgement,
            "codes": [{"code": k, "group": known[k].group_name, "text": known[k].text} for k in comment.codes],
            "note": scrub(comment.note, secrets_)},
    }


def make_case(s: Session, *, principal: Principal, review_id: str, title: str | None = None,
              lesson: str | None = None) -> dict[str, Any]:
    """Mark a review as a teaching case (an intervention, or a prescription 点评'd 不合理)."""
    review = s.get(Review, review_id)
    if review is None or not can_see(s, principal, review.institution_id):
        raise NotFoundError(f"Review/{review_id}", "没有这张处方，或无权查看")
    comment = s.get(Comment, review_id)
    task_status = s.scalar(sa.select(Task.status).where(Task.review_id == review_id))
    if comment is not None and comment.judgement == "不合理":
        source = "comment"
    elif task_status in _INTERVENED:
        source = "intervention"
    else:
        raise InvalidRequestError("review_id", "只有药师干预过（拒绝或打回）或点评为不合理的处方可以作为教学案例")
    if s.scalar(sa.select(TeachingCase.id).where(TeachingCase.review_id == review_id)) is not None:
        raise InvalidRequestError("review_id", "这张处方已是教学案例")
    secrets_ = secrets_of(s, review)
    case = anonymised_case(s, review)
    case["lesson"] = scrub(lesson, secrets_)
    first = next(iter(case["findings"]), None)
    row = TeachingCase(id=new_id(), source=source, review_id=review_id,
                       title=(scrub(title, secrets_) or (first["title"] if first else "处方点评案例"))[:300],
                       case=case, created_by=principal.actor, created_at=utcnow())
    try:
        with s.begin_nested():
            s.add(row)
    except sa.exc.IntegrityError:  # made by someone else a moment ago
        raise InvalidRequestError("review_id", "这张处方已是教学案例") from None
    audit_log.append(s, actor=audit_log.Actor.of(principal), action="quality.teaching_case", object_type="review",
                     object_id=review_id, institution_id=review.institution_id, detail={"case": row.id})
    return case_json(row)


def case_json(row: TeachingCase) -> dict[str, Any]:
    # The review id stays out: it would lead back to the prescription as received.
    return {"id": row.id, "source": row.source, "title": row.title, "case": row.case,
            "created_by": row.created_by, "created_at": row.created_at.isoformat(timespec="seconds") + "Z"}


def list_cases(s: Session, *, principal: Principal) -> list[dict[str, Any]]:
    q = sa.select(TeachingCase).order_by(TeachingCase.created_at.desc()).limit(500)
    visible = visible_institution_ids(s, principal)
    if visible is not None:
        q = q.join(Review, Review.id == TeachingCase.review_id).where(Review.institution_id.in_(visible))
    return [case_json(r) for r in s.scalars(q)]
