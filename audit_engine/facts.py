"""Fact normalisation: an :class:`Intake` of validated FHIR resources → canonical :class:`PrescriptionFacts`.

Every field is established exactly as ``audit_engine.schema`` documents it; what cannot
be established is either an absent key (the rules that need it do not fire) or, for what a
review cannot do without (the drug, its dose and frequency), a :class:`FactIssue` that
sends the prescription to a pharmacist. Nothing here raises on clinical content.

Reading decisions (China profile, CONTRACT.md):
* prescription date = the latest authoredOn of the orders under review, as written (local
  date); ``today`` when no order has one. Ages are completed at that date.
* a partial birthDate (``2019`` / ``2019-03``) is read as its first day.
* the latest Observation wins (effective[x], else issued); weight LOINC 29463-7 / 3141-9,
  height 8302-2 / 8306-3 / 8308-9; eGFR 33914-3, 48642-3, 48643-1, 62238-1, 98979-8,
  else computed from creatinine 2160-0 / 38483-4 / 14682-9 (``audit_engine.clinical``); creatinine
  clearance observed (2164-2) or Cockcroft–Gault from age, weight, sex and creatinine; the renal
  dose bands (``eGFR<30`` / ``CrCl<30`` …) and a note of which estimate was used.
* bool facts read from diagnoses (hepatic impairment, chronic, chronic pain) are False when
  a diagnosis list was supplied and says nothing, and absent when none was supplied.
* ``pregnant`` is False for a male patient, from Observation 82810-3 or an active Condition
  otherwise, absent when nothing says; likewise ``lactating``.
* allergies: active AllergyIntolerance (category medication or unstated) resolved through the
  allergen table (SNOMED CT / ATC class codes, names as HIS write them: 青霉素过敏, 对磺胺类药物过敏,
  头孢过敏史, penicillin allergy) and the dictionary to ingredient names, therapeutic classes and
  ATC groups of 5+ characters (the broad ATC levels would make every anti-infective an
  allergen); an allergy that cannot be resolved is a FactIssue ALLERGY_UNMAPPED naming it.
* long-term prescription: a MedicationRequest.category coding or text 长期处方 / long-term.
"""

from __future__ import annotations

from datetime import UTC, date, datetime
from typing import Any

from audit_engine import clinical
from audit_engine.intake.model import Intake, ResourceEntry
from audit_engine.item_facts import DictionaryLike, normalise_item
from audit_engine.knowledge.allergens import NO_ALLERGY_CODES, allergy_names
from audit_engine.schema import INSTITUTION_LEVELS, TITLES, FactIssue, PrescriptionFacts

LOINC = "http://loinc.org"
WEIGHT_CODES = ("29463-7", "3141-9")
HEIGHT_CODES = ("8302-2", "8306-3", "8308-9")
EGFR_CODES = ("33914-3", "48642-3", "48643-1", "62238-1", "98979-8")
CREATININE_CODES = ("2160-0", "38483-4", "14682-9")
CRCL_CODES = ("2164-2",)  # creatinine renal clearance, 24 h urine and serum
PREGNANCY_CODES = ("82810-3", "11449-6")
PREGNANCY_VALID_DAYS = 300
LACTATION_CODES = ("63895-7",)
PREGNANT_VALUES = ("LA15173-0", "77386006")
NOT_PREGNANT_VALUES = ("LA26683-5", "60001007")
YES_VALUES = ("LA33-6", "373066001")
NO_VALUES = ("LA32-8", "373067005")
WEIGHT_UNITS = {"kg": 1.0, "g": 0.001, "[lb_av]": 0.45359237, "lb": 0.45359237, "lbs": 0.45359237,
                "公斤": 1.0, "千克": 1.0, "克": 0.001, "斤": 0.5}
