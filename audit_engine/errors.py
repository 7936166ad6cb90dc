"""The one exception tree of the engine. Every error carries where it happened."""

from __future__ import annotations

import unicodedata
from dataclasses import dataclass


def display_width(text: str) -> int:
    """Terminal columns ``text`` occupies: CJK wide and full-width characters take two."""
    return sum(2 if unicodedata.east_asian_width(ch) in ("W", "F") else 1 for ch in text)


class AuditEngineError(Exception):
    """Root of every error the engine raises on purpose."""


@dataclass(frozen=True, slots=True)
class Diagnostic:
    """One author-facing problem in rule text: ``file:line:col``, the line, a caret, a hint."""

    file: str
    line: int
    col: int
    message: str
    source_line: str = ""
    hint: str | None = None
    end_col: int | None = None

    def render(self) -> str:
        head = f"{self.file}:{self.line}:{self.col}: {self.message}"
        if self.hint:
            head += f" ({self.hint})"
        if not self.source_line:
            return head
        # Columns count characters; the caret is placed by display width so that it stays
        # under the problem when the line holds Chinese (double-width) characters.
        start = self.col - 1
        end = max(self.col, self.end_col or self.col + 1) - 1
        lead = display_width(self.source_line[:start].expandtabs(1))
        width = max(1, display_width(self.source_line[start:end]))
        caret = " " * lead + "^" * width
        return f"{head}\n    {self.source_line}\n    {caret}"


class RulebaseError(AuditEngineError):
    """A rulebase failed to parse or check; holds every diagnostic found, not just the first."""

    def __init__(self, diagnostics: list[Diagnostic]) -> None:
        self.diagnostics = diagnostics
        super().__init__("\n".join(d.render() for d in diagnostics))


@dataclass(frozen=True, slots=True)
class InputIssue:
    """One problem with submitted FHIR input; ``expression`` is the FHIRPath of the element."""

    code: str  # OperationOutcome issue code: invalid, structure, required, value, too-long, not-supported ...
    message: str
    expression: str | None = None
    severity: str = "error"


class IntakeError(AuditEngineError):
    """Submitted input is not an acceptable prescription; becomes an OperationOutcome.

    ``status`` is the HTTP status to answer with: 400, 413 or 422.
    """

    def __init__(self, issues: list[InputIssue], status: int = 422) -> None:
        self.issues = issues
        self.status = status
        super().__init__("; ".join(f"{i.expression or '-'}: {i.message}" for i in issues))


class BudgetExceededError(AuditEngineError):
    """A review ran past its time budget; ``stage`` (intake, facts, engine) is where it stopped."""

    def __init__(self, stage: str, budget_ms: float, elapsed_ms: float) -> None:
        self.stage = stage
        self.location = f"review/{stage}"
        self.budget_ms = budget_ms
        self.elapsed_ms = elapsed_ms
        super().__init__(f"审核超出时间预算 {budget_ms:.0f} ms（在 {stage} 阶段已用 {elapsed_ms:.0f} ms），未完成审核")


class ServiceError(AuditEngineError):
    """A request the review service refuses; ``location`` names the record ("Task/<id>", "Review/<id>")."""

    status = 400

    def __init__(self, location: str, message: str) -> None:
        self.location = location
        self.message = message
        super().__init__(f"{location}: {message}")


class AuthenticationError(ServiceError):
    """Missing, unknown, expired or revoked credentials (HTTP 401)."""

    status = 401


class AccessDeniedError(ServiceError):
    """The caller is known but may not do this, or may not see that record (HTTP 403)."""

    status = 403


class NotFoundError(ServiceError):
    """No such record, or none the caller may see (HTTP 404)."""

    status = 404


class TransitionError(ServiceError):
    """An illegal move in the recheck state machine; nothing was changed (HTTP 409)."""

    status = 409


class LimitExceededError(ServiceError):
    """A request that would pass a configured limit (e.g. active webhook subscriptions); HTTP 409."""

    status = 409


class InvalidRequestError(ServiceError):
    """A well-formed request with values the service cannot accept (HTTP 422)."""

    status = 422


class MissingReasonError(InvalidRequestError):
    """A decision or answer that needs a reason came without one (HTTP 422, at ``reason``)."""

    field = "reason"
    issue_code = "required"
