"""What the service sends back in FHIR and CDS Hooks shapes.

Findings become CDS Hooks cards (order-sign) or FHIR ``DetectedIssue`` resources; a
pharmacist's work item becomes a FHIR ``Task``; any refusal becomes an
``OperationOutcome``. Everything here is pure: plain values in, JSON-able dicts out.

How severe a finding *looks* depends on the institution's policy, not on the rule alone:
a level at or above ``recheck_at`` stops the prescription for a pharmacist (or blocks it),
so its card is ``critical``; a level at or above ``explain_at`` needs the doctor's answer
(``warning``); anything lower is ``info``.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from audit_engine.errors import InputIssue
from audit_engine.findings import Finding

RULE_SYSTEM = "urn:audit-engine:rule"
VERDICT_SYSTEM = "urn:audit-engine:verdict"
SOURCE_LABEL = "县域处方审核规则库"
_CARD_NAMESPACE = uuid.UUID("6f1d3c52-6a0e-4c77-9f35-4b8e2f1f7a10")

VERDICT_ZH: dict[str, str] = {
    "pass": "系统通过",
    "explain": "需医师说明理由",
    "recheck": "待药师复核",
    "block": "拦截，需修改处方",
}

# Reasons a doctor may pick when overriding a card (CDS Hooks overrideReasons).
OVERRIDE_REASONS: tuple[dict[str, str], ...] = (
    {"system": "urn:audit-engine:override-reason", "code": "benefit-outweighs-risk", "display": "获益大于风险"},
    {"system": "urn:audit-engine:override-reason", "code": "patient-tolerated", "display": "患者既往使用耐受"},
    {"system": "urn:audit-engine:override-reason", "code": "monitoring", "display": "已安排监测"},
    {"system": "urn:audit-engine:override-reason", "code": "information-incorrect", "display": "提示信息与实际不符"},
)


def indicator_for(level: int, *, explain_at: int, recheck_at: int) -> str:
    """The CDS card indicator of a finding at ``level`` under an institution's thresholds."""
    if level >= recheck_at:
        return "critical"
    if level >= explain_at:
        return "warning"
    return "info"


_SEVERITY = {"critical": "high", "warning": "moderate", "info": "low"}


def severity_for(level: int, *, explain_at: int, recheck_at: int) -> str:
    """DetectedIssue.severity (high / moderate / low) of a finding under the same thresholds."""
    return _SEVERITY[indicator_for(level, explain_at=explain_at, recheck_at=recheck_at)]


def card_id(review_id: str, finding: Finding, index: int) -> str:
    """The stable uuid of the card of the ``index``-th finding of a review.

    Review ids are 32 random hex digits: the card uuid is the first 24 of them followed by
    the finding's position, so a replayed review issues the same card ids. Issued cards are
    stored (``cds_cards``) and feedback is accepted only for those. Other id shapes fall
    back to a uuid5.
    """
    if len(review_id) == 32 and all(c in "0123456789abcdef" for c in review_id):
        return str(uuid.UUID(review_id[:24] + f"{index:08x}"))
    return str(uuid.uuid5(_CARD_NAMESPACE, f"{review_id}|{index}|{finding.rule_id}|{','.join(finding.implicated)}"))


