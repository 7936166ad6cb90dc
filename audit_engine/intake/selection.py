"""Which MedicationRequests are under review, and the prescription identifier.

Decision (documented in the README section on intake, tested in tests/intake):

* only ``draft`` and ``active`` orders can be under review; ``stopped``, ``completed``,
  ``cancelled`` ... orders are history and become context;
* in a CDS Hooks request every draft/active order in ``context.draftOrders`` is under review;
* in a Bundle, when some orders are ``draft`` the drafts are the prescription being
  signed and ``active`` orders are the patient's current medication (context); otherwise the
  *anchor* is the order with the latest ``authoredOn`` and the prescription is the anchor's
  group: the orders sharing its ``groupIdentifier``, else its ``encounter``, else its
  authoredOn date. Synthea patient Bundles hold active orders from many past encounters;
  only the latest encounter's orders are reviewed.

Prescription identifier (idempotency key): the anchor's ``groupIdentifier`` (``system|value``),
else the submitted Bundle's ``identifier``, else ``sha256:`` of the sorted order identifiers
(``system|value`` of each order's first identifier, else ``MedicationRequest/<id>``) and the
patient reference, so resending the same orders gives the same key.
"""

from __future__ import annotations

import hashlib
from datetime import UTC, date, datetime
from typing import Any

from .model import ResourceEntry

REVIEWABLE = ("draft", "active")


def authored_key(entry: ResourceEntry) -> float:
    """Sort key for an order's authoredOn: a UTC timestamp, or -inf when absent or partial."""
    value = getattr(entry.resource, "authoredOn", None)
    if isinstance(value, datetime):
        if value.tzinfo is None:
            value = value.replace(tzinfo=UTC)
        return value.timestamp()
    if isinstance(value, date):
        return datetime(value.year, value.month, value.day, tzinfo=UTC).timestamp()
    return float("-inf")


def _ident_key(ident: Any) -> str | None:
    if ident is None or not getattr(ident, "value", None):
        return None
    return f"{ident.system}|{ident.value}" if ident.system else str(ident.value)


def _ref(resource: Any, name: str) -> str | None:
    ref = getattr(resource, name, None)
    return getattr(ref, "reference", None) if ref is not None else None


def _authored_date(entry: ResourceEntry) -> str | None:
    value = getattr(entry.resource, "authoredOn", None)
    if value is None:
        return None
    return value.isoformat()[:10] if isinstance(value, (date, datetime)) else str(value)[:10]


def select_bundle_orders(
    orders: list[ResourceEntry],
) -> tuple[list[ResourceEntry], list[ResourceEntry], ResourceEntry | None]:
    """Split a Bundle's MedicationRequests into (under review, context, anchor)."""
    candidates = [o for o in orders if o.resource.status in REVIEWABLE]
    if not candidates:
        return [], list(orders), None
    drafts = [o for o in candidates if o.resource.status == "draft"]
    if drafts:
        chosen = drafts
        anchor = max(drafts, key=authored_key)
    else:
        anchor = max(candidates, key=authored_key)
        group = _ident_key(getattr(anchor.resource, "groupIdentifier", None))
        encounter = _ref(anchor.resource, "encounter")
        if group is not None:
            chosen = [o for o in candidates if _ident_key(getattr(o.resource, "groupIdentifier", None)) == group]
        elif encounter is not None:
            chosen = [o for o in candidates if _ref(o.resource, "encounter") == encounter]
        else:
            day = _authored_date(anchor)
            chosen = [o for o in candidates if _authored_date(o) == day]
    chosen_ids = {id(o) for o in chosen}
    return chosen, [o for o in orders if id(o) not in chosen_ids], anchor


def prescription_identifier(
    orders: list[ResourceEntry], anchor: ResourceEntry | None, bundle_identifier: Any | None
) -> str | None:
    """The idempotency key of the prescription made of ``orders`` (see the module docstring)."""
    if not orders:
        return None
    anchor = anchor or orders[0]
    group = _ident_key(getattr(anchor.resource, "groupIdentifier", None))
    if group is not None:
        return group
    from_bundle = _ident_key(bundle_identifier)
    if from_bundle is not None:
        return from_bundle
    keys = []
    for o in orders:
        idents = getattr(o.resource, "identifier", None) or []
        key = _ident_key(idents[0]) if idents else None
        keys.append(key or f"MedicationRequest/{o.id}")
    subject = _ref(anchor.resource, "subject") or ""
    digest = hashlib.sha256("\n".join([subject, *sorted(keys)]).encode("utf-8")).hexdigest()
    return f"sha256:{digest[:32]}"
