"""The clinical content of a submission, and its canonical hash (idempotency by content).

A resubmission with the same prescription identifier is a replay only when it carries the
same clinical content: the same orders and doses, the same patient, encounter, prescriber,
diagnoses, allergies, observations and medications. Envelope fields that differ between two
sends of one prescription do not count:

* CDS Hooks: ``hook``, ``hookInstance``, ``fhirServer``, ``fhirAuthorization``;
* every Bundle's own fields (``id``, ``meta``, ``timestamp``, ``identifier``, ``type``,
  ``total``, ``link``, entry ``fullUrl`` / ``request`` / ``search`` / ``response``): only the
  entries' resources count;
* every resource's ``meta`` (versionId, lastUpdated, tags) and ``text`` (generated narrative).

The hash does not depend on the order of resources or of JSON keys, and a number written
``40`` or ``40.0`` is the same number. It is computed from the submitted JSON, before and
independently of parsing, so it exists even when a later stage fails. Resource ids and
references stay in: findings name orders by them.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

# Keys of a CDS Hooks request (or any non-resource wrapper) that are transport, not content.
ENVELOPE_KEYS = frozenset({"hook", "hookInstance", "fhirServer", "fhirAuthorization"})
# Resource-level elements that are bookkeeping, not clinical content.
RESOURCE_BOOKKEEPING = frozenset({"meta", "text"})


def content_hash(payload: dict[str, Any]) -> str:
    """``sha256:<hex>`` of the canonical clinical content of ``payload`` (any submission kind)."""
    resources: list[str] = []
    scalars: list[str] = []
    _collect(payload, "", resources, scalars)
    doc = {"resources": sorted(resources), "context": sorted(scalars)}
    text = json.dumps(doc, ensure_ascii=False, sort_keys=True, separators=(",", ":"))
    return "sha256:" + hashlib.sha256(text.encode("utf-8")).hexdigest()


def _collect(node: Any, path: str, resources: list[str], scalars: list[str]) -> None:
    """Resources (canonical JSON) and non-resource context values (``path=value``) under ``node``."""
    if isinstance(node, list):
        for value in node:
            _collect(value, path, resources, scalars)
        return
    if not isinstance(node, dict):
        if node is not None and path:
            scalars.append(f"{path}={_canonical(node)}")
        return
    rtype = node.get("resourceType")
    if rtype == "Bundle":
        for entry in node.get("entry") or []:
            if isinstance(entry, dict):
                _collect(entry.get("resource"), path, resources, scalars)
        return
    if isinstance(rtype, str):
        resources.append(_canonical(node))
        return
    for key, value in node.items():
        if key not in ENVELOPE_KEYS:
            _collect(value, f"{path}.{key}" if path else str(key), resources, scalars)


def _strip(value: Any) -> Any:
    """A copy without resource bookkeeping (``meta``, ``text``), contained resources included,
    and with integral floats written as integers."""
    if isinstance(value, dict):
        is_resource = isinstance(value.get("resourceType"), str)
        return {
            k: _strip(v) for k, v in value.items() if not (is_resource and k in RESOURCE_BOOKKEEPING)
        }
    if isinstance(value, list):
        return [_strip(v) for v in value]
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return value


def _canonical(value: Any) -> str:
    return json.dumps(_strip(value), ensure_ascii=False, sort_keys=True, separators=(",", ":"), default=str)
