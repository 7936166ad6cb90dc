"""Prescriptions written the short way: the brief form of the rule language's test cases.

A brief is what a pharmacist writes inside ``测试 "…" { … }``, without the test around it::

    患者 年龄 45 岁 体重 60 kg
    处方 门诊
    机构 村卫生室
    药品 布洛芬 200 mg 每日3次 10 天 口服

``read_brief`` turns such a text (or a whole ``测试`` block) into the same facts the test cases
use, with every problem as ``file:line:col``; ``review_brief`` reviews them with an engine;
``to_fhir`` writes the FHIR R4 Bundle a HIS would send for it, so a case can be handed to the
HIS team and posted to the service with the same findings.
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass, field
from datetime import date
from typing import TYPE_CHECKING, Any

from audit_engine import schema, units
from audit_engine.errors import Diagnostic, RulebaseError
from audit_engine.lang import nodes as n

if TYPE_CHECKING:
    from audit_engine.engine import Engine
    from audit_engine.review import ReviewResult

BRIEF_WORDS = ("患者", "处方", "医师", "机构", "诊断", "药品", "测试", "patient", "prescription", "prescriber",
               "institution", "diagnosis", "drug", "test")
_PREFIX = '测试 "简要处方" { '
_NUM_UNIT = re.compile(r"^(\d+(?:\.\d+)?)(.*)$")


def looks_like_brief(text: str) -> bool:
    """Whether ``text`` is a brief (its first word is 患者/处方/医师/机构/诊断/药品/测试), not JSON."""
    for line in text.splitlines():
        s = line.strip()
        if not s or s.startswith("#"):
            continue
        return s.split()[0] in BRIEF_WORDS or s.startswith(BRIEF_WORDS)
    return False


@dataclass(frozen=True)
class BriefPrescription:
    """A parsed brief: the test-case node it was read as and the facts it describes."""

    case: n.TestCase
    facts: schema.PrescriptionFacts
    file: str
    text: str = field(repr=False, default="")


def read_brief(text: str, file: str = "<stdin>", dictionary: Any | None = None) -> BriefPrescription:
    """Parse and interpret a brief; raises ``RulebaseError`` with every ``file:line:col`` problem."""
    from audit_engine.lang.parser import parse_text
    from audit_engine.lang.tables import remember_source
    from audit_engine.lang.testcases import build_facts

    remember_source(file, text)
    whole = text.lstrip().startswith(("测试", "test"))
    source = text if whole else _PREFIX + text + "\n}\n"
    try:
        parsed = parse_text(source, file)
    except RulebaseError as err:
        raise RulebaseError([_unshift(d, text, whole) for d in err.diagnostics]) from None
    if len(parsed.tests) != 1 or parsed.rules or parsed.tables or parsed.overrides or parsed.imports:
        raise RulebaseError([Diagnostic(file, 1, 1, "简要处方只能写一张处方（患者/处方/医师/机构/诊断/药品 各行，"
                                                  "或一个 测试 块）", text.splitlines()[0] if text else "")])
    case = parsed.tests[0]
    facts, diags = build_facts(case, dictionary)
    if not case.briefs or not facts.items:
        diags.append(Diagnostic(file, 1, 1, "简要处方中没有药品：至少写一行 药品 名称 剂量 频次 天数"))
    if diags:
        raise RulebaseError([_unshift(d, text, whole) for d in diags])
    facts.prescription_id = None
    return BriefPrescription(case, facts, file, text)


def _unshift(d: Diagnostic, text: str, whole: bool) -> Diagnostic:
    """A diagnostic of the wrapped text, placed on the pharmacist's own text."""
    if whole or d.line != 1:
        line = d.line
        col, end = d.col, d.end_col
    else:
        line, col = 1, max(1, d.col - len(_PREFIX))
        end = max(col, d.end_col - len(_PREFIX)) if d.end_col else None
    lines = text.splitlines()
    src = lines[line - 1] if 0 < line <= len(lines) else ""
    return Diagnostic(d.file, min(line, max(1, len(lines))), col, d.message, src, d.hint, end)


