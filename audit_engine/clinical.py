"""Clinical derivations: age and population band, eGFR, and what diagnosis codes imply.

Sources:
* CKD-EPI 2021 creatinine equation without race: Inker LA et al., N Engl J Med 2021;385:1737-49.
  eGFR = 142 × min(Scr/κ, 1)^α × max(Scr/κ, 1)^-1.200 × 0.9938^age × 1.012 [female];
  κ = 0.7 (female) / 0.9 (male); α = -0.241 (female) / -0.302 (male); Scr in mg/dL.
* Bedside Schwartz: Schwartz GJ et al., J Am Soc Nephrol 2009;20:629-37.
  eGFR = 0.413 × height (cm) / Scr (mg/dL), for children 1-17 years.
* Cockcroft–Gault creatinine clearance: Cockcroft DW, Gault MH, Nephron 1976;16:31-41.
  CrCl (mL/min) = (140 − age) × weight (kg) / (72 × Scr mg/dL) × 0.85 [female]; adults, actual body weight
  (the weight most drug labels' renal dosing tables were derived with).
* Renal bands: the eGFR or CrCl cut points the renal dose table (rulebase/tables/renal_dose_bands.csv) is
  written in; a patient below a cut point carries the band label "eGFR<30" / "CrCl<30".
* Creatinine 1 mg/dL = 88.4 µmol/L.
* Age bands: the fact catalogue (audit_engine.schema, patient.population).
"""

from __future__ import annotations

import re
from datetime import date

CREATININE_UMOL_PER_MGDL = 88.4


# --- age ------------------------------------------------------------------------------------

def age_parts(birth: date, on: date) -> tuple[int, int, int]:
    """(days, completed months, completed years) of someone born on ``birth``, on date ``on``."""
    days = (on - birth).days
    months = (on.year - birth.year) * 12 + (on.month - birth.month)
    if on.day < birth.day:
        months -= 1
    years = months // 12
    return days, max(months, 0), max(years, 0)


def population(age_days: int, age_years: int) -> str:
    """The population band of the fact catalogue."""
    if age_days < 28:
        return "新生儿"
    if age_years < 1:
        return "婴儿"
    if age_years < 3:
        return "幼儿"
    if age_years < 12:
        return "儿童"
    if age_years < 18:
        return "青少年"
    if age_years < 65:
        return "成人"
    return "老年"


# --- kidney ---------------------------------------------------------------------------------

def creatinine_mg_dl(value: float, unit: str | None) -> float | None:
    """Serum creatinine in mg/dL from mg/dL or µmol/L (UCUM ``umol/L``); None for other units."""
    u = (unit or "").strip().replace("μ", "u").replace("µ", "u").lower()
    if u in ("mg/dl", "mg/100ml"):
        return value
    if u in ("umol/l", "mmol/m3"):
        return value / CREATININE_UMOL_PER_MGDL
    if u == "mmol/l":
        return value * 1000 / CREATININE_UMOL_PER_MGDL
    return None


def ckd_epi_2021(scr_mg_dl: float, age_years: int, sex: str) -> float | None:
    """CKD-EPI 2021 eGFR (mL/min/1.73m²) for an adult; ``sex`` is 男 or 女 (None otherwise)."""
    if scr_mg_dl <= 0 or age_years < 18 or sex not in ("男", "女"):
        return None
    female = sex == "女"
    kappa = 0.7 if female else 0.9
    alpha = -0.241 if female else -0.302
    ratio = scr_mg_dl / kappa
    egfr = 142.0 * min(ratio, 1.0) ** alpha * max(ratio, 1.0) ** -1.200 * 0.9938 ** age_years
    return egfr * 1.012 if female else egfr


def bedside_schwartz(scr_mg_dl: float, height_cm: float) -> float | None:
    """Bedside Schwartz eGFR (mL/min/1.73m²) for a child with known height."""
    if scr_mg_dl <= 0 or height_cm <= 0:
        return None
    return 0.413 * height_cm / scr_mg_dl


def cockcroft_gault(scr_mg_dl: float, age_years: int, weight_kg: float, sex: str) -> float | None:
    """Cockcroft–Gault creatinine clearance (mL/min) for an adult; ``sex`` is 男 or 女 (None otherwise)."""
    if scr_mg_dl <= 0 or weight_kg <= 0 or age_years < 18 or sex not in ("男", "女"):
        return None
    crcl = (140 - age_years) * weight_kg / (72.0 * scr_mg_dl)
    return crcl * 0.85 if sex == "女" else crcl


RENAL_CUTS = (10, 15, 20, 25, 30, 35, 40, 45, 50, 60, 70, 80, 90)


def renal_bands(egfr: float | None, crcl: float | None) -> list[str]:
    """The band labels a patient falls in: ``eGFR<N`` for every cut N above the eGFR, ``CrCl<N`` likewise.

    Without a creatinine clearance the eGFR stands in for it (``CrCl<N`` from the eGFR), as the FDA
    guidance on renal impairment (2024) allows either estimate for dose adjustment; the finding's
    text says so (``renal_basis``).
    """
    out: list[str] = []
    if egfr is not None:
        out += [f"eGFR<{c}" for c in RENAL_CUTS if egfr < c]
    stand_in = crcl if crcl is not None else egfr
    if stand_in is not None:
        out += [f"CrCl<{c}" for c in RENAL_CUTS if stand_in < c]
    return sorted(out)


