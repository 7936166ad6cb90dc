"""The county drug dictionary: every code a HIS may send, mapped to one canonical drug.

Data lives in ``rulebase/tables`` (layout documented in ``rulebase/tables/SOURCES.md``):

* ``drugs.csv`` - one row per canonical drug (western drugs, 中成药 and 饮片);
* ``allergens.csv`` - drug allergens as HIS write them (``audit_engine.knowledge.allergens``);
* ``codes.csv`` - (system, code) -> drug id for ATC products, national insurance codes,
  per-institution local codes and RxNorm product codes; a row may pin the product's form and
  strength, so ``2 片`` of "Simvastatin 20 MG Oral Tablet" converts to 40 mg.

:func:`load_dictionary` parses and validates both files (a bad cell is a
:class:`audit_engine.errors.RulebaseError` naming ``file:line:col``) and caches the result.
Lookups are plain dict hits, built once at load.
"""

from __future__ import annotations

import dataclasses
import functools
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from audit_engine import units
from audit_engine.knowledge.allergens import AllergenIndex, build_allergens
from audit_engine.knowledge.csvio import Collector, Row, did_you_mean, read_rows
from audit_engine.schema import ANTIMICROBIAL_GRADES, CONTROL_CLASSES, ROUTES

ATC_SYSTEM = "http://www.whocc.no/atc"
RXNORM_SYSTEM = "http://www.nlm.nih.gov/research/umls/rxnorm"
#: The national healthcare security administration (国家医保局) drug code; FHIR has no agreed URI.
NHSA_SYSTEM = "urn:cn:nhsa:drug"
#: A local code system; ``urn:cn:local:<institution>`` names the institution explicitly.
LOCAL_SYSTEM = "urn:cn:local"

# Spellings HIS vendors use for the same systems.
SYSTEM_ALIASES: dict[str, str] = {
    ATC_SYSTEM: "atc", "https://www.whocc.no/atc": "atc", "http://www.whocc.no/atc/": "atc", "atc": "atc",
    "urn:oid:2.16.840.1.113883.6.73": "atc",
    RXNORM_SYSTEM: "rxnorm", "rxnorm": "rxnorm", "urn:oid:2.16.840.1.113883.6.88": "rxnorm",
    NHSA_SYSTEM: "nhsa", "nhsa": "nhsa", "医保": "nhsa", "http://www.nhsa.gov.cn/drug": "nhsa",
    "https://www.nhsa.gov.cn/drug": "nhsa",
    LOCAL_SYSTEM: "local", "local": "local",
}
SYSTEM_PRIORITY = ("atc", "nhsa", "local", "rxnorm")

FLAGS = ("基药", "高警示", "饮片", "中成药")
INJECTION_FORMS = ("注射", "输液")
SUSTAINED_FORMS = ("缓释", "控释")
ATC_RE = re.compile(r"^[A-Z](\d\d([A-Z]([A-Z](\d\d)?)?)?)?$")
# `10 mg`, `0.25 g`, `5 mg/mL`, `2 mL:10 mg`, `4000 IU/mL`, `40万U`
STRENGTH_RE = re.compile(
    r"^(?:(?P<vol>\d+(?:\.\d+)?)\s*mL\s*:\s*)?(?P<amt>\d+(?:\.\d+)?)\s*(?P<unit>[^\s/\d][^/]*?)\s*(?:/\s*(?P<per>mL|g))?$"
)
DRUG_COLUMNS = ("id", "name_zh", "name_en", "atc", "ingredients", "classes", "forms", "route",
                "antimicrobial_grade", "control", "flags", "rxnorm", "aliases", "来源")