HEIGHT_UNITS = {"cm": 1.0, "m": 100.0, "[in_i]": 2.54, "in": 2.54, "厘米": 1.0, "米": 100.0, "mm": 0.1}
SEX = {"male": "男", "female": "女", "other": "未知", "unknown": "未知"}
ENCOUNTER_TYPES = {"AMB": "门诊", "EMER": "急诊", "门诊": "门诊", "急诊": "急诊"}
# title -> highest antimicrobial grade (《抗菌药物临床应用管理办法》 第二十四条)
GRADE_BY_TITLE = {"主任医师": "特殊使用级", "副主任医师": "特殊使用级", "主治医师": "限制使用级",
                  "住院医师": "非限制使用级", "医士": "非限制使用级", "乡村医生": "非限制使用级"}
TITLE_ALIASES = {"医师": "住院医师", "主任": "主任医师", "副主任": "副主任医师", "主治": "主治医师",
                 "住院": "住院医师", "乡村医师": "乡村医生", "执业医师": "住院医师"}
LEVEL_ALIASES = (("县级医院", "县级医院"), ("县医院", "县级医院"), ("县人民医院", "县级医院"), ("县中医院", "县级医院"),
                 ("乡镇卫生院", "乡镇卫生院"), ("卫生院", "乡镇卫生院"), ("社区卫生服务中心", "社区卫生服务中心"),
                 ("社区卫生服务站", "社区卫生服务中心"), ("村卫生室", "村卫生室"), ("村卫生所", "村卫生室"))
LONG_TERM_WORDS = ("长期处方", "long-term", "longterm")


def _codes(concept: Any) -> list[tuple[str | None, str | None, str | None]]:
    if concept is None:
        return []
    return [(c.system, c.code, c.display) for c in (concept.coding or [])]


def _texts(concept: Any) -> list[str]:
    if concept is None:
        return []
    return [t for t in [concept.text, *(c.display for c in concept.coding or [])] if t]


def _date_of(value: Any) -> date | None:
    if isinstance(value, datetime):
        return value.date()
    if isinstance(value, date):
        return value
    if isinstance(value, str) and value[:4].isdigit():  # partial date: first day of the period
        parts = [int(p) for p in value[:10].split("-") if p.isdigit()]
        try:
            return date(parts[0], parts[1] if len(parts) > 1 else 1, parts[2] if len(parts) > 2 else 1)
        except ValueError:
            return None
    return None


def _timestamp(value: Any) -> float:
    if isinstance(value, datetime):
        return (value if value.tzinfo else value.replace(tzinfo=UTC)).timestamp()
    d = _date_of(value)
    return datetime(d.year, d.month, d.day, tzinfo=UTC).timestamp() if d else float("-inf")


def _obs_time(obs: Any) -> float:
    when = obs.effectiveDateTime or (obs.effectivePeriod.start if obs.effectivePeriod else None) or obs.issued
    return _timestamp(when)


def _latest_obs(intake: Intake, codes: tuple[str, ...]) -> list[Any]:
    """Observations with one of the LOINC ``codes``, usable (not cancelled / in error), newest first."""
    found = []
    for e in intake.observations:
        obs = e.resource
        if obs.status in ("cancelled", "entered-in-error", "registered"):
            continue
        if any(code in codes for _, code, _ in _codes(obs.code)):
            found.append(obs)
    return sorted(found, key=_obs_time, reverse=True)


def _quantity(obs: Any, table: dict[str, float]) -> float | None:
    q = obs.valueQuantity
    if q is None or q.value is None:
        return None
    factor = table.get((q.code or q.unit or "").strip())
    return float(q.value) * factor if factor is not None else None


def _is_active_condition(cond: Any) -> bool:
    clinical_codes = {c for _, c, _ in _codes(cond.clinicalStatus)}
    verification = {c for _, c, _ in _codes(cond.verificationStatus)}
    if verification & {"refuted", "entered-in-error"}:
        return False
    return not clinical_codes or bool(clinical_codes & {"active", "recurrence", "relapse"})


