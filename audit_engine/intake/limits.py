"""Size limits on submitted input: body size and entry count (413), nesting depth and JSON shape (422).

The limits are settings (environment variables, read once): a HIS that sends a whole
patient history must get a clear answer, never a worker stuck validating megabytes.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

from audit_engine.errors import InputIssue, IntakeError


@dataclass(frozen=True, slots=True)
class IntakeLimits:
    """Limits on one submission; defaults suit one prescription with its patient context."""

    max_body_bytes: int = 2 * 1024 * 1024
    max_entries: int = 2000
    max_depth: int = 64


def _env_int(name: str, default: int) -> int:
    raw = os.environ.get(name)
    if raw is None or not raw.strip():
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ValueError(f"{name} must be a positive integer, got {raw!r}") from None
    if value <= 0:
        raise ValueError(f"{name} must be a positive integer, got {raw!r}")
    return value


@lru_cache(maxsize=1)
def get_limits() -> IntakeLimits:
    """The limits in force: ``AUDIT_MAX_BODY_BYTES``, ``AUDIT_MAX_ENTRIES``, ``AUDIT_MAX_DEPTH`` or the defaults."""
    d = IntakeLimits()
    return IntakeLimits(
        max_body_bytes=_env_int("AUDIT_MAX_BODY_BYTES", d.max_body_bytes),
        max_entries=_env_int("AUDIT_MAX_ENTRIES", d.max_entries),
        max_depth=_env_int("AUDIT_MAX_DEPTH", d.max_depth),
    )


def check_limits(raw: bytes, limits: IntakeLimits | None = None) -> None:
    """Refuse a body larger than the limit (413) before anything parses it."""
    lim = limits or get_limits()
    if len(raw) > lim.max_body_bytes:
        raise IntakeError(
            [InputIssue("too-long", f"请求体 {len(raw)} 字节，超过上限 {lim.max_body_bytes} 字节；请只提交本张处方及其必要的患者信息")],
            status=413,
        )


def load_json(raw: bytes, limits: IntakeLimits | None = None) -> dict[str, Any]:
    """Check the size, parse JSON, and check depth and entry count: the service's one entry point for bytes."""
    lim = limits or get_limits()
    check_limits(raw, lim)
    try:
        payload = json.loads(raw)
    except RecursionError:
        raise IntakeError([InputIssue("structure", f"JSON 嵌套过深（上限 {lim.max_depth} 层）")], status=422) from None
    except (UnicodeDecodeError, ValueError) as exc:
        raise IntakeError([InputIssue("structure", f"不是有效的 JSON：{exc}")], status=400) from None
    if not isinstance(payload, dict):
        raise IntakeError([InputIssue("structure", f"请求体应为 JSON 对象，收到的是 {type(payload).__name__}")], status=422)
    check_structure(payload, lim)
    return payload


def _depth_exceeded(payload: Any, max_depth: int) -> bool:
    # Iterative, so a hostile document cannot exhaust the Python stack.
    stack: list[tuple[Any, int]] = [(payload, 1)]
    while stack:
        node, depth = stack.pop()
        if depth > max_depth:
            return True
        if isinstance(node, dict):
            stack.extend((v, depth + 1) for v in node.values() if isinstance(v, (dict, list)))
        elif isinstance(node, list):
            stack.extend((v, depth + 1) for v in node if isinstance(v, (dict, list)))
    return False


def _count_entries(payload: Any) -> int:
    """Bundle entries anywhere in the payload (a CDS request nests several Bundles)."""
    total = 0
    stack: list[Any] = [payload]
    while stack:
        node = stack.pop()
        if isinstance(node, dict):
            entries = node.get("entry")
            if isinstance(entries, list):
                total += len(entries)
            stack.extend(v for v in node.values() if isinstance(v, (dict, list)))
        elif isinstance(node, list):
            stack.extend(v for v in node if isinstance(v, (dict, list)))
    return total


def check_structure(payload: dict[str, Any], limits: IntakeLimits | None = None) -> None:
    """Refuse a parsed payload nested deeper than the limit (422) or with too many entries (413)."""
    lim = limits or get_limits()
    if _depth_exceeded(payload, lim.max_depth):
        raise IntakeError([InputIssue("structure", f"JSON 嵌套超过 {lim.max_depth} 层，不是合理的 FHIR 资源")], status=422)
    n = _count_entries(payload)
    if n > lim.max_entries:
        raise IntakeError(
            [InputIssue("too-costly", f"共 {n} 个 Bundle 条目，超过上限 {lim.max_entries} 个", expression="Bundle.entry")],
            status=413,
        )