CODE_COLUMNS = ("system", "code", "drug_id", "institution", "form", "strength", "display")
# Form words a HIS appends to a generic name (阿莫西林胶囊); longest first so 缓释片 wins over 片.
FORM_SUFFIXES = ("注射用无菌粉末", "缓释胶囊", "肠溶胶囊", "干混悬剂", "口服溶液", "吸入气雾剂", "吸入溶液",
                 "缓释片", "控释片", "肠溶片", "分散片", "咀嚼片", "泡腾片", "注射液", "颗粒剂", "滴眼液",
                 "混悬液", "气雾剂", "喷雾剂", "胶囊剂", "片剂", "胶囊", "颗粒", "软膏", "乳膏", "凝胶", "糖浆",
                 "栓剂", "贴剂", "丸", "片", "散")


@dataclass(frozen=True, slots=True)
class Strength:
    """One strength of one form: ``amount unit`` per unit of form, or per mL when ``per`` is mL.

    ``2 mL:10 mg`` is an ampoule: 10 mg per 支 *and* 5 mg/mL (``volume_ml`` = 2).
    """

    form: str
    amount: float
    unit: str
    per: str | None = None
    volume_ml: float | None = None

    def text(self) -> str:
        head = f"{self.volume_ml:g} mL:" if self.volume_ml else ""
        tail = f"/{self.per}" if self.per else ""
        return f"{self.form} {head}{self.amount:g} {self.unit}{tail}"


def parse_strength(form: str, text: str) -> Strength | None:
    """``text`` as a Strength of ``form``, or None when it is not in the documented layout."""
    text = text.strip()
    if text.endswith("%"):  # w/w percentage of a topical form: 1% = 10 mg per g
        try:
            return Strength(form, float(text[:-1]) * 10.0, "mg", "g")
        except ValueError:
            return None
    m = STRENGTH_RE.match(text)
    if not m:
        return None
    unit = m.group("unit").strip()
    try:
        units.lookup(unit)
    except units.UnitError:
        return None
    vol = float(m.group("vol")) if m.group("vol") else None
    return Strength(form, float(m.group("amt")), unit, m.group("per"), vol)


