"""Build realistic FHIR R4 prescription Bundles from compact scenario descriptions.

The clean and flagged fixtures under fixtures/fhir/ are generated from the scenario lists
in ``clean.py`` and ``flagged.py`` so that every file has the same, complete China-profile
shape (see ../shared/design/CONTRACT.md): Patient, Encounter, Organization, Practitioner
with title and rights, PractitionerRole, Conditions, allergies, observations and the
MedicationRequests under review. The JSON files are committed; this code only rewrites them.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

BASE = "https://his.demo-county.cn/fhir"
ATC = "http://www.whocc.no/atc"
ICD10 = "http://hl7.org/fhir/sid/icd-10"
LOINC = "http://loinc.org"
SNOMED = "http://snomed.info/sct"
UCUM = "http://unitsofmeasure.org"
RX_SYSTEM = "https://his.demo-county.cn/prescription-no"
AUTHORED = "2026-11-23"
TODAY = AUTHORED

# Chinese route text -> SNOMED CT route code and English display.
ROUTES: dict[str, tuple[str, str]] = {
    "口服": ("26643006", "Oral route"),
    "静滴": ("47625008", "Intravenous route"),
    "静注": ("47625008", "Intravenous route"),
    "肌注": ("78421000", "Intramuscular route"),
    "皮下": ("34206005", "Subcutaneous route"),
    "外用": ("6064005", "Topical route"),
    "吸入": ("447694001", "Respiratory tract route"),
    "舌下": ("37839007", "Sublingual route"),
    "直肠": ("37161004", "Rectal route"),
    "含服": ("54471007", "Buccal route"),
    "煎服": ("26643006", "Oral route"),
}

UCUM_CODES = {"mg": "mg", "g": "g", "µg": "ug", "mL": "mL", "IU": "[iU]", "万IU": "10*4.[iU]", "片": "{tbl}", "粒": "{cap}", "袋": "{bag}"}

ORG_IDS = {"县级医院": "org-county", "乡镇卫生院": "org-township", "社区卫生服务中心": "org-community", "村卫生室": "org-village"}
ORG_NAMES = {
    "县级医院": "示范县人民医院",
    "乡镇卫生院": "示范县青山镇卫生院",
    "社区卫生服务中心": "示范县城东社区卫生服务中心",
    "村卫生室": "示范县青山镇柳塘村卫生室",
}
ORG_CODES = {"县级医院": "DC-0001", "乡镇卫生院": "DC-1203", "社区卫生服务中心": "DC-2101", "村卫生室": "DC-1203-07"}


@dataclass(frozen=True)
class Med:
    """One drug line: what a doctor writes on the prescription."""

    name: str  # Chinese generic name as printed
    atc: str | None  # ATC code, None for decoction pieces
    dose: float | None
    unit: str | None
    freq: int | None = 1  # administrations per period
    period: float = 1
    period_unit: str = "d"
    route: str | None = "口服"
    days: int | None = 7
    form: str | None = None  # e.g. 缓释片, appended to the text
    prn: bool = False
    status: str = "active"
    long_term: bool = False
    note: str | None = None  # e.g. the stated reason for an above-label dose
    key: str | None = None  # MedicationRequest id suffix; default derived from the ATC / name
    text: str | None = None  # the name as the HIS prints it (盐酸吗啡片), instead of name + form
    medication_form: str | None = None  # Medication.form text: the order references a contained Medication
    form_display: str | None = None  # a dose-form coding's display in Medication.form (EDQM standard term)


@dataclass(frozen=True)
class Scenario:
    """One prescription: who, where, for whom, for what, and which drugs."""

    name: str
    description: str
    department: str
    level: str = "县级医院"
    title: str = "主治医师"
    rights: tuple[str, ...] = ()
    encounter: str = "AMB"  # AMB 门诊, EMER 急诊
    sex: str = "male"
    birth: str = "1980-05-12"
    weight: float | None = None
    height: float | None = None
    egfr: float | None = None
    creatinine_mg_dl: float | None = None
    pregnant: bool | None = None
    lactating: bool = False
    conditions: tuple[tuple[str, str], ...] = ()  # (ICD-10 code, Chinese display)
    allergies: tuple[tuple[str | None, str], ...] = ()  # (ATC or None, Chinese substance text)
    allergy_codes: tuple[dict[str, Any], ...] = ()  # AllergyIntolerance.code as a HIS sends it (SNOMED CT, free text)
    meds: tuple[Med, ...] = ()
    expect: dict[str, Any] = field(default_factory=dict)  # flagged only


def _ref(kind: str, rid: str) -> dict[str, str]:
    return {"reference": f"{kind}/{rid}"}


def _entry(resource: dict[str, Any]) -> dict[str, Any]:
    return {"fullUrl": f"{BASE}/{resource['resourceType']}/{resource['id']}", "resource": resource}


def _quantity(value: float, unit: str) -> dict[str, Any]:
    q: dict[str, Any] = {"value": value, "unit": unit, "system": UCUM}
    q["code"] = UCUM_CODES.get(unit, unit)
    return q


def _med_id(med: Med, index: int) -> str:
    if med.key:
        return f"mr-{med.key}"
    return f"mr-{index + 1}-{(med.atc or 'herb').lower()}"


def _medication_request(s: Scenario, med: Med, index: int, rx_no: str) -> dict[str, Any]:
    text = med.text or med.name + (med.form or "")
    concept: dict[str, Any] = {"text": text}
    if med.atc:
        concept["coding"] = [{"system": ATC, "code": med.atc, "display": med.name}]
    dosage: dict[str, Any] = {"sequence": 1}
    parts: list[str] = []
    if med.freq is not None:
        repeat = {"frequency": med.freq, "period": med.period, "periodUnit": med.period_unit}
        dosage["timing"] = {"repeat": repeat}
        parts.append(f"每{'' if med.period == 1 else int(med.period)}{'日' if med.period_unit == 'd' else '小时' if med.period_unit == 'h' else '周'}{med.freq}次")
    if med.route is not None:
        code, display = ROUTES[med.route]
        dosage["route"] = {"coding": [{"system": SNOMED, "code": code, "display": display}], "text": med.route}
        parts.insert(0, med.route)
    if med.dose is not None and med.unit is not None:
        dosage["doseAndRate"] = [{"doseQuantity": _quantity(med.dose, med.unit)}]
        parts.append(f"每次{med.dose:g}{med.unit}")
    if med.prn:
        dosage["asNeededBoolean"] = True
        parts.append("必要时")
    dosage["text"] = "，".join(parts)
    mr: dict[str, Any] = {
        "resourceType": "MedicationRequest",
        "id": _med_id(med, index),
        "status": med.status,
        "intent": "order",
        "groupIdentifier": {"system": RX_SYSTEM, "value": rx_no},
        "medicationCodeableConcept": concept,
        "subject": _ref("Patient", "pat"),
        "encounter": _ref("Encounter", "enc"),
        "authoredOn": AUTHORED,
        "requester": _ref("Practitioner", "doc"),
        "reasonReference": [_ref("Condition", f"cond-{i + 1}") for i in range(len(s.conditions))][:2],
        "dosageInstruction": [dosage],
    }
    if not mr["reasonReference"]:
        del mr["reasonReference"]
    if med.medication_form is not None or med.form_display is not None:
        form: dict[str, Any] = {}
        if med.form_display:
            form["coding"] = [{"system": "http://standardterms.edqm.eu", "display": med.form_display}]
        if med.medication_form:
            form["text"] = med.medication_form
        mr["contained"] = [{"resourceType": "Medication", "id": "med", "code": concept, "form": form}]
        mr["medicationReference"] = {"reference": "#med", "display": text}
        del mr["medicationCodeableConcept"]
    if med.long_term:
        mr["category"] = [{"text": "长期处方"}]
        mr["courseOfTherapyType"] = {
            "coding": [{
                "system": "http://terminology.hl7.org/CodeSystem/medicationrequest-course-of-therapy",
                "code": "continuous",
                "display": "Continuous long term therapy",
            }],
            "text": "长期处方",
        }
    if med.note:
        mr["note"] = [{"text": med.note}]
    if med.days is not None:
        mr["dispenseRequest"] = {"expectedSupplyDuration": {"value": med.days, "unit": "天", "system": UCUM, "code": "d"}}
    return mr


def _observation(oid: str, loinc: str, display: str, value: dict[str, Any], key: str) -> dict[str, Any]:
    return {
        "resourceType": "Observation",
        "id": oid,
        "status": "final",
        "code": {"coding": [{"system": LOINC, "code": loinc, "display": display}], "text": display},
        "subject": _ref("Patient", "pat"),
        "effectiveDateTime": AUTHORED,
        key: value,
    }


def bundle(s: Scenario, serial: int) -> dict[str, Any]:
    """The FHIR R4 collection Bundle for scenario ``s``."""
    rx_no = f"RX{AUTHORED.replace('-', '')}{serial:04d}"
    org_id = ORG_IDS[s.level]
    resources: list[dict[str, Any]] = []
    resources.append({
        "resourceType": "Patient",
        "id": "pat",
        "identifier": [{"system": f"{BASE}/mrn", "value": f"MRN{serial:06d}"}],
        "gender": s.sex,
        **({"birthDate": s.birth} if s.birth else {}),
    })
    resources.append({
        "resourceType": "Organization",
        "id": org_id,
        "identifier": [{"system": f"{BASE}/institution", "value": ORG_CODES[s.level]}],
        "type": [{"text": s.level}],
        "name": ORG_NAMES[s.level],
    })
    resources.append({
        "resourceType": "Encounter",
        "id": "enc",
        "status": "in-progress",
        "class": {
            "system": "http://terminology.hl7.org/CodeSystem/v3-ActCode",
            "code": s.encounter,
            "display": "ambulatory" if s.encounter == "AMB" else "emergency",
        },
        "serviceType": {"text": s.department},
        "subject": _ref("Patient", "pat"),
        "serviceProvider": _ref("Organization", org_id),
    })
    qualifications = [{"code": {"text": s.title}}] + [{"code": {"text": r}} for r in s.rights]
    resources.append({
        "resourceType": "Practitioner",
        "id": "doc",
        "name": [{"text": "王医生"}],
        "qualification": qualifications,
    })
    resources.append({
        "resourceType": "PractitionerRole",
        "id": "doc-role",
        "practitioner": _ref("Practitioner", "doc"),
        "organization": _ref("Organization", org_id),
        "specialty": [{"text": s.department}],
    })
    for i, (code, display) in enumerate(s.conditions):
        resources.append({
            "resourceType": "Condition",
            "id": f"cond-{i + 1}",
            "clinicalStatus": {"coding": [{
                "system": "http://terminology.hl7.org/CodeSystem/condition-clinical", "code": "active"}]},
            "code": {"coding": [{"system": ICD10, "code": code, "display": display}], "text": display},
            "subject": _ref("Patient", "pat"),
        })
    allergy_concepts: list[dict[str, Any]] = []
    for atc, text in s.allergies:
        substance: dict[str, Any] = {"text": text}
        if atc:
            substance["coding"] = [{"system": ATC, "code": atc, "display": text}]
        allergy_concepts.append(substance)
    for i, substance in enumerate([*allergy_concepts, *s.allergy_codes]):
        resources.append({
            "resourceType": "AllergyIntolerance",
            "id": f"allergy-{i + 1}",
            "clinicalStatus": {"coding": [{
                "system": "http://terminology.hl7.org/CodeSystem/allergyintolerance-clinical", "code": "active"}]},
            "category": ["medication"],
            "code": substance,
            "patient": _ref("Patient", "pat"),
        })
    if s.weight is not None:
        resources.append(_observation("obs-weight", "29463-7", "体重", _quantity_ucum(s.weight, "kg", "kg"), "valueQuantity"))
    if s.height is not None:
        resources.append(_observation("obs-height", "8302-2", "身高", _quantity_ucum(s.height, "cm", "cm"), "valueQuantity"))
    if s.egfr is not None:
        resources.append(_observation(
            "obs-egfr", "33914-3", "估算肾小球滤过率",
            _quantity_ucum(s.egfr, "mL/min/1.73m2", "mL/min/{1.73_m2}"), "valueQuantity"))
    if s.creatinine_mg_dl is not None:
        resources.append(_observation(
            "obs-creatinine", "2160-0", "血肌酐", _quantity_ucum(s.creatinine_mg_dl, "mg/dL", "mg/dL"), "valueQuantity"))
    if s.pregnant is not None:
        value = ({"coding": [{"system": SNOMED, "code": "77386006", "display": "Pregnant"}], "text": "妊娠"}
                 if s.pregnant else
                 {"coding": [{"system": SNOMED, "code": "60001007", "display": "Not pregnant"}], "text": "未孕"})
        resources.append(_observation("obs-pregnancy", "82810-3", "妊娠状态", value, "valueCodeableConcept"))
    if s.lactating:
        value = {"coding": [{"system": SNOMED, "code": "413712001", "display": "Breastfeeding (mother)"}], "text": "哺乳期"}
        resources.append(_observation("obs-lactation", "63895-7", "哺乳状态", value, "valueCodeableConcept"))
    for i, med in enumerate(s.meds):
        resources.append(_medication_request(s, med, i, rx_no))
    return {
        "resourceType": "Bundle",
        "id": f"rx-{s.name.replace('_', '-')}"[:64],
        "meta": {"tag": [{"system": f"{BASE}/fixture", "code": "seed-rulebase", "display": s.description}]},
        "identifier": {"system": RX_SYSTEM, "value": rx_no},
        "type": "collection",
        "timestamp": f"{AUTHORED}T09:30:00+08:00",
        "entry": [_entry(r) for r in resources],
    }


def _quantity_ucum(value: float, unit: str, code: str) -> dict[str, Any]:
    return {"value": value, "unit": unit, "system": UCUM, "code": code}


def write(scenarios: list[Scenario], folder: Path, *, serial_base: int, with_expect: bool) -> list[Path]:
    """Write one Bundle per scenario (and its .expect.json when flagged); returns the paths."""
    folder.mkdir(parents=True, exist_ok=True)
    names = [s.name for s in scenarios]
    duplicates = {n for n in names if names.count(n) > 1}
    if duplicates:
        raise ValueError(f"duplicate scenario names: {sorted(duplicates)}")
    written: list[Path] = []
    for n, s in enumerate(scenarios):
        path = folder / f"{s.name}.json"
        data = bundle(s, serial_base + n)
        path.write_text(json.dumps(data, ensure_ascii=False, indent=2) + "\n", encoding="utf-8")
        written.append(path)
        if with_expect:
            expect = dict(s.expect)
            implicated = [f"MedicationRequest/{_med_id(s.meds[i], i)}" for i in expect.pop("implicated_items", [])]
            sidecar = {
                "description": s.description,
                "today": TODAY,
                "expected_rule_ids": expect.pop("rule_ids"),
                "expected_implicated": implicated,
                "minimum_verdict": expect.pop("minimum_verdict", "explain"),
                "minimum_level": expect.pop("minimum_level", 3),
                # CDS order-sign prefetch carries no Organization: post as an institution of this level
                "institution": {"code": ORG_CODES[s.level], "level": s.level},
                **expect,
            }
            (folder / f"{s.name}.expect.json").write_text(
                json.dumps(sidecar, ensure_ascii=False, indent=2) + "\n", encoding="utf-8")
    return written