def _diagnosis(concept: Any) -> dict[str, Any] | None:
    codings = _codes(concept)
    icd = next((c for s, c, _ in codings if c and clinical.is_icd10_system(s)), None)
    if icd is None:  # an unlabelled code in ICD-10 shape, as some HIS send
        icd = next((c for s, c, _ in codings if c and not s and clinical.ICD10_RE.match(c)), None)
    names = _texts(concept)
    snomed = {c for s, c, _ in codings if c and s and "snomed" in s}
    if icd is None and not names:
        return None
    name = names[0] if names else None
    chronic = (icd is not None and clinical.icd_matches(icd, clinical.CHRONIC_ICD10)) or bool(
        snomed & clinical.CHRONIC_SNOMED) or any(clinical.words_match(n, clinical.CHRONIC_WORDS) for n in names)
    out: dict[str, Any] = {"chronic": chronic}
    if icd is not None:
        out["code"] = icd
    if name:
        out["name"] = name
    out["_snomed"] = snomed
    out["_names"] = names
    return out


def _flag(diagnoses: list[dict[str, Any]], icd: tuple[str, ...], snomed: frozenset[str], words: tuple[str, ...]) -> bool:
    return any(
        clinical.icd_matches(d.get("code"), icd) or bool(d["_snomed"] & snomed)
        or any(clinical.words_match(n, words) for n in d["_names"])
        for d in diagnoses
    )


def _concept_says(concept: Any, yes: tuple[str, ...], no: tuple[str, ...], yes_words: tuple[str, ...],
                  no_words: tuple[str, ...]) -> bool | None:
    codes = {c for _, c, _ in _codes(concept)}
    if codes & set(no) or any(clinical.words_match(t, no_words) for t in _texts(concept)):
        return False
    if codes & set(yes) or any(clinical.words_match(t, yes_words) for t in _texts(concept)):
        return True
    return None


def _patient(intake: Intake, facts: PrescriptionFacts, on: date, diagnoses: list[dict[str, Any]],
             dictionary: DictionaryLike, institution: str | None) -> float | None:
    """Fill facts.patient; return the weight in kg (item doses per kg need it)."""
    p: dict[str, Any] = facts.patient
    pat = intake.patient.resource if intake.patient is not None else None
    if pat is not None and pat.gender:
        p["sex"] = SEX.get(pat.gender, "未知")
    birth = _date_of(pat.birthDate) if pat is not None else None
    if birth is not None and birth <= on:
        days, months, years = clinical.age_parts(birth, on)
        p.update(age_days=days, age_months=months, age_years=years, population=clinical.population(days, years))
    for obs in _latest_obs(intake, WEIGHT_CODES):
        if (w := _quantity(obs, WEIGHT_UNITS)) is not None and w > 0:
            p["weight"] = round(w, 3)
            break
    for obs in _latest_obs(intake, HEIGHT_CODES):
        if (h := _quantity(obs, HEIGHT_UNITS)) is not None and h > 0:
            p["height"] = round(h, 2)
            break
    _kidney(intake, p)
    _pregnancy(intake, p, diagnoses, on)
    have_dx = intake.conditions_supplied or bool(diagnoses)
    if have_dx:
        p["hepatic_impairment"] = _flag(diagnoses, clinical.HEPATIC_ICD10, clinical.HEPATIC_SNOMED, clinical.HEPATIC_WORDS)
        p["chronic"] = any(d["chronic"] for d in diagnoses)
        p["chronic_pain"] = _flag(diagnoses, clinical.CHRONIC_PAIN_ICD10, frozenset(), clinical.CHRONIC_PAIN_WORDS)
    codes = sorted({d["code"] for d in diagnoses if "code" in d})
    if codes or have_dx:
        p["diagnosis_codes"] = codes
    allergies = _allergies(intake, dictionary, institution, facts.issues)
    if allergies is not None:
        p["allergies"] = allergies
    return p.get("weight")