def egfr_from_creatinine(scr_mg_dl: float, *, age_years: int, age_days: int, sex: str | None,
                         height_cm: float | None) -> float | None:
    """The equation fitting the patient: CKD-EPI 2021 from 18 years, bedside Schwartz 1-17 years."""
    if age_years >= 18:
        return ckd_epi_2021(scr_mg_dl, age_years, sex or "")
    if age_years >= 1 and height_cm is not None:
        return bedside_schwartz(scr_mg_dl, height_cm)
    return None  # neonates and infants: creatinine reflects the mother's; no bedside equation applies


# --- diagnoses ------------------------------------------------------------------------------

ICD10_RE = re.compile(r"^[A-Z]\d{2}(?:\.[0-9A-Z]{1,4})?$")


def is_icd10_system(system: str | None) -> bool:
    s = (system or "").lower()
    return "icd-10" in s or "icd10" in s or s in ("urn:oid:2.16.840.1.113883.6.3", "urn:oid:2.16.840.1.113883.6.90")


def _icd_in(code: str, prefixes: tuple[str, ...]) -> bool:
    c = code.upper().replace(".", "")
    return any(c.startswith(p.replace(".", "")) for p in prefixes)


# 门诊慢特病 as most provinces list them, by ICD-10 category.
CHRONIC_ICD10 = (
    "I10", "I11", "I12", "I13", "I15", "E10", "E11", "E12", "E13", "E14", "I20", "I25", "I50", "I48",
    "J44", "J45", "N18", "E78", "E03", "E05", "G40", "F20", "F31", "F32", "F33", "M05", "M06", "M10", "M81",
    "I69", "B18", "K74", "G20", "C", "D45", "D46", "N04", "M32", "E89.0", "Z94",
)
CHRONIC_SNOMED = frozenset({
    "38341003", "59621000", "44054006", "46635009", "73211009", "53741008", "414545008", "84114007",
    "49436004", "13645005", "195967001", "433144002", "431855005", "431856006", "46177005", "709044004",
    "55822004", "40930008", "84757009", "49049000", "69896004", "396275006", "90560007", "64859006",
    "230690007", "66071002", "363406005", "254637007", "162864005",
})
CHRONIC_WORDS = ("高血压", "糖尿病", "冠心病", "冠状动脉", "心力衰竭", "心衰", "房颤", "心房颤动", "慢性阻塞性肺",
                 "哮喘", "慢性肾", "高脂血症", "血脂异常", "甲状腺功能", "癫痫", "精神分裂", "抑郁", "双相",
                 "类风湿", "痛风", "骨质疏松", "脑卒中后遗症", "脑梗死后遗症", "慢性乙型肝炎", "慢性丙型肝炎",
                 "肝硬化", "帕金森", "恶性肿瘤", "癌", "肾病综合征", "系统性红斑狼疮")
CHRONIC_PAIN_ICD10 = ("C", "R52.1", "R52.2", "G89.2", "G89.3", "G89.4")
CHRONIC_PAIN_WORDS = ("癌痛", "癌性疼痛", "慢性疼痛", "慢性重度疼痛", "顽固性疼痛", "慢性痛")
HEPATIC_ICD10 = ("K70.3", "K70.4", "K71", "K72", "K74", "K76.6", "K76.7", "K75.4", "B18", "I85")
HEPATIC_SNOMED = frozenset({"19943007", "59927004", "235856003", "197279005", "61977001", "128302006",
                            "66071002", "235869004", "197321007"})
HEPATIC_WORDS = ("肝功能不全", "肝功能损害", "肝功能异常", "肝衰竭", "肝硬化", "肝损伤", "慢性肝炎", "肝性脑病")
PREGNANCY_ICD10 = ("O", "Z33", "Z34", "Z35", "Z36")
PREGNANCY_SNOMED = frozenset({"77386006", "72892002", "118185001", "161765003", "65147003"})
PREGNANCY_WORDS = ("妊娠", "怀孕", "孕期", "孕妇", "早孕", "孕周", "宫内孕")
LACTATION_ICD10 = ("Z39.1", "O92")
LACTATION_SNOMED = frozenset({"169750002", "413712001", "169741004", "169745008"})
LACTATION_WORDS = ("哺乳", "母乳喂养")
NOT_PREGNANT_WORDS = ("非妊娠", "未孕", "无妊娠", "未怀孕", "否认妊娠", "妊娠试验阴性", "避孕")


def icd_matches(code: str | None, prefixes: tuple[str, ...]) -> bool:
    """True when ICD-10 ``code`` falls under one of ``prefixes`` (C matches every C00-C97)."""
    return bool(code) and _icd_in(code or "", prefixes)


def words_match(text: str | None, words: tuple[str, ...]) -> bool:
    return bool(text) and any(w in (text or "") for w in words)