@dataclass(frozen=True, slots=True)
class Drug:
    """A canonical drug. ``classes`` holds therapeutic classes and every ATC prefix level."""

    id: str
    name_zh: str
    name_en: str
    ingredients: tuple[str, ...]
    classes: tuple[str, ...]
    atc: str | None
    forms: tuple[str, ...]
    strengths: tuple[Strength, ...]
    route: str | None
    antimicrobial_grade: str | None
    control: str | None
    essential: bool
    high_alert: bool
    herbal: bool
    tcm_patent: bool
    rxnorm: tuple[str, ...]
    aliases: tuple[str, ...] = ()
    source: str = ""

    @property
    def injection(self) -> bool | None:
        """True if every form is injectable, False if none is, None when it depends on the form."""
        flags = {any(w in f for w in INJECTION_FORMS) for f in self.forms}
        return flags.pop() if len(flags) == 1 else None

    @property
    def sustained_release(self) -> bool | None:
        """Like :attr:`injection`, for controlled / sustained release forms."""
        flags = {any(w in f for w in SUSTAINED_FORMS) for f in self.forms}
        return flags.pop() if len(flags) == 1 else None

    @property
    def form_class(self) -> str | None:
        """The 《处方管理办法》 form class (``schema.FORM_CLASSES``) when every form agrees, else None."""
        classes = {form_class(f) for f in self.forms}
        return classes.pop() if len(classes) == 1 else None

    def item_fields(self) -> dict[str, Any]:
        """The schema.py item fields the dictionary knows; a key is absent when unknown.

        ``form`` is present only when the drug (as resolved) has one form; ``injection`` and
        ``sustained_release`` only when all its forms agree.
        """
        out: dict[str, Any] = {
            "drug_id": self.id,
            "name": self.name_zh,
            "ingredients": sorted(self.ingredients),
            "classes": sorted(self.classes),
            "essential": self.essential,
            "high_alert": self.high_alert,
            "herbal": self.herbal,
            "tcm_patent": self.tcm_patent,
        }
        optional = {"atc": self.atc, "route": self.route, "antimicrobial_grade": self.antimicrobial_grade,
                    "control": self.control, "injection": self.injection,
                    "sustained_release": self.sustained_release, "form_class": self.form_class,
                    "form": self.forms[0] if len(self.forms) == 1 else None}
        out.update({k: v for k, v in optional.items() if v is not None})
        return out

    def with_form(self, form: str | None, strength: Strength | None = None) -> Drug:
        """This drug narrowed to one form (and strength): what a product code or "XX片" names."""
        if not form:
            return self
        strengths = (strength,) if strength else tuple(s for s in self.strengths if s.form == form)
        return dataclasses.replace(self, forms=(form,), strengths=strengths, route=route_for_form(form, self.route))

    def narrowed_by_text(self, text: str | None) -> Drug:
        """This drug narrowed to the form a written name or form text names (盐酸吗啡片 → 片剂,
        吗啡缓释片 → 缓释片, 注射用… → the injection), when it has several; else unchanged."""
        if not text or len(self.forms) < 2:
            return self
        t = text.strip()
        if t in self.forms:
            return self.with_form(t)
        if t.startswith("注射用"):
            return self.with_form(next((f for f in self.forms if "注射" in f), None))
        for suffix in FORM_SUFFIXES:
            if t.endswith(suffix):
                form = next((f for f in self.forms if f.startswith(suffix) or suffix.startswith(f)), None)
                return self.with_form(form)
        return self

    def canonical_dose(self, value: float, unit: str) -> tuple[str, float] | None:
        """``value unit`` as (dimension, value in the dimension's base unit), or None.

        mg/g/µg -> ("mass", mg); IU -> ("activity", IU); mL -> ("mass", mg) when exactly one
        concentration is known, else ("volume", mL); 片/粒/袋/支/丸 -> via the strength when the
        drug (as resolved) has exactly one per-unit strength.
        """
        try:
            u = units.lookup(unit)
        except units.UnitError:
            return None
        if u.dimension in ("mass", "activity"):
            return u.dimension, value * u.factor
        if u.dimension == "volume":
            ml = value * u.factor
            conc = {(s.amount / (s.volume_ml or 1.0), s.unit) for s in self.strengths if s.per == "mL" or s.volume_ml}
            if len(conc) == 1:
                amount, s_unit = conc.pop()
                su = units.lookup(s_unit)
                return su.dimension, ml * amount * su.factor
            return "volume", ml
        if u.dimension == "count":
            per_unit = {(s.amount, s.unit) for s in self.strengths if s.per is None}
            if len(per_unit) == 1:
                amount, s_unit = per_unit.pop()
                su = units.lookup(s_unit)
                return su.dimension, value * amount * su.factor
        return None


INJECTION_ROUTES = ("静滴", "静注", "肌注", "皮下")
# Form word -> the route it implies; checked in order, so 舌下片 is tested before 片.
FORM_ROUTES: tuple[tuple[str, str], ...] = (
    ("舌下", "舌下"), ("吸入", "吸入"), ("滴眼", "滴眼"), ("滴鼻", "滴鼻"), ("栓", "直肠"), ("凝胶", "外用"),
    ("乳膏", "外用"), ("软膏", "外用"), ("贴剂", "外用"), ("阴道环", "外用"), ("饮片", "煎服"), ("片", "口服"),
    ("胶囊", "口服"), ("颗粒", "口服"), ("口服", "口服"), ("散", "口服"), ("丸", "口服"), ("糖浆", "口服"),
    ("混悬", "口服"),
)


# Words that say a form is injectable / controlled or sustained release / anything else, as HIS
# write them in Chinese names, Medication.form texts and dose-form code displays (EDQM, SNOMED CT,
# RxNorm dose forms). A transdermal patch releases its drug over days: 芬太尼透皮贴剂 and
# 丁丙诺啡透皮贴剂 are controlled-release systems (their labels), so 贴剂 counts as 缓控释制剂.
_INJECTION_WORDS = ("注射", "输液", "针剂", "粉针", "inject", "infusion", "parenteral")
_SUSTAINED_WORDS = ("缓释", "控释", "贴剂", "透皮", "extended release", "extended-release", "prolonged release",
                    "prolonged-release", "modified release", "modified-release", "controlled release",
                    "controlled-release", "sustained release", "sustained-release", "transdermal", "patch",
                    "24 hr", "12 hr")