def _kidney(intake: Intake, p: dict[str, Any]) -> None:
    """eGFR (observed, else CKD-EPI 2021 / bedside Schwartz), Cockcroft–Gault CrCl, the renal bands and
    a Chinese note of which estimate each comes from (``renal_basis``)."""
    notes: list[str] = []
    for obs in _latest_obs(intake, EGFR_CODES):
        if obs.valueQuantity is not None and obs.valueQuantity.value is not None:
            p["egfr"] = round(float(obs.valueQuantity.value), 1)
            notes.append(f"eGFR {p['egfr']:g} mL/min/1.73m²（检验结果）")
            break
    scr = None
    for obs in _latest_obs(intake, CREATININE_CODES):
        q = obs.valueQuantity
        if q is not None and q.value is not None:
            scr = clinical.creatinine_mg_dl(float(q.value), q.code or q.unit)
            if scr is not None:
                break
    if scr is not None and "egfr" not in p and "age_years" in p:
        egfr = clinical.egfr_from_creatinine(scr, age_years=p["age_years"], age_days=p["age_days"],
                                             sex=p.get("sex"), height_cm=p.get("height"))
        if egfr is not None:
            p["egfr"] = round(egfr, 1)
            method = "CKD-EPI 2021" if p["age_years"] >= 18 else "床旁 Schwartz"
            notes.append(f"eGFR {p['egfr']:g} mL/min/1.73m²（{method}，由血肌酐计算）")
    crcl = None
    for obs in _latest_obs(intake, CRCL_CODES):
        q = obs.valueQuantity
        if q is not None and q.value is not None and (q.code or q.unit or "").strip().lower() in ("ml/min", "毫升/分"):
            crcl = float(q.value)
            notes.insert(0, f"肌酐清除率 {crcl:.0f} mL/min（检验结果）")
            break
    if crcl is None and scr is not None and "age_years" in p and "weight" in p:
        crcl = clinical.cockcroft_gault(scr, p["age_years"], p["weight"], p.get("sex") or "")
        if crcl is not None:
            notes.insert(0, f"Cockcroft–Gault 肌酐清除率 {crcl:.0f} mL/min（年龄 {p['age_years']} 岁、体重 "
                            f"{p['weight']:g} kg、血肌酐 {scr:.2f} mg/dL）")
    if crcl is not None:
        p["crcl"] = round(crcl, 1)
    elif "egfr" in p:
        missing = "、".join(w for w, ok in (("血肌酐", scr is not None), ("体重", "weight" in p),
                                           ("年龄", "age_years" in p), ("性别", p.get("sex") in ("男", "女"))) if not ok)
        notes.append(f"无法计算 Cockcroft–Gault 肌酐清除率（缺{missing or '成人数据'}），按 CrCl 分段的药品以 eGFR 代替")
    if "egfr" in p or crcl is not None:
        p["renal_bands"] = clinical.renal_bands(p.get("egfr"), crcl)
        p["renal_basis"] = "；".join(notes)


def _pregnancy(intake: Intake, p: dict[str, Any], diagnoses: list[dict[str, Any]], on: date) -> None:
    if p.get("sex") == "男":
        p["pregnant"] = False
        p["lactating"] = False
        return
    # A pregnancy status older than a pregnancy lasts (~300 days) says nothing about today.
    stale = datetime(on.year, on.month, on.day, tzinfo=UTC).timestamp() - PREGNANCY_VALID_DAYS * 86400
    for obs in _latest_obs(intake, PREGNANCY_CODES):
        if _obs_time(obs) < stale:
            break
        said = _concept_says(obs.valueCodeableConcept, PREGNANT_VALUES, NOT_PREGNANT_VALUES,
                             clinical.PREGNANCY_WORDS, clinical.NOT_PREGNANT_WORDS)
        if said is not None:
            p["pregnant"] = said
            break
    if p.get("pregnant") is not True and _flag(diagnoses, clinical.PREGNANCY_ICD10, clinical.PREGNANCY_SNOMED,
                                               clinical.PREGNANCY_WORDS):
        p["pregnant"] = True
    for obs in _latest_obs(intake, LACTATION_CODES):
        said = _concept_says(obs.valueCodeableConcept, YES_VALUES, NO_VALUES, clinical.LACTATION_WORDS, ("否", "无"))
        if said is None and obs.valueBoolean is not None:
            said = bool(obs.valueBoolean)
        if said is not None:
            p["lactating"] = said
            break
    if p.get("lactating") is not True and _flag(diagnoses, clinical.LACTATION_ICD10, clinical.LACTATION_SNOMED,
                                                clinical.LACTATION_WORDS):
        p["lactating"] = True


