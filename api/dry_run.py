"""Dry-run a stored rulebase version against recent prescriptions: how would verdicts change?

Nothing is written: each stored prescription (as received) goes through the candidate
engine, its verdict is decided under the policy snapshot its review recorded, and the
report lists the reviews whose verdict or rule set would change.
"""

from __future__ import annotations

import json
from collections import Counter
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Session

from api import rulebases
from audit_engine.errors import AuditEngineError
from audit_engine.settings import Settings


def dry_run(session: Session, *, row: Any, principal: Any, settings: Settings, limit: int = 200) -> dict[str, Any]:
    from audit_engine.auth import visible_institution_ids
    from audit_engine.engine import Engine
    from audit_engine.policy import Policy, decide_verdict
    from audit_engine.review import review_payload
    from audit_engine.store.models import FindingRow, Institution, Prescription, Review

    folder = rulebases.materialise(row.files, settings, key=f"v-{row.version[:40]}")
    engine = Engine.from_path(folder)
    q = (sa.select(Review, Prescription, Institution)
         .join(Prescription, Review.prescription_id == Prescription.id)
         .join(Institution, Review.institution_id == Institution.id)
         .order_by(Review.created_at.desc()).limit(limit))
    visible = visible_institution_ids(session, principal)
    if visible is not None:
        q = q.where(Review.institution_id.in_(visible))
    changes: list[dict[str, Any]] = []
    transitions: Counter[str] = Counter()
    examined = failed = 0
    for review, rx, inst in session.execute(q).all():
        examined += 1
        old_rules = set(session.scalars(sa.select(FindingRow.rule_id).where(FindingRow.review_id == review.id)))
        try:
            payload = json.loads(rx.raw)
            kind: Any = rx.kind  # stored as one of the three intake kinds
            result = review_payload(payload, kind=kind, engine=engine,
                                    client_institution={"code": inst.code, "level": inst.level})
        except (AuditEngineError, ValueError) as exc:
            failed += 1
            changes.append({"review_id": review.id, "error": f"{type(exc).__name__}: {exc}"[:300]})
            continue
        policy = Policy.from_snapshot(review.policy) if review.policy else Policy()
        verdict = decide_verdict(result.findings, unchecked=result.unchecked, policy=policy)
        new_rules = {f.rule_id for f in result.findings}
        transitions[f"{review.verdict}→{verdict}"] += 1
        if verdict != review.verdict or new_rules != old_rules:
            changes.append({
                "review_id": review.id,
                "prescription_identifier": rx.identifier,
                "institution": inst.code,
                "old_verdict": review.verdict,
                "new_verdict": verdict,
                "rules_added": sorted(new_rules - old_rules),
                "rules_removed": sorted(old_rules - new_rules),
            })
    changed_verdicts = sum(1 for c in changes if "new_verdict" in c and c["new_verdict"] != c["old_verdict"])
    return {
        "version": row.version,
        "examined": examined,
        "verdict_changes": changed_verdicts,
        "finding_changes": sum(1 for c in changes if "new_verdict" in c),
        "failed": failed,
        "transitions": dict(sorted(transitions.items())),
        "changes": changes,
    }
