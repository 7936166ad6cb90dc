"""Size limits on submitted input: body size, entry count and orders per prescription (413),
nesting depth and JSON shape (422).

The limits are settings (``audit_engine.settings``, read once): a HIS that sends a whole
patient history must get a clear answer, never a worker stuck validating megabytes. The
order limit bounds the review itself: pairwise rules (interactions, duplicates, 十八反) look
at every ordered pair of orders, so their work grows with the square of the order count.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from audit_engine import settings
from audit_engine.errors import InputIssue, IntakeError

if TYPE_CHECKING:
    from .model import ResourceEntry


@dataclass(frozen=True, slots=True)
class IntakeLimits:
    """Limits on one submission; the defaults are the settings' (``audit_engine.settings``)."""

    max_body_bytes: int = settings.MAX_BODY_BYTES
    max_entries: int = settings.MAX_ENTRIES
    max_depth: int = settings.MAX_DEPTH
    max_orders: int = settings.MAX_ORDERS


def get_limits() -> IntakeLimits:
    """The limits in force: ``AUDIT_MAX_BODY_BYTES``, ``AUDIT_MAX_ENTRIES``, ``AUDIT_MAX_DEPTH`` and
    ``AUDIT_MAX_ORDERS`` (the process's settings) or the defaults."""
    s = settings.get_settings()
    return IntakeLimits(max_body_bytes=s.max_body_bytes, max_entries=s.max_entries, max_depth=s.max_depth,
                        max_orders=s.max_orders)


def check_limits(raw: bytes, limits: IntakeLimits | None = None) -> None:
    """Refuse a body larger than the limit (413) before anything parses it."""
    lim = limits or get_limits()
    if len(raw) > lim.max_body_bytes:
        raise IntakeError(
            [InputIssue("too-long", f"请求体 {len(raw)} 字节，超过上限 {lim.max_body_bytes} 字节；请只提交本张处方及其必要的患者信息")],
            status=413,
        )


def load_json(raw: bytes, limits: IntakeLimits | None = None) -> dict[str, Any]:
    """Check the size and parse the JSON object (400 / 413 / 422).

    Depth and entry count are checked by ``check_structure``, which every ``parse_*``
    function calls on the dict it gets, so they are not walked twice here.
    """
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
    return payload


class _TooDeepError(Exception):
    """Internal: the walk went past the depth limit."""


def _walk(node: Any, depth: int, max_depth: int) -> int:
    """Bundle entries under ``node`` (a CDS request nests several Bundles); raises _TooDeepError.

    Recursion stops at ``max_depth`` (64 by default), far below Python's own limit.
    """
    if depth > max_depth:
        raise _TooDeepError
    n = 0
    if type(node) is dict:
        entries = node.get("entry")
        if type(entries) is list:
            n += len(entries)
        values: Any = node.values()
    else:
        values = node
    for v in values:
        t = type(v)
        if t is dict or t is list:
            n += _walk(v, depth + 1, max_depth)
    return n


def check_structure(payload: dict[str, Any], limits: IntakeLimits | None = None) -> None:
    """Refuse a parsed payload nested deeper than the limit (422) or with too many entries (413)."""
    lim = limits or get_limits()
    try:
        n = _walk(payload, 1, lim.max_depth)
    except (_TooDeepError, RecursionError):
        raise IntakeError([InputIssue("structure", f"JSON 嵌套超过 {lim.max_depth} 层，不是合理的 FHIR 资源")],
                          status=422) from None
    if n > lim.max_entries:
        raise IntakeError(
            [InputIssue("too-costly", f"共 {n} 个 Bundle 条目，超过上限 {lim.max_entries} 个", expression="Bundle.entry")],
            status=413,
        )


def check_orders(orders: list[ResourceEntry], limits: IntakeLimits | None = None) -> None:
    """Refuse a prescription with more orders under review than the limit (413, ``too-costly``);
    the expression is the first order beyond the limit."""
    lim = limits or get_limits()
    if len(orders) > lim.max_orders:
        raise _too_many_orders(len(orders), lim.max_orders, orders[lim.max_orders].path)


def check_raw_orders(bundle: dict[str, Any], base: str, statuses: tuple[str, ...],
                     limits: IntakeLimits | None = None) -> None:
    """The same refusal as :func:`check_orders`, before validation, where the orders under
    review are known from the raw JSON alone: every entry of ``bundle`` (``base`` is its
    FHIRPath) that is a MedicationRequest with one of ``statuses``. Validating a refused
    request's thousand orders first would cost a second of CPU for nothing."""
    lim = limits or get_limits()
    entries = bundle.get("entry")
    if not isinstance(entries, list) or len(entries) <= lim.max_orders:
        return
    found: list[str] = []
    for i, entry in enumerate(entries):
        if not isinstance(entry, dict):
            continue
        resource, where = entry.get("resource"), f"{base}.entry[{i}].resource"
        if resource is None and "resourceType" in entry:
            resource, where = entry, f"{base}.entry[{i}]"
        if isinstance(resource, dict) and resource.get("resourceType") == "MedicationRequest" \
                and resource.get("status") in statuses:
            found.append(where)
    if len(found) > lim.max_orders:
        raise _too_many_orders(len(found), lim.max_orders, found[lim.max_orders])


def _too_many_orders(count: int, limit: int, first_beyond: str) -> IntakeError:
    return IntakeError(
        [InputIssue(
            "too-costly",
            f"本张处方共 {count} 条待审核医嘱（MedicationRequest），超过每张处方 {limit} 条的上限；"
            "请核对是否重复发送，或拆分为多张处方",
            expression=first_beyond,
        )],
        status=413,
    )