def _allergies(intake: Intake, dictionary: DictionaryLike, institution: str | None,
               issues: list[FactIssue]) -> list[str] | None:
    """Active drug allergies → ingredient and class names; an allergy that cannot be read is a FactIssue.

    Each concept (``code`` and every ``reaction.substance``) is read by its codes first (SNOMED CT
    substance or ATC class codes of the allergen table; ATC, RxNorm, insurance and local drug
    codes of the dictionary), then by its texts (text, then codings' displays) as HIS write them.
    "No known allergy" codes and texts count as an empty list; food and environmental allergens
    are not drug allergies. Anything else that does not resolve sends the prescription to a
    pharmacist, naming the text: the allergy check did not run for it.
    """
    if not intake.allergies:
        return [] if intake.allergies_supplied else None
    index = getattr(dictionary, "allergens", None)
    names: set[str] = set()
    for e in intake.allergies:
        a = e.resource
        if not _is_active_condition(a):
            continue
        if a.category and not set(a.category) & {"medication"}:
            continue
        concepts = [(a.code, f"{e.path}.code")]
        concepts += [(r.substance, f"{e.path}.reaction[{i}].substance")
                     for i, r in enumerate(a.reaction or []) if r.substance is not None]
        for concept, where in concepts:
            if concept is None:
                continue
            resolved, unmapped = _allergy_concept(concept, dictionary, index, institution)
            names |= resolved
            if unmapped:
                shown = _describe_concept(concept)
                issues.append(FactIssue(
                    "ALLERGY_UNMAPPED",
                    f"过敏史“{shown}”无法识别为药品或药物类别（{'、'.join(unmapped)}），系统未按此过敏史审核",
                    None, where))
    return sorted(names)


def _describe_concept(concept: Any) -> str:
    texts = _texts(concept)
    codes = "、".join(f"{s or '?'}|{c}" for s, c, _ in _codes(concept) if c)
    return (texts[0] if texts else "") + (f"（编码 {codes}）" if codes else "") or "（空）"


def _allergy_concept(concept: Any, dictionary: DictionaryLike, index: Any, institution: str | None
                     ) -> tuple[set[str], list[str]]:
    """(names, unmapped parts) of one allergy CodeableConcept."""
    codings = _codes(concept)
    if any(c in NO_ALLERGY_CODES for _, c, _ in codings if c):
        return set(), []
    names: set[str] = set()
    if index is not None:
        for system, code, _ in codings:
            hit = index.by_code(system, code)
            if hit is not None:
                names |= hit.names
    if codings:  # a drug code (ATC, RxNorm, insurance, local) also brings the drug's own classes
        drug = dictionary.resolve(codings, None, institution)
        if drug is not None:
            names |= allergy_names(drug)
    if names:
        return names, []
    texts = _texts(concept)
    if not texts:
        return set(), [f"{s or '?'}|{c}" for s, c, _ in codings if c] or ["（空）"]
    if index is None:
        drug = dictionary.resolve([], texts[0], institution)
        return (allergy_names(drug), []) if drug is not None else (set(), [texts[0]])
    # The text first (what the doctor wrote), then each coding's display.
    first_unmapped: list[str] | None = None
    for text in texts:
        r = index.resolve_text(text, dictionary)
        if r.no_allergy:
            return set(), []
        if r.names:
            return r.names, r.unmapped
        if not r.unmapped:  # only food or environmental substances
            return set(), []
        if first_unmapped is None:
            first_unmapped = r.unmapped
    return set(), first_unmapped or []


def _title(texts: list[str]) -> str | None:
    for t in texts:
        t = t.strip()
        if t in TITLES:
            return t
        if t in TITLE_ALIASES:
            return TITLE_ALIASES[t]
    for t in texts:  # "副主任医师（内科）": the longest title contained wins (副主任医师 over 主任医师)
        hit = max((x for x in TITLES if x in t), key=len, default=None)
        if hit:
            return hit
    return None


