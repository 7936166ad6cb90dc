"""A month of stored prescriptions, written straight into the store's tables (as the demo
history does): hundreds of reviews per institution without the cost of the review path.

Each prescription names its patient (张三丰, ID card and mobile number) in the FHIR it was
received as, so the anonymisation of teaching cases has something real to remove.
"""

from __future__ import annotations

import hashlib
import json
from datetime import date, datetime, timedelta
from typing import Any

import sqlalchemy as sa

from audit_engine.intake.content import content_hash
from audit_engine.stats.recording import insert_stat_rows, stat_rows
from audit_engine.store.db import session_scope
from audit_engine.store.models import FindingRow, Prescription, Review, Task, new_id

PATIENT_NAME = "张三丰"
PATIENT_ID_CARD = "110101195001011234"
PATIENT_PHONE = "13912345678"

WESTERN_ITEM = {"id": "mr1", "reference": "MedicationRequest/mr1", "drug_id": "amoxicillin", "name": "阿莫西林",
                "route": "口服", "antimicrobial_grade": "非限制使用级", "essential": True, "herbal": False,
                "dose_mg": 500.0, "frequency": 3.0, "days": 5.0}
HERBAL_ITEM = {"id": "mr1", "reference": "MedicationRequest/mr1", "drug_id": "yp_huangqi", "name": "黄芪",
               "route": "口服", "herbal": True, "form": "饮片", "dose_mg": 30000.0, "frequency": 1.0, "days": 7.0}


def raw_bundle(identifier: str) -> str:
    return json.dumps({"resourceType": "Bundle", "type": "collection", "entry": [
        {"resource": {"resourceType": "Patient", "id": "p1", "name": [{"text": PATIENT_NAME}],
                      "identifier": [{"system": "urn:cn:id-card", "value": PATIENT_ID_CARD}],
                      "telecom": [{"system": "phone", "value": PATIENT_PHONE}], "gender": "male"}},
        {"resource": {"resourceType": "MedicationRequest", "id": "mr1", "status": "draft", "intent": "order",
                      "subject": {"reference": "Patient/p1"}, "medicationCodeableConcept": {"text": "阿莫西林胶囊"},
                      "groupIdentifier": {"value": identifier}}}]}, ensure_ascii=False)


def add_prescriptions(engine: sa.Engine, *, institution_id: int, day: date, count: int, herbal: bool = False,
                      prefix: str = "RX", verdict: str = "pass", rule: str | None = None,
                      task_status: str | None = None) -> list[str]:
    """``count`` reviews of one institution on one local day; returns their review ids."""
    ids: list[str] = []
    rows: dict[str, list[dict[str, Any]]] = {"prescriptions": [], "reviews": [], "findings": [], "tasks": []}
    stats = []
    at0 = datetime(day.year, day.month, day.day, 2, 0)  # 10:00 in Asia/Shanghai
    for n in range(count):
        at = at0 + timedelta(seconds=n)
        identifier = f"{prefix}-{institution_id}-{day:%Y%m%d}-{n:05d}{'-H' if herbal else ''}"
        raw = raw_bundle(identifier)
        rx_id, review_id = new_id(), new_id()
        facts = {"patient": {"sex": "男", "age_years": 72, "population": "老年", "name": "never stored"},
                 "prescription": {"type": "门诊", "department": "全科", "item_count": 1, "has_herbal": herbal,
                                  "has_western": not herbal},
                 "identity": {"code": "D101", "name": "赵明"},
                 "diagnoses": [{"code": "J02.9", "name": "急性咽炎"}],
                 "items": [dict(HERBAL_ITEM if herbal else WESTERN_ITEM)], "issues": []}
        facts["patient"].pop("name")
        rows["prescriptions"].append({
            "id": rx_id, "institution_id": institution_id, "identifier": identifier, "kind": "bundle", "raw": raw,
            "raw_sha256": hashlib.sha256(raw.encode()).hexdigest(), "content_hash": content_hash(json.loads(raw)),
            "received_at": at,
            "retention_class": "ordinary", "retain_until": day + timedelta(days=366)})
        rows["reviews"].append({
            "id": review_id, "prescription_id": rx_id, "institution_id": institution_id, "previous_review_id": None,
            "rulebase_version": "rb-quality-test", "verdict": verdict,
            "outcome": "system_pass" if verdict == "pass" else "pending", "max_level": 6 if rule else 0,
            "unchecked": False, "emergency": False, "items": ["MedicationRequest/mr1"], "facts": facts, "policy": {},
            "fail_mode": "open", "engine_failed": False, "engine_error": None, "timings_ms": {}, "created_at": at,
            "decided_at": None})
        if rule:
            rows["findings"].append({
                "review_id": review_id, "position": 0, "rule_id": rule, "title": "测试规则", "category": "适宜性",
                "subtype": "测试", "level": 6, "message": f"{PATIENT_NAME}的处方：剂量偏大", "evidence": "测试",
                "implicated": ["MedicationRequest/mr1"], "suggestion": None, "source": None})
        if task_status:
            rows["tasks"].append({
                "id": new_id(), "review_id": review_id, "institution_id": institution_id, "status": task_status,
                "emergency": False, "escalated": False, "max_level": 6, "created_at": at, "deadline_at": None,
                "decision": "return", "reason": f"请核对{PATIENT_NAME}（电话 {PATIENT_PHONE}）的剂量",
                "decided_by": "yaoshi", "decided_at": at, "version": 2})
        stats.append(stat_rows(review_id=review_id, institution_id=institution_id, created_at=at, verdict=verdict,
                               facts=facts, findings=[(rule, ["MedicationRequest/mr1"])] if rule else []))
        ids.append(review_id)
    with session_scope(engine) as s:
        for table, model in (("prescriptions", Prescription), ("reviews", Review), ("findings", FindingRow),
                             ("tasks", Task)):
            if rows[table]:
                s.execute(sa.insert(model.__table__), rows[table])  # type: ignore[arg-type]
        insert_stat_rows(s, stats)
    return ids
