"""Deliberate acceptance of a few legacy (FHIR STU3) shapes that public CDS Hooks examples still send.

Decision: rather than refuse the HL7 PDDI CDS Hooks examples outright, intake upgrades a
short, closed list of STU3 shapes whose R4 meaning is unambiguous, and records every
upgrade as a warning (``InputIssue`` with severity ``warning``) on the Intake, so nothing
is changed silently. Everything outside this list still fails strict R4B validation with
a precise OperationOutcome. The list:

* ``dosageInstruction[i].doseQuantity|doseRange|rateQuantity|rateRatio|rateRange`` →
  ``dosageInstruction[i].doseAndRate[0].*`` (only when ``doseAndRate`` is absent);
* ``MedicationRequest.context`` (an Encounter reference) → ``encounter``;
* ``MedicationRequest.category`` as a single object → a one-element list;
* ``Condition``/``AllergyIntolerance`` ``clinicalStatus``/``verificationStatus`` as a bare
  code string → a CodeableConcept in the R4 code system; ``assertedDate`` → ``recordedDate``;
* ``AllergyIntolerance.reaction[].certainty`` is dropped (removed in R4, not read).

The request-level legacy layout (top-level ``patient``/``user``, ``context.medications``,
prefetch values wrapped as ``{"response", "resource"}``, bundle entries that are bare
resources) is handled in ``audit_engine.intake.parse``.
"""

from __future__ import annotations

from typing import Any

from audit_engine.errors import InputIssue

_DOSE_KEYS = ("doseQuantity", "doseRange", "rateQuantity", "rateRatio", "rateRange")
_STATUS_SYSTEMS = {
    ("Condition", "clinicalStatus"): "http://terminology.hl7.org/CodeSystem/condition-clinical",
    ("Condition", "verificationStatus"): "http://terminology.hl7.org/CodeSystem/condition-ver-status",
    ("AllergyIntolerance", "clinicalStatus"): "http://terminology.hl7.org/CodeSystem/allergyintolerance-clinical",
    ("AllergyIntolerance", "verificationStatus"): "http://terminology.hl7.org/CodeSystem/allergyintolerance-verification",
}


def _warn(warnings: list[InputIssue], where: str, text: str) -> None:
    warnings.append(InputIssue("informational", f"已按 STU3 旧格式兼容处理：{text}", expression=where, severity="warning"))


def upgrade_resource(data: Any, path: str, warnings: list[InputIssue]) -> Any:
    """``data`` with the listed STU3 shapes moved to R4; the input dict itself is never modified."""
    if not isinstance(data, dict):
        return data
    rtype = data.get("resourceType")
    if rtype == "MedicationRequest":
        return _upgrade_medication_request(data, path, warnings)
    if rtype in ("Condition", "AllergyIntolerance"):
        return _upgrade_status(data, rtype, path, warnings)
    return data


def _upgrade_medication_request(data: dict[str, Any], path: str, warnings: list[InputIssue]) -> dict[str, Any]:
    out = data
    dosages = data.get("dosageInstruction")
    if isinstance(dosages, list) and any(isinstance(d, dict) and any(k in d for k in _DOSE_KEYS) for d in dosages):
        new_dosages = []
        for i, dosage in enumerate(dosages):
            if isinstance(dosage, dict) and "doseAndRate" not in dosage and any(k in dosage for k in _DOSE_KEYS):
                moved = {k: dosage[k] for k in _DOSE_KEYS if k in dosage}
                dosage = {k: v for k, v in dosage.items() if k not in _DOSE_KEYS}
                dosage["doseAndRate"] = [moved]
                _warn(warnings, f"{path}.dosageInstruction[{i}]",
                      "、".join(moved) + " 已移入 doseAndRate[0]")
            new_dosages.append(dosage)
        out = {**out, "dosageInstruction": new_dosages}
    if isinstance(data.get("context"), dict) and "encounter" not in data:
        out = {k: v for k, v in out.items() if k != "context"}
        out["encounter"] = data["context"]
        _warn(warnings, f"{path}.context", "context 已按 R4 改为 encounter")
    if isinstance(data.get("category"), dict):
        out = {**out, "category": [data["category"]]}
        _warn(warnings, f"{path}.category", "category 单个对象已改为数组")
    return out


def _upgrade_status(data: dict[str, Any], rtype: str, path: str, warnings: list[InputIssue]) -> dict[str, Any]:
    out = data
    for key in ("clinicalStatus", "verificationStatus"):
        value = data.get(key)
        if isinstance(value, str):
            system = _STATUS_SYSTEMS[(rtype, key)]
            out = {**out, key: {"coding": [{"system": system, "code": value}]}}
            _warn(warnings, f"{path}.{key}", f"{key} 代码字符串已改为 CodeableConcept")
    if "assertedDate" in data and "recordedDate" not in data:
        out = {k: v for k, v in out.items() if k != "assertedDate"}
        out["recordedDate"] = data["assertedDate"]
        _warn(warnings, f"{path}.assertedDate", "assertedDate 已按 R4 改为 recordedDate")
    reactions = data.get("reaction")
    if rtype == "AllergyIntolerance" and isinstance(reactions, list) and any(
        isinstance(r, dict) and "certainty" in r for r in reactions
    ):
        out = {**out, "reaction": [{k: v for k, v in r.items() if k != "certainty"} if isinstance(r, dict) else r
                                   for r in reactions]}
        _warn(warnings, f"{path}.reaction", "reaction.certainty（R4 已删除）已忽略")
    return out