def _prescriber_entries(intake: Intake) -> tuple[ResourceEntry | None, ResourceEntry | None]:
    """(Practitioner, PractitionerRole) of the prescriber: the anchor order's requester, else the CDS user."""
    refs = [getattr(o.resource.requester, "reference", None) for o in intake.orders if o.resource.requester]
    refs.append(intake.user_id)
    role = prac = None
    for ref in refs:
        found = intake.find(ref)
        if found is None:
            continue
        if found.type == "PractitionerRole" and role is None:
            role = found
        elif found.type == "Practitioner" and prac is None:
            prac = found
    if role is None and len(intake.practitioner_roles) == 1:
        role = intake.practitioner_roles[0]
    if role is not None and prac is None:
        prac = intake.find(getattr(role.resource.practitioner, "reference", None))
    if prac is None and len(intake.practitioners) == 1:
        prac = intake.practitioners[0]
    return prac, role


def practitioner_identity(prac: Any) -> dict[str, str]:
    """{code, name} of the prescriber for statistics: the first identifier value (else the
    resource id) and the name's text (else family + given, written together as Chinese names are)."""
    out: dict[str, str] = {}
    code = next((i.value for i in prac.identifier or [] if i.value), None) or prac.id
    if code:
        out["code"] = str(code)[:200]
    for name in prac.name or []:
        text = name.text or (str(name.family or "") + "".join(str(g) for g in name.given or []))
        if text:
            out["name"] = str(text)[:200]
            break
    return out


def _prescriber(intake: Intake, facts: PrescriptionFacts) -> ResourceEntry | None:
    prac, role = _prescriber_entries(intake)
    texts: list[str] = []
    rights: set[str] = set()
    if prac is not None:
        for q in prac.resource.qualification or []:
            qt = _texts(q.code)
            texts.extend(qt)
            rights.update(t.strip() for t in qt if "处方权" in t)
    if role is not None:
        for concept in role.resource.code or []:
            texts.extend(_texts(concept))
    if prac is not None:
        facts.identity = practitioner_identity(prac.resource)
    title = _title(texts)
    if title is not None:
        facts.prescriber["title"] = title
        facts.prescriber["antimicrobial_grade"] = GRADE_BY_TITLE[title]
    if texts:  # qualifications were sent: no named right then means none; nothing sent means unknown
        facts.prescriber["rights"] = sorted(rights)
    return role


def _level(org: Any) -> str | None:
    for text in [t for concept in org.type or [] for t in _texts(concept)]:
        for word, level in LEVEL_ALIASES:
            if word in text:
                return level
    return None


def _institution(intake: Intake, facts: PrescriptionFacts, role: ResourceEntry | None,
                 client_institution: dict[str, Any] | None) -> str | None:
    """The Encounter's serviceProvider, else the prescriber role's organization, else the calling client.

    Several Chinese FHIR profiles make the serviceProvider the department (科室), an
    Organization whose ``partOf`` is the hospital: then the department's name is returned
    (for ``prescription.department``) and the hospital is the institution.
    """
    enc = intake.encounter.resource if intake.encounter is not None else None
    candidates = [getattr(enc.serviceProvider, "reference", None) if enc is not None and enc.serviceProvider else None,
                  getattr(role.resource.organization, "reference", None) if role is not None and role.resource.organization else None]
    org = next((o for o in (intake.find(r) for r in candidates if r) if o is not None and o.type == "Organization"), None)
    department = None
    parent = intake.find(getattr(org.resource.partOf, "reference", None)) if org is not None and org.resource.partOf else None
    if org is not None and _level(org.resource) is None and parent is not None and parent.type == "Organization":
        department, org = org.resource.name, parent
    if org is None and len(intake.organizations) == 1 and _level(intake.organizations[0].resource):
        org = intake.organizations[0]
    inst = facts.institution
    if org is not None:
        ident = next((i.value for i in org.resource.identifier or [] if i.value), None)
        if ident or org.id:
            inst["code"] = ident or org.id
        if (level := _level(org.resource)) is not None:
            inst["level"] = level
    if client_institution:
        if "code" not in inst and client_institution.get("code"):
            inst["code"] = str(client_institution["code"])
        if "level" not in inst and client_institution.get("level") in INSTITUTION_LEVELS:
            inst["level"] = client_institution["level"]
    return department