_SUSTAINED_TOKENS = re.compile(r"\b(?:er|xr|sr|cr|xl|mr|la|cd)\b")
_OTHER_WORDS = ("即释", "普通片", "片", "胶囊", "颗粒", "口服液", "口服溶液", "溶液", "糖浆", "混悬", "栓", "散", "丸",
                "滴剂", "喷雾", "气雾", "吸入", "乳膏", "软膏", "凝胶", "immediate release", "immediate-release",
                "tablet", "capsule", "oral solution", "solution", "syrup", "suspension", "suppositor", "granule",
                "sublingual", "lozenge", "spray", "drops")


def form_class(text: str | None) -> str | None:
    """The form class a form text names (片 / 即释片 → 其他剂型, 缓释片 / 控释片 / 贴剂 → 缓控释制剂,
    注射液 / 注射用无菌粉末 → 注射剂; English dose-form displays likewise), or None when no form word."""
    if not text:
        return None
    t = text.strip().lower()
    if any(w in t for w in _INJECTION_WORDS):
        return "注射剂"
    if "即释" in t or "immediate" in t:
        return "其他剂型"
    if any(w in t for w in _SUSTAINED_WORDS) or _SUSTAINED_TOKENS.search(t):
        return "缓控释制剂"
    if any(w in t for w in _OTHER_WORDS):
        return "其他剂型"
    return None


# Dose-form codes with no display to read: SNOMED CT dose forms (as in the FHIR Medication examples)
# and the HL7 v3 orderableDrugForm mnemonics (TAB, ERTAB, INJSOL, PATCH …), read by their parts.
SNOMED_DOSE_FORMS = {"385055001": "其他剂型", "385219001": "注射剂"}
_V3_SUSTAINED = re.compile(r"^(?:ER|CR|SR|XR)[A-Z]*$|PATCH")
_V3_INJECTION = re.compile(r"INJ|^IV[A-Z]*$")
_V3_OTHER = re.compile(r"TAB|CAP|SOL|SUSP|SYR|SUPP|GRAN|POWD|LOZ|SPRY|ELIXIR|DROP|OINT|CRM|GEL")


def form_class_of_code(system: str | None, code: str | None) -> str | None:
    """The form class a dose-form code names (SNOMED CT dose form or HL7 v3 orderableDrugForm), or None."""
    if not code:
        return None
    s = (system or "").lower()
    if "snomed" in s:
        return SNOMED_DOSE_FORMS.get(code.strip())
    if "orderabledrugform" in s:
        c = code.strip().upper()
        if _V3_INJECTION.search(c):
            return "注射剂"
        if _V3_SUSTAINED.search(c):
            return "缓控释制剂"
        if _V3_OTHER.search(c):
            return "其他剂型"
    return None


def route_for_form(form: str, default: str | None) -> str | None:
    """The route a form implies; for injections the default if it is an injection route, else
    unknown (静滴, 静注 or 肌注 is the prescriber's choice, not the product's)."""
    if any(w in form for w in INJECTION_FORMS):
        return default if default in INJECTION_ROUTES else None
    for word, route in FORM_ROUTES:
        if word in form:
            return route
    return default


def atc_prefixes(atc: str) -> tuple[str, ...]:
    """Every ATC level of ``atc``: C10AA01 -> C, C10, C10A, C10AA, C10AA01."""
    return tuple(atc[:n] for n in (1, 3, 4, 5, 7) if n <= len(atc))


