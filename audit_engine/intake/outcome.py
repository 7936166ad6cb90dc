"""IntakeError → FHIR OperationOutcome JSON (the body of every 4xx answer to bad input)."""

from __future__ import annotations

from typing import Any

from audit_engine.errors import InputIssue, IntakeError

# OperationOutcome.issue.code values (http://hl7.org/fhir/issue-type) this engine uses.
ISSUE_CODES = frozenset({
    "invalid", "structure", "required", "value", "invariant", "code-invalid", "not-supported",
    "too-long", "too-costly", "business-rule", "informational", "processing",
})


def issue_json(issue: InputIssue) -> dict[str, Any]:
    """One OperationOutcome.issue."""
    out: dict[str, Any] = {
        "severity": issue.severity if issue.severity in ("fatal", "error", "warning", "information") else "error",
        "code": issue.code if issue.code in ISSUE_CODES else "invalid",
        "diagnostics": issue.message,
    }
    if issue.expression:
        out["expression"] = [issue.expression]
    return out


def operation_outcome(error: IntakeError, warnings: tuple[InputIssue, ...] | list[InputIssue] = ()) -> dict[str, Any]:
    """The OperationOutcome for ``error`` (Chinese diagnostics, FHIRPath expressions); ``warnings`` appended."""
    return {
        "resourceType": "OperationOutcome",
        "issue": [issue_json(i) for i in (*error.issues, *warnings)],
    }