def review_brief(brief: BriefPrescription, engine: Engine) -> ReviewResult:
    """The findings for a brief, as ``review.review_payload`` gives them for FHIR input."""
    from audit_engine.findings import Finding
    from audit_engine.review import ReviewResult, system_finding

    t0 = time.perf_counter()
    version, found = engine.evaluate_versioned(brief.facts)
    findings = sorted([*found, *(system_finding(i, brief.facts) for i in brief.facts.issues)], key=Finding.sort_key)
    return ReviewResult(prescription_id=None, facts=brief.facts, findings=tuple(findings), rulebase_version=version,
                        items=tuple(str(i.get("reference")) for i in brief.facts.items),
                        timings_ms={"engine": (time.perf_counter() - t0) * 1000})


# ----------------------------------------------------------------------------- FHIR

BASE = "urn:audit-engine:brief"
ATC = "http://www.whocc.no/atc"
ICD10 = "http://hl7.org/fhir/sid/icd-10"
LOINC = "http://loinc.org"
SNOMED = "http://snomed.info/sct"
UCUM = "http://unitsofmeasure.org"
_ROUTE_CODES = {"口服": "26643006", "静滴": "47625008", "静注": "47625008", "肌注": "78421000", "皮下": "34206005",
                "外用": "6064005", "吸入": "447694001", "舌下": "37839007", "直肠": "37161004", "含服": "54471007",
                "煎服": "26643006"}
_UCUM = {"µg": "ug", "IU": "[iU]", "万IU": "10*4.[iU]"}
# Facts the brief may set directly that FHIR carries only through a coded diagnosis.
_FROM_DIAGNOSES = {"chronic": ("慢病", '诊断 "I10" 名称 "原发性高血压"'),
                   "hepatic_impairment": ("肝功能不全", '诊断 "K72.9" 名称 "肝功能衰竭"'),
                   "chronic_pain": ("癌痛或慢性痛", '诊断 "G89.3" 名称 "肿瘤相关疼痛"')}
CAVEAT_DIAGNOSIS = "在 FHIR 中由诊断得出"
CAVEAT_RENAL = "在 FHIR 中由血肌酐、体重、年龄和性别算出"
CAVEATS = (CAVEAT_DIAGNOSIS, CAVEAT_RENAL)  # what a note says when the Bundle cannot carry a fact as written
# A brief's 剂型分类 as the Medication.form text a HIS writes for a form of that class.
_FORM_TEXT = {"缓控释制剂": "缓释片", "其他剂型": "片", "注射剂": "注射液"}


@dataclass(frozen=True)
class _Order:
    """One 药品 line as written: name, dose and unit, frequency per day, days, route, flags."""

    name: str
    dose: tuple[float, str] | None
    per_day: float | None
    days: float | None
    route: str | None
    prn: bool
    overdose_reason: bool


def _orders(case: n.TestCase) -> list[_Order]:
    from audit_engine.lang.testcases import frequency_word

    out: list[_Order] = []
    for b in case.briefs:
        if b.entity != "item" or not b.words:
            continue
        words = list(b.words)
        dose: tuple[float, str] | None = None
        per_day = days = None
        route = None
        prn = overdose = False
        i = 1
        while i < len(words):
            w = words[i]
            i += 1
            m = _NUM_UNIT.match(w.text) if not w.quoted else None
            if m is not None:
                unit = m.group(2) or None
                if unit is None and i < len(words) and words[i].text in units.UNITS:
                    unit = words[i].text
                    i += 1
                if unit is not None and units.UNITS[unit].dimension == "time":
                    days = units.convert(float(m.group(1)), unit, "天")
                elif unit is not None:
                    dose = (float(m.group(1)), unit)
                continue
            freq = frequency_word(w.text) if not w.quoted else None
            if freq is not None and w.text not in ("按需", "prn"):
                per_day = freq[0] if freq[0] is not None else per_day
                prn = prn or freq[1]
            elif w.text in schema.ROUTES:
                route = w.text
            elif w.text in ("按需", "prn"):
                prn = True
            elif w.text == "超量理由":
                overdose = True
        out.append(_Order(words[0].text, dose, per_day, days, route, prn, overdose))
    return out


def _ref(kind: str, rid: str) -> dict[str, str]:
    return {"reference": f"{kind}/{rid}"}


def _birth_date(p: dict[str, Any], today: date) -> str | None:
    if "age_days" not in p:
        return None
    from datetime import timedelta

    years = p.get("age_years", 0)
    if years >= 1 and p["age_days"] == int(years * 365.25):
        try:  # whole years as written: the same day that many years ago
            return today.replace(year=today.year - years).isoformat()
        except ValueError:  # 29 February
            return today.replace(year=today.year - years, day=28).isoformat()
    return (today - timedelta(days=p["age_days"])).isoformat()


