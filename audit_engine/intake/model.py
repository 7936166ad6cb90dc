"""What intake hands to fact normalisation: validated R4B resources, grouped by role."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from audit_engine.errors import InputIssue


@dataclass(frozen=True, slots=True)
class ResourceEntry:
    """One validated resource and where it was in the input.

    ``resource`` is a ``fhir.resources.R4B`` model instance; ``path`` is the FHIRPath-like
    location of the resource in the submitted JSON (``Bundle.entry[2].resource``), so a
    fact issue can name the element it is about.
    """

    resource: Any
    path: str

    @property
    def id(self) -> str | None:
        return getattr(self.resource, "id", None)

    @property
    def type(self) -> str:
        return str(self.resource.get_resource_type())


@dataclass(frozen=True, slots=True)
class Intake:
    """One submission, validated and grouped.

    ``orders`` are the MedicationRequests under review (draft or active orders of the
    current prescription); ``context_orders`` every other MedicationRequest seen (history).
    ``warnings`` record legacy shapes that were accepted and upgraded (never silent).
    ``prescription_id`` is the idempotency key: the orders' groupIdentifier, else the
    Bundle identifier, else a stable hash of the orders' identifiers (see ``selection``).
    """

    kind: str  # "bundle", "cds" or "medication_request"
    orders: tuple[ResourceEntry, ...]
    context_orders: tuple[ResourceEntry, ...] = ()
    patient: ResourceEntry | None = None
    encounter: ResourceEntry | None = None
    practitioners: tuple[ResourceEntry, ...] = ()
    practitioner_roles: tuple[ResourceEntry, ...] = ()
    organizations: tuple[ResourceEntry, ...] = ()
    conditions: tuple[ResourceEntry, ...] = ()
    allergies: tuple[ResourceEntry, ...] = ()
    observations: tuple[ResourceEntry, ...] = ()
    medications: tuple[ResourceEntry, ...] = ()
    prescription_id: str | None = None
    user_id: str | None = None
    conditions_supplied: bool = False  # a diagnosis list was sent (possibly empty): "none" is then a fact
    allergies_supplied: bool = False  # likewise for allergies (CDS prefetch ``allergies`` key)
    warnings: tuple[InputIssue, ...] = ()

    def find(self, reference: str | None) -> ResourceEntry | None:
        """The resource a literal (``Type/id``, ``urn:uuid:``) or conditional (``Type?identifier=s|v``) reference names."""
        if not reference:
            return None
        for entry in self._all():
            if matches_reference(entry, reference):
                return entry
        return None

    def _all(self) -> tuple[ResourceEntry, ...]:
        single = tuple(e for e in (self.patient, self.encounter) if e is not None)
        return (
            *self.orders, *self.context_orders, *single, *self.practitioners, *self.practitioner_roles,
            *self.organizations, *self.conditions, *self.allergies, *self.observations, *self.medications,
        )


def matches_reference(entry: ResourceEntry, reference: str) -> bool:
    rtype = entry.type
    rid = entry.id
    if reference.startswith("urn:uuid:") or reference.startswith("urn:oid:"):
        return rid is not None and reference.rsplit(":", 1)[-1] == rid
    if "?" in reference:
        # Conditional reference, as Synthea writes requesters: Practitioner?identifier=system|value
        head, _, query = reference.partition("?")
        if head != rtype:
            return False
        for part in query.split("&"):
            key, _, want = part.partition("=")
            if key != "identifier":
                continue
            system, bar, value = want.rpartition("|")
            for ident in getattr(entry.resource, "identifier", None) or []:
                if ident.value == value and (not bar or (ident.system or "") == system):
                    return True
        return False
    tail = reference.rstrip("/").split("/")
    if len(tail) >= 2 and "_history" in tail:
        tail = tail[: tail.index("_history")]
    if len(tail) >= 2:
        return tail[-2] == rtype and tail[-1] == rid
    return tail[-1] == rid


def resource_dict(entry: ResourceEntry) -> dict[str, Any]:
    """The resource as JSON-ready dict (for storage or debugging)."""
    return dict(entry.resource.model_dump(mode="json", exclude_none=True))