class DrugDictionary:
    """Fast lookups from codes and names to canonical drugs (all dicts built at load)."""

    def __init__(self, drugs: Iterable[Drug], codes: dict[tuple[str, str], Drug],
                 local: dict[tuple[str, str], Drug], allergens: AllergenIndex | None = None) -> None:
        self._drugs: dict[str, Drug] = {d.id: d for d in drugs}
        #: The allergen table (``allergens.csv``), or an empty index when the folder has none.
        self.allergens = allergens if allergens is not None else AllergenIndex((), {}, {})
        self._codes = codes  # (system kind, code) -> drug (narrowed to a product when the row says)
        self._local = local  # (institution, local code) -> drug
        self._names: dict[str, Drug] = {}
        self._class_set: frozenset[str] | None = None
        for d in self._drugs.values():
            for n in (d.name_zh, d.name_en, *d.aliases):
                if n:
                    self._names.setdefault(_norm(n), d)

    def __len__(self) -> int:
        return len(self._drugs)

    def all(self) -> list[Drug]:
        """Every canonical drug, in file order."""
        return list(self._drugs.values())

    def get(self, drug_id: str) -> Drug | None:
        """The drug with this id."""
        return self._drugs.get(drug_id)

    def by_name(self, name: str) -> Drug | None:
        """Exact Chinese or English generic name or alias (English case-insensitive)."""
        return self._names.get(_norm(name))

    def by_code(self, system: str, code: str, institution: str | None = None) -> Drug | None:
        """One coding; ``system`` may be any known spelling; unknown systems are local codes."""
        kind = SYSTEM_ALIASES.get(system.strip())
        if kind is None and system.startswith(LOCAL_SYSTEM + ":"):
            return self._local.get((system[len(LOCAL_SYSTEM) + 1:], code.strip()))
        if kind in (None, "local"):
            return self._local.get((institution, code.strip())) if institution else None
        return self._codes.get((kind, code.strip()))

    def resolve(self, codings: Sequence[tuple[str | None, str | None, str | None]], text: str | None = None,
                institution: str | None = None) -> Drug | None:
        """The canonical drug for a FHIR CodeableConcept, or None when nothing maps.

        Tries codes by system priority (ATC, national insurance, the institution's local
        codes, RxNorm), then exact names in the codings' displays and ``text``; a name with
        a form word (阿莫西林胶囊) resolves to the drug narrowed to that form.
        """
        for kind in SYSTEM_PRIORITY:
            for system, code, _ in codings:
                if not code:
                    continue
                k = SYSTEM_ALIASES.get((system or "").strip())
                if kind == "local" and k is None:
                    hit = self.by_code(system or "local", code, institution)
                elif k == kind:
                    hit = self.by_code(system or "", code, institution)
                else:
                    continue
                if hit is not None:
                    return hit
        for name in [*(d for _, _, d in codings if d), *([text] if text else [])]:
            hit = self.by_name(name) or self._by_name_with_form(name)
            if hit is not None:
                return hit
        return None

    def _by_name_with_form(self, name: str) -> Drug | None:
        n = name.strip()
        if n.startswith("注射用") and len(n) > 3:  # 注射用头孢曲松钠: a powder for injection
            base = self.by_name(n[3:])
            if base is not None:
                return base.with_form(next((f for f in base.forms if "注射" in f), None))
        for suffix in FORM_SUFFIXES:
            if n.endswith(suffix) and len(n) > len(suffix):
                base = self.by_name(n[: -len(suffix)])
                if base is not None:
                    form = next((f for f in base.forms if f.startswith(suffix) or suffix.startswith(f)), None)
                    return base.with_form(form)
        return None

    def ingredient_names(self) -> set[str]:
        """Every ingredient name (Chinese) used by any drug."""
        return {i for d in self._drugs.values() for i in d.ingredients}

    def class_names(self) -> set[str]:
        """Every class name: therapeutic classes and ATC codes at every level."""
        return {c for d in self._drugs.values() for c in d.classes}

    def is_class(self, name: str) -> bool:
        """Whether ``name`` is a class of some drug (one set probe; the set is built on first use)."""
        if self._class_set is None:
            self._class_set = frozenset(self.class_names())
        return name in self._class_set

    def drug_names(self) -> set[str]:
        """Every canonical drug's Chinese generic name."""
        return {d.name_zh for d in self._drugs.values()}