def _timing(per_day: float) -> dict[str, Any]:
    if per_day >= 1 and float(per_day).is_integer():
        return {"frequency": int(per_day), "period": 1, "periodUnit": "d"}
    hours = 24 / per_day
    if float(hours).is_integer():
        return {"frequency": 1, "period": int(hours), "periodUnit": "h"}
    return {"frequency": 1, "period": round(1 / per_day, 6), "periodUnit": "d"}


def to_fhir(brief: BriefPrescription, *, today: date | None = None,
            identifier: str = "BRIEF-1") -> tuple[dict[str, Any], list[str]]:
    """The FHIR R4 collection Bundle for ``brief``, and notes on what FHIR could not carry as written."""
    from audit_engine.knowledge.dictionary import load_dictionary

    today = today or date.today()
    facts = brief.facts
    notes: list[str] = []
    dictionary = load_dictionary()
    p, rx, doc, inst = facts.patient, facts.prescription, facts.prescriber, facts.institution
    res: list[dict[str, Any]] = []
    patient: dict[str, Any] = {"resourceType": "Patient", "id": "pat",
                               "gender": {"男": "male", "女": "female"}.get(p.get("sex", ""), "unknown")}
    if (born := _birth_date(p, today)) is not None:
        patient["birthDate"] = born
    res.append(patient)
    level = inst.get("level")
    org: dict[str, Any] = {"resourceType": "Organization", "id": "org",
                           "identifier": [{"system": f"{BASE}/institution", "value": inst.get("code", "BRIEF-ORG")}],
                           "name": inst.get("code", "简要处方机构")}
    if level:
        org["type"] = [{"text": level}]
    res.append(org)
    enc: dict[str, Any] = {"resourceType": "Encounter", "id": "enc", "status": "in-progress",
                           "class": {"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode",
                                     "code": "EMER" if rx.get("type") == "急诊" else "AMB"},
                           "subject": _ref("Patient", "pat"), "serviceProvider": _ref("Organization", "org")}
    if rx.get("department"):
        enc["serviceType"] = {"text": rx["department"]}
    res.append(enc)
    quals = [{"code": {"text": t}} for t in [doc.get("title"), *doc.get("rights", [])] if t]
    res.append({"resourceType": "Practitioner", "id": "doc", "name": [{"text": "医师"}],
                **({"qualification": quals} if quals else {})})
    res.append({"resourceType": "PractitionerRole", "id": "doc-role", "practitioner": _ref("Practitioner", "doc"),
                "organization": _ref("Organization", "org"),
                **({"specialty": [{"text": rx["department"]}]} if rx.get("department") else {})})
    for i, dx in enumerate(facts.diagnoses, start=1):
        res.append({"resourceType": "Condition", "id": f"cond-{i}",
                    "clinicalStatus": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/condition-clinical",
                                                   "code": "active"}]},
                    "code": {"coding": [{"system": ICD10, "code": dx["code"], **({"display": dx["name"]}
                                                                                  if dx.get("name") else {})}],
                             **({"text": dx["name"]} if dx.get("name") else {})},
                    "subject": _ref("Patient", "pat")})
    for key, (zh, example) in _FROM_DIAGNOSES.items():
        if p.get(key) and not facts.diagnoses:
            notes.append(f"患者“{zh}”{CAVEAT_DIAGNOSIS}：Bundle 中没有它；请在简要处方中写上相应诊断（如 {example}）")
    for i, allergen in enumerate(p.get("allergies", []), start=1):
        res.append({"resourceType": "AllergyIntolerance", "id": f"allergy-{i}",
                    "clinicalStatus": {"coding": [{
                        "system": "http://terminology.hl7.org/CodeSystem/allergyintolerance-clinical",
                        "code": "active"}]},
                    "category": ["medication"], "code": {"text": allergen}, "patient": _ref("Patient", "pat")})

    def obs(oid: str, loinc: str, text: str, value: dict[str, Any], key: str) -> None:
        res.append({"resourceType": "Observation", "id": oid, "status": "final",
                    "code": {"coding": [{"system": LOINC, "code": loinc}], "text": text},
                    "subject": _ref("Patient", "pat"), "effectiveDateTime": today.isoformat(), key: value})

    if "weight" in p:
        obs("obs-weight", "29463-7", "体重", {"value": p["weight"], "unit": "kg", "system": UCUM, "code": "kg"},
            "valueQuantity")
    if "height" in p:
        obs("obs-height", "8302-2", "身高", {"value": p["height"], "unit": "cm", "system": UCUM, "code": "cm"},
            "valueQuantity")
    if "renal_bands" in p:
        from audit_engine.clinical import renal_bands

        if "crcl" in p or set(p["renal_bands"]) != set(renal_bands(p.get("egfr"), None)):
            notes.append(f"患者的肌酐清除率或肾功能分段{CAVEAT_RENAL}：Bundle 只写 eGFR；"
                         "请在简要处方中写 eGFR，或在 HIS 中发送血肌酐与体重")
    if "egfr" in p:
        obs("obs-egfr", "33914-3", "估算肾小球滤过率",
            {"value": p["egfr"], "unit": "mL/min/1.73m2", "system": UCUM, "code": "mL/min/{1.73_m2}"}, "valueQuantity")
    if "pregnant" in p:
        obs("obs-pregnancy", "82810-3", "妊娠状态",
            {"coding": [{"system": SNOMED, "code": "77386006" if p["pregnant"] else "60001007"}],
             "text": "妊娠" if p["pregnant"] else "未孕"}, "valueCodeableConcept")
    if p.get("lactating"):
        obs("obs-lactation", "63895-7", "哺乳状态",
            {"coding": [{"system": SNOMED, "code": "413712001"}], "text": "哺乳期"}, "valueCodeableConcept")
    for i, (order, item) in enumerate(zip(_orders(brief.case), facts.items, strict=True), start=1):
        concept: dict[str, Any] = {"text": order.name}
        drug = dictionary.by_name(order.name)
        if item.get("atc") and drug is not None and len(item["atc"]) == 7:
            concept["coding"] = [{"system": ATC, "code": item["atc"], "display": item.get("name", order.name)}]
        dosage: dict[str, Any] = {"sequence": 1}
        route = order.route
        if route is None and item.get("route") is not None:
            route = item["route"]
        if item.get("route_stated") is False:
            route = None  # written as not stated: the Bundle leaves it out, as the HIS did
        elif route is None and drug is not None and drug.route:
            route = drug.route
            notes.append(f"药品 {order.name} 未写给药途径：按药品字典写入默认途径“{route}”")
        if route is not None:
            dosage["route"] = {"text": route, **({"coding": [{"system": SNOMED, "code": _ROUTE_CODES[route]}]}
                                                 if route in _ROUTE_CODES else {})}
        if order.per_day is not None:
            dosage["timing"] = {"repeat": _timing(order.per_day)}
        if order.dose is not None:
            value, unit = order.dose
            dosage["doseAndRate"] = [{"doseQuantity": {"value": value, "unit": unit, "system": UCUM,
                                                       "code": _UCUM.get(unit, unit)}}]
        if order.prn:
            dosage["asNeededBoolean"] = True
        medication: dict[str, Any] = {"medicationCodeableConcept": concept}
        if item.get("form_class") in _FORM_TEXT:
            # The form class as written: a contained Medication whose form the HIS names.
            medication = {"contained": [{"resourceType": "Medication", "id": "med", "code": concept,
                                         "form": {"text": _FORM_TEXT[item["form_class"]]}}],
                          "medicationReference": {"reference": "#med"}}
        mr: dict[str, Any] = {
            "resourceType": "MedicationRequest", "id": f"item{i}", "status": "active", "intent": "order",
            "groupIdentifier": {"value": identifier}, **medication,
            "subject": _ref("Patient", "pat"), "encounter": _ref("Encounter", "enc"),
            "authoredOn": today.isoformat(), "requester": _ref("Practitioner", "doc"), "dosageInstruction": [dosage]}
        if rx.get("long_term"):
            mr["category"] = [{"text": "长期处方"}]
        if order.overdose_reason:
            mr["note"] = [{"text": "超量理由：医师已注明（简要处方）"}]
        if order.days is not None:
            mr["dispenseRequest"] = {"expectedSupplyDuration": {"value": order.days, "unit": "天", "system": UCUM,
                                                                "code": "d"}}
        res.append(mr)
    bundle = {"resourceType": "Bundle", "id": identifier.lower(), "type": "collection",
              "identifier": {"system": f"{BASE}/prescription-no", "value": identifier},
              "timestamp": f"{today.isoformat()}T09:00:00+08:00",
              "entry": [{"fullUrl": f"{BASE}/{r['resourceType']}/{r['id']}", "resource": r} for r in res]}
    return bundle, notes
