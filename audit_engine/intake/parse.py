"""The three accepted inputs: a FHIR R4 Bundle, a single MedicationRequest, a CDS Hooks request.

Each checks the limits, upgrades the listed legacy shapes (``legacy``), validates every
resource the facts read with the R4B models (``validate``), reports *all* problems at
once as one IntakeError (422, FHIRPath expressions), then groups the resources and
selects the orders under review (``selection``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from audit_engine.errors import InputIssue, IntakeError

from .legacy import upgrade_resource
from .limits import check_orders, check_raw_orders, check_structure
from .model import Intake, ResourceEntry, matches_reference
from .selection import REVIEWABLE, authored_key, prescription_identifier, select_bundle_orders
from .validate import validate_resource

BUNDLE_TYPES = ("collection", "transaction", "searchset", "batch")
CDS_HOOKS = ("order-sign", "order-select", "medication-prescribe")
_GROUP_FIELD = {
    "MedicationRequest": "orders",
    "Patient": "patients",
    "Encounter": "encounters",
    "Practitioner": "practitioners",
    "PractitionerRole": "practitioner_roles",
    "Organization": "organizations",
    "Condition": "conditions",
    "AllergyIntolerance": "allergies",
    "Observation": "observations",
    "Medication": "medications",
}


@dataclass
class _Collector:
    """Gathers validated resources by type and every problem found on the way."""

    issues: list[InputIssue] = field(default_factory=list)
    warnings: list[InputIssue] = field(default_factory=list)
    groups: dict[str, list[ResourceEntry]] = field(default_factory=dict)

    def add(self, data: Any, path: str) -> ResourceEntry | None:
        data = upgrade_resource(data, path, self.warnings)
        entry = validate_resource(data, path, self.issues)
        if entry is not None:
            self.groups.setdefault(_GROUP_FIELD[entry.type], []).append(entry)
        return entry

    def get(self, name: str) -> list[ResourceEntry]:
        return self.groups.get(name, [])

    def raise_if_any(self) -> None:
        if self.issues:
            raise IntakeError(self.issues, status=422)

    def add_bundle_entries(self, bundle: dict[str, Any], base: str, *, bare_ok: bool) -> None:
        entries = bundle.get("entry", [])
        if not isinstance(entries, list):
            self.issues.append(InputIssue("structure", "entry 应为数组", expression=f"{base}.entry"))
            return
        for i, entry in enumerate(entries):
            where = f"{base}.entry[{i}]"
            if not isinstance(entry, dict):
                self.issues.append(InputIssue("structure", "Bundle 条目应为 JSON 对象", expression=where))
                continue
            if "resource" in entry:
                self.add(entry["resource"], f"{where}.resource")
            elif bare_ok and "resourceType" in entry:
                self.warnings.append(InputIssue(
                    "informational", "已按旧格式兼容处理：条目直接是资源，未包在 resource 中",
                    expression=where, severity="warning"))
                self.add(entry, where)
            elif isinstance(entry.get("request"), dict) and entry["request"].get("method") == "DELETE":
                continue  # a transaction DELETE carries no resource and says nothing about the prescription
            else:
                self.issues.append(InputIssue("required", "Bundle 条目缺少 resource", expression=f"{where}.resource"))


def _require_type(payload: Any, expected: str, hint: str) -> None:
    if not isinstance(payload, dict):
        raise IntakeError([InputIssue("structure", f"应为 {expected} JSON 对象")], status=422)
    actual = payload.get("resourceType")
    if actual != expected:
        raise IntakeError([InputIssue(
            "structure", f"resourceType 应为 {expected}，收到 {actual!r}（{hint}）", expression="resourceType")], status=422)


def _one_subject(orders: list[ResourceEntry], issues: list[InputIssue]) -> str | None:
    subjects = {getattr(o.resource.subject, "reference", None) for o in orders if o.resource.subject is not None}
    subjects.discard(None)
    if len(subjects) > 1:
        issues.append(InputIssue(
            "business-rule", "同一张处方的医嘱属于不同患者：" + "、".join(sorted(str(s) for s in subjects)),
            expression=f"{orders[0].path}.subject"))
    return next(iter(subjects)) if len(subjects) == 1 else None


def _assemble(
    kind: str,
    c: _Collector,
    orders: list[ResourceEntry],
    context_orders: list[ResourceEntry],
    anchor: ResourceEntry | None,
    *,
    bundle_identifier: Any = None,
    patient_ref: str | None = None,
    encounter_ref: str | None = None,
    user_id: str | None = None,
    conditions_supplied: bool = False,
    allergies_supplied: bool = False,
) -> Intake:
    check_orders(orders)  # before anything else is done with them: pair work grows with the square
    subject = _one_subject(orders, c.issues)
    c.raise_if_any()
    patient = _pick(c.get("patients"), [subject, patient_ref])
    anchor_enc = getattr(getattr(anchor.resource, "encounter", None), "reference", None) if anchor else None
    encounter = _pick(c.get("encounters"), [anchor_enc, encounter_ref])
    return Intake(
        kind=kind,
        orders=tuple(orders),
        context_orders=tuple(context_orders),
        patient=patient,
        encounter=encounter,
        practitioners=tuple(c.get("practitioners")),
        practitioner_roles=tuple(c.get("practitioner_roles")),
        organizations=tuple(c.get("organizations")),
        conditions=tuple(c.get("conditions")),
        allergies=tuple(c.get("allergies")),
        observations=tuple(c.get("observations")),
        medications=tuple(c.get("medications")),
        prescription_id=prescription_identifier(orders, anchor, bundle_identifier),
        user_id=user_id,
        conditions_supplied=conditions_supplied or bool(c.get("conditions")),
        allergies_supplied=allergies_supplied or bool(c.get("allergies")),
        warnings=tuple(c.warnings),
    )


def _pick(candidates: list[ResourceEntry], refs: list[str | None]) -> ResourceEntry | None:
    """The candidate a reference names; else the only candidate; else None (ambiguous)."""
    for ref in refs:
        if not ref:
            continue
        # a bare id (CDS ``patientId: "f001"``) names a resource of the candidates' type
        for cand in candidates:
            if matches_reference(cand, ref) or cand.id == ref:
                return cand
    return candidates[0] if len(candidates) == 1 else None


def parse_bundle(payload: dict[str, Any]) -> Intake:
    """A FHIR R4 Bundle (collection, transaction, searchset or batch) holding the prescription."""
    _require_type(payload, "Bundle", "单条医嘱请用 medication_request，CDS Hooks 请求请用 cds")
    check_structure(payload)
    check_raw_orders(payload, "Bundle", ("draft",))  # drafts, when present, are all under review
    c = _Collector()
    btype = payload.get("type")
    if btype not in BUNDLE_TYPES:
        c.issues.append(InputIssue(
            "not-supported", f"不支持的 Bundle.type {btype!r}；可用：" + "、".join(BUNDLE_TYPES), expression="Bundle.type"))
    c.add_bundle_entries(payload, "Bundle", bare_ok=True)
    c.raise_if_any()
    all_orders = c.get("orders")
    orders, context, anchor = select_bundle_orders(all_orders)
    if not orders:
        statuses = "、".join(sorted({str(o.resource.status) for o in all_orders})) or "无"
        raise IntakeError([InputIssue(
            "required", f"Bundle 中没有待审核的医嘱：需要 status 为 draft 或 active 的 MedicationRequest（收到的状态：{statuses}）",
            expression="Bundle.entry")], status=422)
    ident = payload.get("identifier")
    bundle_ident = _Ident(ident.get("system"), ident.get("value")) if isinstance(ident, dict) else None
    return _assemble("bundle", c, orders, context, anchor, bundle_identifier=bundle_ident)


@dataclass(frozen=True)
class _Ident:
    system: str | None
    value: str | None


def parse_medication_request(payload: dict[str, Any]) -> Intake:
    """A single MedicationRequest (draft or active); it is the whole prescription."""
    _require_type(payload, "MedicationRequest", "整张处方请用 Bundle")
    check_structure(payload)
    c = _Collector()
    entry = c.add(payload, "MedicationRequest")
    c.raise_if_any()
    assert entry is not None  # a MedicationRequest always validates into an entry or an issue
    if entry.resource.status not in REVIEWABLE:
        raise IntakeError([InputIssue(
            "business-rule", f"只审核 draft 或 active 的医嘱，此医嘱状态为 {entry.resource.status!r}",
            expression="MedicationRequest.status")], status=422)
    for i, contained in enumerate(payload.get("contained") or []):
        if isinstance(contained, dict) and contained.get("resourceType") in ("Medication",):
            c.add(contained, f"MedicationRequest.contained[{i}]")
    c.raise_if_any()
    return _assemble("medication_request", c, [entry], [], entry)


def _unwrap_prefetch(value: Any, where: str, c: _Collector) -> Any:
    # Legacy PDDI requests wrap each prefetch result as {"response": {...}, "resource": {...}}.
    if isinstance(value, dict) and "resourceType" not in value and "resource" in value:
        c.warnings.append(InputIssue(
            "informational", "已按旧格式兼容处理：预取结果包在 {response, resource} 中", expression=where, severity="warning"))
        return value["resource"]
    return value


def parse_cds_request(payload: dict[str, Any]) -> Intake:
    """A CDS Hooks 2.0 order-sign request: ``context.draftOrders`` plus the prefetch (every key optional)."""
    if not isinstance(payload, dict):
        raise IntakeError([InputIssue("structure", "CDS Hooks 请求应为 JSON 对象")], status=422)
    check_structure(payload)
    c = _Collector()
    hook = payload.get("hook")
    if hook not in CDS_HOOKS:
        c.issues.append(InputIssue(
            "not-supported", f"不支持的 hook {hook!r}；本服务处理 order-sign", expression="hook"))
    context = payload.get("context")
    if not isinstance(context, dict):
        raise IntakeError([*c.issues, InputIssue("required", "缺少 context", expression="context")], status=422)
    draft_key = "draftOrders"
    drafts = context.get("draftOrders")
    if drafts is None and "medications" in context:
        draft_key, drafts = "medications", context["medications"]
        c.warnings.append(InputIssue(
            "informational", "已按旧格式兼容处理：context.medications 视为 draftOrders",
            expression="context.medications", severity="warning"))
    if not isinstance(drafts, dict) or drafts.get("resourceType") != "Bundle":
        raise IntakeError([*c.issues, InputIssue(
            "required", "context.draftOrders 应为 MedicationRequest 的 Bundle", expression="context.draftOrders")],
            status=422)
    check_raw_orders(drafts, f"context.{draft_key}", REVIEWABLE)
    c.add_bundle_entries(drafts, f"context.{draft_key}", bare_ok=True)
    draft_orders = list(c.get("orders"))

    prefetch = payload.get("prefetch")
    if prefetch is None and isinstance(context.get("prefetch"), dict):
        prefetch = context["prefetch"]
        c.warnings.append(InputIssue("informational", "已按旧格式兼容处理：prefetch 写在 context 中",
                                     expression="context.prefetch", severity="warning"))
    conditions_supplied = allergies_supplied = False
    if prefetch is not None and not isinstance(prefetch, dict):
        c.issues.append(InputIssue("structure", "prefetch 应为 JSON 对象", expression="prefetch"))
    elif isinstance(prefetch, dict):
        base = "prefetch" if "prefetch" in payload else "context.prefetch"
        for key in sorted(prefetch):
            where = f"{base}.{key}"
            value = _unwrap_prefetch(prefetch[key], where, c)
            if value is None:  # the EHR could not prefetch this key: a missing fact, not an error
                continue
            if not isinstance(value, dict):
                c.issues.append(InputIssue("structure", "预取结果应为 FHIR 资源或 Bundle", expression=where))
            elif value.get("resourceType") == "Bundle":
                conditions_supplied |= key == "conditions"
                allergies_supplied |= key == "allergies"
                c.add_bundle_entries(value, where, bare_ok=True)
            else:
                c.add(value, where)
    c.raise_if_any()

    prefetched = c.get("orders")[len(draft_orders):]
    orders = [o for o in draft_orders if o.resource.status in REVIEWABLE]
    context_orders = [o for o in draft_orders if o.resource.status not in REVIEWABLE] + prefetched
    if not orders:
        raise IntakeError([InputIssue(
            "required", "draftOrders 中没有 status 为 draft 或 active 的 MedicationRequest",
            expression=f"context.{draft_key}.entry")], status=422)
    anchor = max(orders, key=authored_key)
    user_id = context.get("userId") or payload.get("user")
    patient_ref = context.get("patientId") or payload.get("patient")
    return _assemble(
        "cds", c, orders, context_orders, anchor,
        bundle_identifier=_ident_of(drafts.get("identifier")),
        patient_ref=patient_ref if isinstance(patient_ref, str) else None,
        encounter_ref=context.get("encounterId") if isinstance(context.get("encounterId"), str) else None,
        user_id=user_id if isinstance(user_id, str) else None,
        conditions_supplied=conditions_supplied,
        allergies_supplied=allergies_supplied,
    )


def _ident_of(ident: Any) -> _Ident | None:
    return _Ident(ident.get("system"), ident.get("value")) if isinstance(ident, dict) else None