def _truncate(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def finding_summary(finding: Finding) -> str:
    """The card summary: level, title and the message's head, at most 140 characters."""
    head = f"【{finding.level}级·{finding.category}】{finding.title}"
    if finding.message and finding.message != finding.title:
        head = f"{head}：{finding.message}"
    return _truncate(head, 140)


def finding_detail(finding: Finding) -> str:
    """Markdown detail: message, evidence, suggestion and source."""
    parts = [finding.message]
    if finding.evidence:
        parts.append(f"**依据**：{finding.evidence}")
    if finding.suggestion:
        parts.append(f"**建议**：{finding.suggestion}")
    parts.append(f"规则 `{finding.rule_id}`（{finding.category}/{finding.subtype}）")
    return "\n\n".join(p for p in parts if p)


def finding_to_card(finding: Finding, *, indicator: str, uuid_: str) -> dict[str, Any]:
    """One CDS Hooks 2.0 card for one finding."""
    card: dict[str, Any] = {
        "uuid": uuid_,
        "summary": finding_summary(finding),
        "detail": finding_detail(finding),
        "indicator": indicator,
        "source": {
            "label": SOURCE_LABEL,
            "topic": {"system": RULE_SYSTEM, "code": finding.rule_id, "display": finding.title},
        },
        "extension": {
            "implicated": list(finding.implicated),
            "level": finding.level,
            "category": finding.category,
            "subtype": finding.subtype,
        },
    }
    if indicator != "info" and finding.implicated:
        # The one action the service can always propose: withdraw the implicated draft orders.
        card["suggestions"] = [
            {
                "label": "撤销涉及的医嘱，按建议修改后重新开具",
                "uuid": str(uuid.uuid5(_CARD_NAMESPACE, uuid_ + "|withdraw")),
                "isRecommended": indicator == "critical",
                "actions": [
                    {"type": "delete", "description": "撤销该医嘱", "resourceId": list(finding.implicated)}
                ],
            }
        ]
        card["selectionBehavior"] = "any"
    if indicator != "info":
        card["overrideReasons"] = [dict(r) for r in OVERRIDE_REASONS]
    return card


def cds_response(
    findings: Sequence[Finding],
    *,
    review_id: str,
    verdict: str,
    explain_at: int,
    recheck_at: int,
    card_ids: Sequence[str] | None = None,
    extra: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """The order-sign response: one card per finding and ``extension.review``."""
    cards = []
    for i, f in enumerate(findings):
        cid = card_ids[i] if card_ids is not None else card_id(review_id, f, i)
        cards.append(
            finding_to_card(f, indicator=indicator_for(f.level, explain_at=explain_at, recheck_at=recheck_at), uuid_=cid)
        )
    review: dict[str, Any] = {"id": review_id, "verdict": verdict, "verdict_zh": VERDICT_ZH.get(verdict, verdict)}
    if extra:
        review.update(extra)
    return {"cards": cards, "extension": {"review": review}}


def finding_to_detected_issue(
    finding: Finding,
    *,
    review_id: str,
    index: int,
    severity: str,
    patient: str | None = None,
    identified: str | None = None,
) -> dict[str, Any]:
    """One finding as an R4 ``DetectedIssue``."""
    issue: dict[str, Any] = {
        "resourceType": "DetectedIssue",
        "id": f"{review_id}-{index}",
        "status": "final",
        "code": {
            "coding": [{"system": RULE_SYSTEM, "code": finding.rule_id, "display": finding.title}],
            "text": f"{finding.category}/{finding.subtype}",
        },
        "severity": severity,
        "implicated": [{"reference": r} for r in finding.implicated],
        "detail": finding.message,
        "extension": [
            {"url": "urn:audit-engine:level", "valueInteger": finding.level},
            {"url": "urn:audit-engine:category", "valueString": finding.category},
        ],
    }
    if finding.evidence:
        issue["evidence"] = [{"detail": [{"text": finding.evidence}]}]
    if finding.source:
        issue["reference"] = f"urn:audit-engine:rule-source:{finding.source}"
    if patient:
        issue["patient"] = {"reference": patient}
    if identified:
        issue["identifiedDateTime"] = identified
    if finding.suggestion:
        issue["mitigation"] = [
            {
                "action": {
                    "coding": [
                        {
                            "system": "http://terminology.hl7.org/CodeSystem/v3-ActCode",
                            "code": "_ActDetectedIssueManagementCode",
                        }
                    ],
                    "text": finding.suggestion,
                }
            }
        ]
    return issue


def detected_issues_bundle(
    findings: Iterable[Finding],
    *,
    review_id: str,
    explain_at: int,
    recheck_at: int,
    patient: str | None = None,
    identified: str | None = None,
) -> dict[str, Any]:
    """A ``collection`` Bundle of DetectedIssue resources, one per finding."""
    entries = []
    for i, f in enumerate(findings):
        res = finding_to_detected_issue(
            f,
            review_id=review_id,
            index=i,
            severity=severity_for(f.level, explain_at=explain_at, recheck_at=recheck_at),
            patient=patient,
            identified=identified,
        )
        entries.append({"fullUrl": f"urn:uuid:{uuid.uuid5(_CARD_NAMESPACE, res['id'])}", "resource": res})
    return {"resourceType": "Bundle", "type": "collection", "entry": entries}


_TASK_STATUS = {
    "pending": "requested",
    "claimed": "in-progress",
    "approved": "completed",
    "rejected": "rejected",
    "returned": "on-hold",
    "timeout_pass": "completed",
    "escalated": "ready",
    "double_signed": "completed",
    "modified": "cancelled",
    "superseded": "cancelled",
    "closed": "completed",
}


def task_resource(
    *,
    task_id: str,
    review_id: str,
    status: str,
    priority: str = "routine",
    owner: str | None = None,
    institution: str | None = None,
    authored_on: str | None = None,
    last_modified: str | None = None,
    decision: str | None = None,
    reason: str | None = None,
    items: Sequence[str] = (),
) -> dict[str, Any]:
    """The pharmacist work item as an R4 ``Task`` (intent ``order``, focus = the review)."""
    task: dict[str, Any] = {
        "resourceType": "Task",
        "id": task_id,
        "status": _TASK_STATUS.get(status, "requested"),
        "businessStatus": {"coding": [{"system": "urn:audit-engine:task-status", "code": status}]},
        "intent": "order",
        "priority": "stat" if priority in ("stat", "emergency", "urgent") else "routine",
        "code": {"text": "处方审核（药师复核）"},
        "focus": {"reference": f"urn:audit-engine:review:{review_id}"},
        "input": [{"type": {"text": "implicated"}, "valueReference": {"reference": r}} for r in items],
    }
    if owner:
        task["owner"] = {"display": owner}
    if institution:
        task["requester"] = {"identifier": {"system": "urn:audit-engine:institution", "value": institution}}
    if authored_on:
        task["authoredOn"] = authored_on
    if last_modified:
        task["lastModified"] = last_modified
    if decision:
        task["output"] = [{"type": {"text": "decision"}, "valueString": decision}]
        if reason:
            task["statusReason"] = {"text": reason}
    return task


def operation_outcome(issues: Sequence[InputIssue]) -> dict[str, Any]:
    """An ``OperationOutcome`` from input issues (the FHIRPath goes in ``expression``)."""
    out = []
    for i in issues:
        entry: dict[str, Any] = {"severity": i.severity, "code": i.code, "diagnostics": i.message}
        if i.expression:
            entry["expression"] = [i.expression]
        out.append(entry)
    return {"resourceType": "OperationOutcome", "issue": out}


def simple_outcome(code: str, message: str, *, expression: str | None = None, severity: str = "error") -> dict[str, Any]:
    """A one-issue OperationOutcome."""
    return operation_outcome([InputIssue(code=code, message=message, expression=expression, severity=severity)])
