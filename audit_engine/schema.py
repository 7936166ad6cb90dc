"""The fact catalogue: every field a rule may read, and the shape of canonical facts.

This is the one contract between the fact normaliser (``audit_engine.facts``), which
*produces* facts, and the rule language (checker, compiler, interpreter), which *reads*
them. A field is named in English (the key in the fact dict) and in Chinese (how a
pharmacist writes it in a rule); both spellings are accepted in rule text.

Facts are plain, flat dicts:

* an absent fact is an absent key, never ``None``: a rule that needs it does not fire;
* ``bool`` / ``int`` / ``float`` / ``str`` values, and sorted lists of ``str`` for text sets;
* a quantity is stored as a number in its field's canonical unit;
* a *multi-unit* quantity (a dose may be in mg, mL or IU; an age in 岁, 月 or 天) is stored
  under one flat key per dimension (``dose_mg``, ``dose_ml`` ...). A rule literal's unit
  picks the variant: ``药品.日剂量 > 4 g`` reads ``daily_dose_mg``; an item dosed in IU has no
  ``daily_dose_mg`` key, so that comparison is simply false for it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

FieldType = Literal["bool", "int", "number", "text", "textset", "enum", "quantity"]

# entity name -> Chinese name
ENTITIES: dict[str, str] = {
    "patient": "患者",
    "prescription": "处方",
    "prescriber": "医师",
    "institution": "机构",
    "item": "药品",
    "diagnosis": "诊断",
}
ENTITY_BY_ZH: dict[str, str] = {zh: en for en, zh in ENTITIES.items()}

INSTITUTION_LEVELS = ("县级医院", "乡镇卫生院", "社区卫生服务中心", "村卫生室")
PRESCRIPTION_TYPES = ("门诊", "急诊")
TITLES = ("主任医师", "副主任医师", "主治医师", "住院医师", "医士", "乡村医生")
ANTIMICROBIAL_GRADES = ("非限制使用级", "限制使用级", "特殊使用级")  # ordered, low to high
CONTROL_CLASSES = ("麻醉", "精一", "精二", "毒性", "放射")
POPULATIONS = ("新生儿", "婴儿", "幼儿", "儿童", "青少年", "成人", "老年")
SEXES = ("男", "女", "未知")
FORM_CLASSES = ("注射剂", "缓控释制剂", "其他剂型")
ROUTES = ("口服", "静滴", "静注", "肌注", "皮下", "外用", "吸入", "舌下", "直肠", "滴眼", "滴鼻", "含服", "煎服", "其他")


@dataclass(frozen=True, slots=True)
class Field:
    """One readable fact field.

    ``unit`` is the canonical unit of a single-unit quantity. ``variants`` maps a unit
    dimension (see ``audit_engine.units``) to the flat key that holds the value in that
    dimension's base unit, for multi-unit quantities. ``values`` lists an enum's values;
    when ``ordered`` they are listed low to high and ``<`` / ``>`` compare by position.
    """

    entity: str
    name: str
    zh: str
    type: FieldType
    doc: str
    unit: str | None = None
    variants: dict[str, str] = field(default_factory=dict)
    values: tuple[str, ...] = ()
    ordered: bool = False

    @property
    def keys(self) -> tuple[str, ...]:
        """The flat fact keys this field may occupy."""
        return tuple(self.variants.values()) if self.variants else (self.name,)


def _f(entity: str, name: str, zh: str, type_: FieldType, doc: str, **kw: Any) -> Field:
    return Field(entity, name, zh, type_, doc, **kw)


FIELDS: tuple[Field, ...] = (
    # --- patient 患者 ---------------------------------------------------------------
    _f("patient", "age", "年龄", "quantity",
       "Completed age; the literal's unit picks the variant: 岁 completed years, 月 completed months, 天 days.",
       variants={"age_years": "age_years", "age_months": "age_months", "time": "age_days"}),
    _f("patient", "sex", "性别", "enum", "Administrative sex.", values=SEXES),
    _f("patient", "weight", "体重", "quantity", "Body weight.", unit="kg"),
    _f("patient", "height", "身高", "quantity", "Body height.", unit="cm"),
    _f("patient", "pregnant", "妊娠", "bool", "Currently pregnant (Observation LOINC 82810-3 or Condition)."),
    _f("patient", "lactating", "哺乳", "bool", "Currently breastfeeding."),
    _f("patient", "egfr", "eGFR", "quantity",
       "Latest eGFR, observed or computed (CKD-EPI 2021 adults, bedside Schwartz children).",
       unit="mL/min/1.73m²"),
    _f("patient", "crcl", "肌酐清除率", "quantity",
       "Creatinine clearance (Cockcroft–Gault from age, weight, sex and serum creatinine; or an observed "
       "clearance, LOINC 2164-2).", unit="mL/min"),
    _f("patient", "renal_bands", "肾功能分段", "textset",
       "Renal dose bands the patient falls in: eGFR<N and CrCl<N for the cut points of "
       "audit_engine.clinical.RENAL_CUTS (CrCl from the eGFR when no clearance can be computed)."),
    _f("patient", "renal_basis", "肾功能估算", "text",
       "Which kidney estimates were used, in Chinese, for findings (CrCl Cockcroft–Gault / eGFR CKD-EPI 2021 "
       "or observed, and whether the eGFR stood in for the CrCl)."),
    _f("patient", "hepatic_impairment", "肝功能不全", "bool", "Hepatic impairment from Conditions."),
    _f("patient", "allergies", "过敏", "textset",
       "Allergy substances resolved to ingredient names and drug classes (Chinese canonical names)."),
    _f("patient", "population", "人群", "enum",
       "Age band: 新生儿 <28 d, 婴儿 <1 y, 幼儿 1-3 y, 儿童 3-12 y, 青少年 12-18 y, 成人 18-65 y, 老年 >=65 y.",
       values=POPULATIONS),
    _f("patient", "chronic", "慢病", "bool", "Has a chronic disease on the diagnosis list (long-prescription exception)."),
    _f("patient", "chronic_pain", "癌痛或慢性痛", "bool", "Cancer pain or chronic severe pain (麻精 limit exception)."),
    _f("patient", "diagnosis_codes", "诊断编码", "textset", "ICD-10 codes of the active diagnoses, as written (e.g. N18.4)."),
    # --- prescription 处方 ----------------------------------------------------------
    _f("prescription", "type", "类型", "enum", "门诊 (Encounter.class AMB) or 急诊 (EMER).", values=PRESCRIPTION_TYPES),
    _f("prescription", "department", "科室", "text", "Department name, such as 儿科."),
    _f("prescription", "long_term", "长期处方", "bool", "Marked as a long-term prescription (长期处方, up to 12 weeks)."),
    _f("prescription", "date", "日期", "text", "Date written, YYYY-MM-DD (MedicationRequest.authoredOn); rule scopes' effective dates test it."),
    _f("prescription", "item_count", "药品数", "int", "Number of drug items under review."),
    _f("prescription", "has_herbal", "含饮片", "bool", "Holds at least one decoction piece (饮片)."),
    _f("prescription", "has_western", "含西药", "bool", "Holds at least one western drug or 中成药."),
    # --- prescriber 医师 ------------------------------------------------------------
    _f("prescriber", "title", "职称", "enum", "Professional title.", values=TITLES),
    _f("prescriber", "antimicrobial_grade", "抗菌药物权限", "enum",
       "Highest antimicrobial grade this prescriber may prescribe (from the title).",
       values=ANTIMICROBIAL_GRADES, ordered=True),
    _f("prescriber", "rights", "处方权", "textset",
       "Special prescribing rights named in Practitioner.qualification, e.g. 麻醉药品和第一类精神药品处方权."),
    # --- institution 机构 -----------------------------------------------------------
    _f("institution", "level", "级别", "enum", "Institution level.", values=INSTITUTION_LEVELS),
    _f("institution", "code", "编码", "text", "Institution code."),
    # --- item 药品 (one per MedicationRequest under review) --------------------------
    _f("item", "drug_id", "药品编码", "text", "Canonical drug id in the county dictionary."),
    _f("item", "name", "名称", "text", "Chinese generic name of the canonical drug."),
    _f("item", "ingredients", "成分", "textset", "Ingredient names (Chinese)."),
    _f("item", "classes", "类别", "textset",
       "Drug classes: therapeutic classes (e.g. 非甾体抗炎药, 他汀类) and ATC codes at every level."),
    _f("item", "atc", "ATC", "text", "Full ATC code."),
    _f("item", "form", "剂型", "text", "Dosage form, e.g. 片剂, 注射剂, 缓释片, 饮片."),
    _f("item", "route", "途径", "enum", "Route of administration.", values=ROUTES),
    _f("item", "dose", "单次剂量", "quantity", "Dose per administration.",
       variants={"mass": "dose_mg", "volume": "dose_ml", "activity": "dose_iu"}),
    _f("item", "daily_dose", "日剂量", "quantity", "Dose per day = dose x frequency.",
       variants={"mass": "daily_dose_mg", "volume": "daily_dose_ml", "activity": "daily_dose_iu"}),
    _f("item", "dose_per_kg", "单次剂量每公斤", "quantity", "Dose per administration per kg body weight.", unit="mg/kg"),
    _f("item", "daily_dose_per_kg", "日剂量每公斤", "quantity", "Daily dose per kg body weight.", unit="mg/kg"),
    _f("item", "dose_unit", "剂量单位", "text", "The unit the dose was written in (mg, g, 片 …); messages show doses in it."),
    _f("item", "frequency", "频次", "number", "Administrations per day (prn counts its stated maximum).", unit="次/日"),
    _f("item", "days", "天数", "quantity", "Days' supply.", unit="天"),
    _f("item", "prn", "按需", "bool", "As needed."),
    _f("item", "injection", "注射剂", "bool", "Injectable form."),
    _f("item", "antimicrobial_grade", "抗菌级别", "enum", "Antimicrobial grade of the drug (absent if not an antimicrobial).",
       values=ANTIMICROBIAL_GRADES, ordered=True),
    _f("item", "control", "管制类别", "enum", "Control class (absent if none).", values=CONTROL_CLASSES),
    _f("item", "essential", "基药", "bool", "On the national essential medicines list."),
    _f("item", "high_alert", "高警示", "bool", "High-alert drug."),
    _f("item", "herbal", "饮片", "bool", "A decoction piece (中药饮片)."),
    _f("item", "tcm_patent", "中成药", "bool", "A Chinese patent medicine."),
    _f("item", "sustained_release", "缓控释", "bool", "Controlled or sustained release form."),
    _f("item", "form_class", "剂型分类", "enum",
       "Form class of 《处方管理办法》 第二十三条: 注射剂, 缓控释制剂 (incl. transdermal patches) or 其他剂型; "
       "read from Medication.form, the drug's name text, a product code, the route, or the dictionary when all "
       "its forms agree; absent when it cannot be determined.",
       values=FORM_CLASSES),
    _f("item", "overdose_reason", "超量理由", "bool", "The prescriber stated a reason for exceeding the usual dose."),
    _f("item", "route_stated", "途径已写", "bool",
       "The order itself states a route (False when the route was filled in from the dictionary's default)."),
    # --- diagnosis 诊断 -------------------------------------------------------------
    _f("diagnosis", "code", "编码", "text", "ICD-10 code."),
    _f("diagnosis", "name", "名称", "text", "Diagnosis name."),
    _f("diagnosis", "chronic", "慢病", "bool", "Counts as a chronic disease."),
)

_BY_KEY: dict[tuple[str, str], Field] = {}
for _fld in FIELDS:
    _BY_KEY[(_fld.entity, _fld.name)] = _fld
    _BY_KEY[(_fld.entity, _fld.zh)] = _fld


def field_of(entity: str, name: str) -> Field | None:
    """The field ``name`` (English or Chinese) of ``entity`` (English or Chinese), or None."""
    entity = ENTITY_BY_ZH.get(entity, entity)
    return _BY_KEY.get((entity, name))


def field_names(entity: str) -> list[str]:
    """Every spelling of every field of ``entity``, for "did you mean" suggestions."""
    entity = ENTITY_BY_ZH.get(entity, entity)
    return sorted({n for f in FIELDS if f.entity == entity for n in (f.name, f.zh)})


@dataclass(frozen=True, slots=True)
class FactIssue:
    """Something the normaliser could not establish; it sends the review to a pharmacist.

    ``code`` is one of UNKNOWN_DRUG, DOSE_UNPARSEABLE, FREQUENCY_UNPARSEABLE,
    UNIT_CONFLICT, DOSE_MISSING, ROUTE_UNKNOWN, ALLERGY_UNMAPPED (an allergy that maps to no drug
    or class); ``item`` is the item id or None; ``where``
    is a FHIRPath to the element; ``message`` is Chinese text for the pharmacist.
    """

    code: str
    message: str
    item: str | None = None
    where: str | None = None


@dataclass(slots=True)
class PrescriptionFacts:
    """The canonical facts of one prescription: what every rule reads.

    ``items`` are the orders under review (draft or active); each item dict holds ``id``
    (the MedicationRequest id) and ``reference`` ("MedicationRequest/<id>") besides the
    catalogue fields. ``context_items`` are other orders seen in the same input
    (history); rules do not read them.
    """

    patient: dict[str, Any] = field(default_factory=dict)
    prescription: dict[str, Any] = field(default_factory=dict)
    prescriber: dict[str, Any] = field(default_factory=dict)
    institution: dict[str, Any] = field(default_factory=dict)
    diagnoses: list[dict[str, Any]] = field(default_factory=list)
    items: list[dict[str, Any]] = field(default_factory=list)
    issues: list[FactIssue] = field(default_factory=list)
    context_items: list[dict[str, Any]] = field(default_factory=list)
    prescription_id: str | None = None
    # Who wrote it, for statistics (prescriber ``code`` and ``name``); rules do not read it.
    identity: dict[str, str] = field(default_factory=dict)