def _norm(name: str) -> str:
    return name.strip().lower().replace("䓬", "卓")


@functools.cache
def default_tables_dir() -> Path:
    """The shipped ``rulebase/tables`` folder (repository root relative to this package)."""
    return Path(__file__).resolve().parents[2] / "rulebase" / "tables"


def _parse_drug(row: Row, errors: Collector) -> Drug | None:
    ok = True

    def bad(col: str, msg: str, hint: str | None = None) -> None:
        nonlocal ok
        ok = False
        errors.error(row, col, msg, hint)

    for col in ("id", "name_zh", "ingredients", "来源"):
        if not row.get(col):
            bad(col, "must not be empty")
    atc = row.get("atc") or None
    if atc and not ATC_RE.match(atc):
        bad("atc", f"{atc!r} is not an ATC code (e.g. C10AA01)")
    route = row.get("route") or None
    if route and route not in ROUTES:
        bad("route", f"unknown route {route!r}", did_you_mean(route, ROUTES))
    grade = row.get("antimicrobial_grade") or None
    if grade and grade not in ANTIMICROBIAL_GRADES:
        bad("antimicrobial_grade", f"unknown grade {grade!r}", did_you_mean(grade, ANTIMICROBIAL_GRADES))
    control = row.get("control") or None
    if control and control not in CONTROL_CLASSES:
        bad("control", f"unknown control class {control!r}", did_you_mean(control, CONTROL_CLASSES))
    flags = row.items("flags")
    for f in flags:
        if f not in FLAGS:
            bad("flags", f"unknown flag {f!r} (allowed: {', '.join(FLAGS)})", did_you_mean(f, FLAGS))
    rx = row.items("rxnorm")
    for r in rx:
        if not r.isdigit():
            bad("rxnorm", f"RxNorm code {r!r} must be digits")
    forms: list[str] = []
    strengths: list[Strength] = []
    for entry in row.get("forms").split(";"):
        if not entry.strip():
            continue
        form, _, rest = entry.partition("=")
        form = form.strip()
        forms.append(form)
        for s in rest.split("、"):
            if s.strip():
                st = parse_strength(form, s)
                if st is None:
                    bad("forms", f"strength {s.strip()!r} of {form} is not like '10 mg', '5 mg/mL', '2 mL:10 mg' or '1%'")
                else:
                    strengths.append(st)
    if not ok:
        return None
    classes = list(dict.fromkeys([*row.items("classes"), *(atc_prefixes(atc) if atc else ())]))
    return Drug(
        id=row.get("id"), name_zh=row.get("name_zh"), name_en=row.get("name_en"),
        ingredients=row.items("ingredients"), classes=tuple(classes), atc=atc, forms=tuple(forms),
        strengths=tuple(strengths), route=route, antimicrobial_grade=grade, control=control,
        essential="基药" in flags, high_alert="高警示" in flags, herbal="饮片" in flags,
        tcm_patent="中成药" in flags, rxnorm=rx, aliases=row.items("aliases"), source=row.get("来源"),
    )