def _prescription(intake: Intake, facts: PrescriptionFacts, on: date, role: ResourceEntry | None,
                  department: str | None) -> None:
    rx = facts.prescription
    rx["date"] = on.isoformat()
    enc = intake.encounter.resource if intake.encounter is not None else None
    kind = None
    if enc is not None and enc.class_fhir is not None:
        kind = ENCOUNTER_TYPES.get(enc.class_fhir.code or "") or ENCOUNTER_TYPES.get(enc.class_fhir.display or "")
    if kind is None:
        cats = {c for o in intake.orders for cat in o.resource.category or [] for _, c, _ in _codes(cat)}
        if cats & {"outpatient", "community"}:
            kind = "门诊"
    if kind is not None:
        rx["type"] = kind
    dept = department
    if dept is None and enc is not None:
        dept = next((t for concept in [enc.serviceType] for t in _texts(concept)), None)
    if dept is None and role is not None:
        dept = next((t for concept in role.resource.specialty or [] for t in _texts(concept)), None)
    if dept:
        rx["department"] = dept
    rx["long_term"] = any(
        any(w in t.lower() for w in LONG_TERM_WORDS)
        for o in intake.orders for cat in o.resource.category or []
        for t in [*_texts(cat), *(c for _, c, _ in _codes(cat) if c)]
    )
    rx["item_count"] = len(facts.items)
    known = [i for i in facts.items if "drug_id" in i]
    herbal = [i for i in known if i.get("herbal")]
    if herbal or len(known) == len(facts.items):
        rx["has_herbal"] = bool(herbal)
    if len(herbal) < len(known) or len(known) == len(facts.items):
        rx["has_western"] = len(herbal) < len(known)


def prescription_date(intake: Intake, today: date | None) -> date:
    """The date the prescription was written: the latest authoredOn of the orders under review, else today."""
    latest = max(intake.orders, key=lambda o: _timestamp(o.resource.authoredOn))
    return _date_of(latest.resource.authoredOn) or today or date.today()


def _diagnoses(intake: Intake) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    seen: set[tuple[str | None, str | None]] = set()
    concepts = [e.resource.code for e in intake.conditions if _is_active_condition(e.resource)]
    concepts += [c for o in intake.orders for c in o.resource.reasonCode or []]
    for concept in concepts:
        d = _diagnosis(concept)
        if d is None:
            continue
        key = (d.get("code"), None if d.get("code") else d.get("name"))
        if key in seen:
            continue
        seen.add(key)
        out.append(d)
    return out


def normalise(intake: Intake, *, dictionary: DictionaryLike, today: date | None = None,
              client_institution: dict[str, Any] | None = None) -> PrescriptionFacts:
    """The canonical facts of the prescription in ``intake`` (never raises on clinical content)."""
    facts = PrescriptionFacts(prescription_id=intake.prescription_id)
    on = prescription_date(intake, today)
    diagnoses = _diagnoses(intake)
    role = _prescriber(intake, facts)
    department = _institution(intake, facts, role, client_institution)
    institution = facts.institution.get("code")
    weight = _patient(intake, facts, on, diagnoses, dictionary, institution)
    for n, entry in enumerate(intake.orders):
        facts.items.append(normalise_item(entry, intake, dictionary=dictionary, institution=institution,
                                          weight_kg=weight, issues=facts.issues, index=n))
    for n, entry in enumerate(intake.context_orders):
        item = normalise_item(entry, intake, dictionary=dictionary, institution=institution,
                              weight_kg=weight, issues=[], index=n)
        item["status"] = str(entry.resource.status)
        if (authored := _date_of(entry.resource.authoredOn)) is not None:
            item["date"] = authored.isoformat()
        facts.context_items.append(item)
    facts.diagnoses = [{k: v for k, v in d.items() if not k.startswith("_")} for d in diagnoses]
    _prescription(intake, facts, on, role, department)
    return facts