def build_dictionary(folder: Path) -> DrugDictionary:
    """Parse and validate ``drugs.csv`` and ``codes.csv`` in ``folder`` (no caching)."""
    errors = Collector()
    drugs: dict[str, Drug] = {}
    names: dict[str, str] = {}
    atcs: dict[str, str] = {}
    for row in read_rows(folder / "drugs.csv", DRUG_COLUMNS, errors):
        drug = _parse_drug(row, errors)
        if drug is None:
            continue
        if drug.id in drugs:
            errors.error(row, "id", f"duplicate drug id {drug.id!r}")
            continue
        for col, n in (("name_zh", drug.name_zh), ("name_en", drug.name_en),
                       *(("aliases", a) for a in drug.aliases)):
            if n and _norm(n) in names and names[_norm(n)] != drug.id:
                errors.error(row, col, f"name {n!r} already names drug {names[_norm(n)]!r}")
            elif n:
                names[_norm(n)] = drug.id
        if drug.atc and len(drug.atc) == 7:
            if drug.atc in atcs:
                errors.error(row, "atc", f"ATC {drug.atc} already belongs to {atcs[drug.atc]!r}")
            atcs[drug.atc] = drug.id
        drugs[drug.id] = drug
    codes: dict[tuple[str, str], Drug] = {}
    local: dict[tuple[str, str], Drug] = {}
    for d in drugs.values():
        if d.atc and len(d.atc) == 7:
            codes[("atc", d.atc)] = d
        # An ingredient RXCUI names the single-ingredient drug; a combination lists its
        # ingredients' RXCUIs for reference but is reached through its own codes.csv rows.
        if len(d.ingredients) == 1:
            for r in d.rxnorm:
                if ("rxnorm", r) in codes:
                    errors.error(None, None, f"RxNorm {r} of {d.id!r} already names {codes['rxnorm', r].id!r}",
                                 file=str(folder / "drugs.csv"))
                codes[("rxnorm", r)] = d
    codes_path = folder / "codes.csv"
    if codes_path.exists():
        for row in read_rows(codes_path, CODE_COLUMNS, errors):
            _add_code(row, drugs, codes, local, errors)
    allergens = None
    if (folder / "allergens.csv").exists():
        vocabulary = {i for d in drugs.values() for i in d.ingredients} | {c for d in drugs.values() for c in d.classes}
        allergens = build_allergens(folder / "allergens.csv", vocabulary, errors)
    errors.raise_if_any()
    return DrugDictionary(drugs.values(), codes, local, allergens)


def _add_code(row: Row, drugs: dict[str, Drug], codes: dict[tuple[str, str], Drug],
              local: dict[tuple[str, str], Drug], errors: Collector) -> None:
    system, code, drug_id = row.get("system"), row.get("code"), row.get("drug_id")
    kind = SYSTEM_ALIASES.get(system)
    if kind is None:
        errors.error(row, "system", f"unknown code system {system!r}",
                     did_you_mean(system, ["atc", "nhsa", "local", "rxnorm"]))
        return
    if not code:
        errors.error(row, "code", "must not be empty")
        return
    drug = drugs.get(drug_id)
    if drug is None:
        errors.error(row, "drug_id", f"unknown drug id {drug_id!r}", did_you_mean(drug_id, drugs))
        return
    form = row.get("form") or None
    strength = None
    if row.get("strength"):
        strength = parse_strength(form or "", row.get("strength"))
        if strength is None:
            errors.error(row, "strength", f"strength {row.get('strength')!r} is not like '10 mg' or '5 mg/mL'")
            return
    narrowed = drug.with_form(form, strength) if form else drug
    if kind == "local":
        inst = row.get("institution")
        if not inst:
            errors.error(row, "institution", "a local code needs the institution code")
            return
        key = (inst, code)
        target = local
    else:
        key = (kind, code)
        target = codes
    if key in target and target[key].id != drug.id:
        errors.error(row, "code", f"code {code} already maps to {target[key].id!r}")
        return
    target[key] = narrowed


@functools.lru_cache(maxsize=8)
def _cached(folder: str) -> DrugDictionary:
    return build_dictionary(Path(folder))


def load_dictionary(path: str | Path | None = None) -> DrugDictionary:
    """The dictionary in ``path`` (a tables folder; default the shipped rulebase/tables), cached.

    ``path`` may also be a rulebase folder holding ``tables/``. Raises RulebaseError listing
    every bad cell as ``file:line:col``.
    """
    if path is None:  # the review path: no file-system calls per prescription
        return _cached(str(default_tables_dir()))
    folder = Path(path)
    if not (folder / "drugs.csv").exists() and (folder / "tables" / "drugs.csv").exists():
        folder = folder / "tables"
    return _cached(str(folder.resolve()))
