"""Drug allergies as HIS write them → the ingredient and class names the allergy rules read.

``rulebase/tables/allergens.csv`` (layout in ``rulebase/tables/SOURCES.md``) lists the common
drug allergens of county practice: each canonical allergen (an ingredient or class name of the
drug dictionary), the names a HIS or a doctor writes for it (青霉素, 盘尼西林, 头孢, 先锋,
磺胺, penicillin, sulfa …), the classes the allergy implies (阿莫西林 → 青霉素类, β-内酰胺类),
and the SNOMED CT substance and ATC codes that mean it.

:meth:`AllergenIndex.resolve_text` reads free text the way it is written in Chinese and English
records: wrappers are stripped (对…过敏, 过敏史, 类, 药物, allergy to …, … intolerance), a
parenthesis (皮试阳性) is dropped, several substances in one text (青霉素、磺胺过敏) are split, and
"no known allergy" texts (否认药物过敏史, 无, NKDA) are recognised. What cannot be resolved is
returned so that the caller reports it to the pharmacist (never a silent drop).

The table is validated when the dictionary loads: every allergen and implied name must be an
ingredient or class of the dictionary, so the allergy rules' table lookups can match it.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from audit_engine.knowledge.csvio import Collector, did_you_mean, read_rows

ALLERGEN_COLUMNS = ("过敏原", "同义词", "展开", "snomed", "atc", "说明", "来源")
SNOMED_SYSTEMS = ("http://snomed.info/sct", "snomed", "sct", "urn:oid:2.16.840.1.113883.6.96")

# SNOMED CT situations that say "no allergy": No known allergy, No known drug allergy,
# No known environmental allergy, No known food allergy.
NO_ALLERGY_CODES = frozenset({"716186003", "409137002", "428607008", "429625007"})
NO_ALLERGY_WORDS = ("否认", "无药物过敏", "无过敏", "无已知", "未发现", "暂无", "没有", "nkda", "nka", "no known",
                    "none known", "denies")
NO_ALLERGY_EXACT = frozenset({"无", "否", "none", "nil", "no", "无药物过敏史", "无过敏史", "阴性"})
# Not recorded: no information, not an allergy the engine failed to read.
UNKNOWN_EXACT = frozenset({"不详", "未知", "不清楚", "unknown", "未询问"})
# Allergens that are not drugs (food, environment): the drug checks do not concern them.
NON_DRUG_WORDS = ("海鲜", "鱼虾", "虾", "蟹", "贝类", "鸡蛋", "蛋类", "牛奶", "奶制品", "花粉", "尘螨", "螨虫", "粉尘",
                  "灰尘", "芒果", "花生", "坚果", "小麦", "动物毛", "猫毛", "狗毛", "宠物", "乳胶", "橡胶", "酒精",
                  "紫外线", "日光", "冷空气", "食物", "seafood", "shellfish", "shrimp", "egg", "milk", "pollen",
                  "dust", "mite", "peanut", "nut", "latex", "food", "cat", "dog", "animal", "mold", "mould",
                  "bee", "wasp", "grass")

_PAREN = re.compile(r"[（(【\[][^）)】\]]*[）)】\]]")
_LABEL = re.compile(r"^(?:药物过敏史|药物过敏|过敏史|过敏原|过敏药物|过敏|allerg(?:y|ies)|drug allerg(?:y|ies))\s*[:：]\s*")
_SPLIT = re.compile(r"[、,，;；/＋+]|及|以及|和|与|\band\b|\bor\b|或|(?<=[\u4e00-\u9fff])\s+(?=[\u4e00-\u9fff])")
_PREFIXES = ("allergic to ", "allergy to ", "allergies to ", "hypersensitivity to ", "intolerance to ",
             "history of ", "h/o ", "hx of ", "既往对", "曾对", "既往", "曾有", "有对", "对", "有", "曾")
_SUFFIXES = ("过敏性休克", "过敏反应史", "过敏反应", "过敏史", "过敏", "不耐受", "皮试阳性", "阳性", "史",
             " allergies", " allergy", " intolerance", " hypersensitivity", " reaction", " anaphylaxis",
             "allergy", "intolerance")
_CLASS_WORDS = ("类抗生素", "类抗菌药物", "类抗菌药", "类药物", "类药", "抗生素", "抗菌药物", "药物", "类", "制剂",
                " drugs", " drug", " antibiotics", " antibiotic", " class", " medicines", " medicine")


def normalise_text(text: str) -> str:
    """Full-width → half-width, lower case, single spaces."""
    t = unicodedata.normalize("NFKC", text).lower()
    return re.sub(r"\s+", " ", t).strip()


def candidates(part: str) -> list[str]:
    """The substance name with wrappers removed, fewest removals first, every combination tried:
    对磺胺类药物过敏 → 对磺胺类药物, 磺胺类药物过敏 → … → 磺胺. A name that starts or ends like a
    wrapper (对乙酰氨基酚, ACE抑制剂) is therefore met before that part of it is taken off."""
    first = part.strip(" .。:：!！-")
    out = [first] if first else []
    frontier = list(out)
    while frontier:
        nxt: list[str] = []
        for p in frontier:
            for suf in (*_SUFFIXES, *_CLASS_WORDS):
                if p.endswith(suf) and len(p) > len(suf):
                    nxt.append(p[: -len(suf)])
            for pre in _PREFIXES:
                if p.startswith(pre) and len(p) > len(pre):
                    nxt.append(p[len(pre):])
        frontier = []
        for c in (x.strip(" .。:：!！-") for x in nxt):
            if c and c not in out:
                out.append(c)
                frontier.append(c)
    return out


def substance_parts(text: str) -> list[str]:
    """Each substance named in ``text`` as written (parentheses and a leading label removed)."""
    t = _LABEL.sub("", _PAREN.sub(" ", normalise_text(text))).strip()
    return [raw.strip() for raw in _SPLIT.split(t) if raw.strip(" .。:：!！-")]


def says_no_allergy(text: str) -> bool:
    """A text such as 否认药物过敏史 / 无 / NKDA: the patient has no known drug allergy."""
    t = normalise_text(text).strip(" .。")
    return t in NO_ALLERGY_EXACT or t in UNKNOWN_EXACT or any(w in t for w in NO_ALLERGY_WORDS)


# INN stems (WHO, "The use of stems in the selection of International Nonproprietary Names", 2018)
# as Chinese generic names carry them: a drug the dictionary does not list (阿洛西林, 头孢硫脒,
# 法罗培南, 吉米沙星) is still read as its family. (stem, where, allergen or class)
INN_STEMS: tuple[tuple[str, str, str], ...] = (
    ("西林", "end", "青霉素类"), ("cillin", "end", "青霉素类"), ("头孢", "start", "头孢菌素类"),
    ("cef", "start", "头孢菌素类"), ("ceph", "start", "头孢菌素类"), ("培南", "end", "碳青霉烯类"),
    ("penem", "end", "碳青霉烯类"), ("沙星", "end", "氟喹诺酮类"), ("oxacin", "end", "氟喹诺酮类"),
    ("普利", "end", "血管紧张素转换酶抑制剂"), ("pril", "end", "血管紧张素转换酶抑制剂"),
    ("沙坦", "end", "血管紧张素II受体拮抗剂"), ("sartan", "end", "血管紧张素II受体拮抗剂"),
    ("他汀", "end", "他汀类"), ("vastatin", "end", "他汀类"), ("卡因", "end", "局部麻醉药"), ("caine", "end", "局部麻醉药"),
)
_LATIN = re.compile(r"[a-z]+")


def is_non_drug(text: str) -> bool:
    """A food or environmental allergen (Chinese words by substring, English ones as whole words)."""
    t = normalise_text(text)
    words = set(_LATIN.findall(t))
    return any((w in words or w + "s" in words) if w.isascii() else w in t for w in NON_DRUG_WORDS)


@dataclass(frozen=True, slots=True)
class Allergen:
    """One row: the canonical allergen, the names the allergy resolves to, and the row's source."""

    name: str
    names: frozenset[str]
    note: str
    source: str
    line: int


@dataclass
class Resolution:
    """What one allergy text or concept resolved to: ``names`` for the rules, ``unmapped`` parts as written."""

    names: set[str] = field(default_factory=set)
    unmapped: list[str] = field(default_factory=list)
    no_allergy: bool = False


class AllergenIndex:
    """Lookups from a written name or a code to an allergen; built once when the dictionary loads."""

    def __init__(self, allergens: Iterable[Allergen], synonyms: dict[str, Allergen],
                 codes: dict[tuple[str, str], Allergen]) -> None:
        self.allergens = tuple(allergens)
        self._synonyms = synonyms
        self._codes = codes

    def __len__(self) -> int:
        return len(self.allergens)

    def by_name(self, written: str) -> Allergen | None:
        return self._synonyms.get(normalise_text(written))

    def by_code(self, system: str | None, code: str | None) -> Allergen | None:
        """A SNOMED CT substance code or an ATC code (any level) of an allergen row."""
        if not code:
            return None
        s = (system or "").strip().lower().rstrip("/")
        if any(s == x or s.startswith(x) for x in SNOMED_SYSTEMS):
            return self._codes.get(("snomed", code.strip()))
        if "atc" in s or s == "urn:oid:2.16.840.1.113883.6.73":
            return self._codes.get(("atc", code.strip().upper()))
        return None

    def synonyms(self) -> dict[str, Allergen]:
        """Every written name (normalised) → its allergen, for tests and documentation."""
        return dict(self._synonyms)

    def resolve_core(self, core: str, dictionary: Any) -> set[str] | None:
        """The names one substance (wrappers already removed) means: an allergen row, a dictionary
        drug (names, aliases, 阿莫西林胶囊), or a class name of the dictionary; None if none."""
        for candidate in (core, core + "类"):
            hit = self._synonyms.get(candidate)
            if hit is not None:
                return set(hit.names)
        if dictionary is None:
            return None
        drug = dictionary.by_name(core) or dictionary.resolve([], core)
        if drug is not None:
            return allergy_names(drug)
        for candidate in (core, core + "类"):
            if dictionary.is_class(candidate):
                return {candidate}
        return None

    def resolve_stem(self, core: str) -> set[str] | None:
        """The family an unlisted drug name belongs to by its INN stem (阿洛西林 → 青霉素类), or None."""
        for stem, where, family in INN_STEMS:
            if len(core) > len(stem) and (core.endswith(stem) if where == "end" else core.startswith(stem)):
                row = self._synonyms.get(family)
                return set(row.names) if row is not None else {family}
        return None

    def resolve_part(self, part: str, dictionary: Any) -> set[str] | None:
        """One written substance: each unwrapping step in turn, the first that resolves wins; a name
        nothing lists is then read by its INN stem."""
        cores = candidates(part)
        for core in cores:
            names = self.resolve_core(core, dictionary)
            if names is not None:
                return names
        for core in reversed(cores):  # the most unwrapped form first: 阿洛西林过敏 → 阿洛西林
            names = self.resolve_stem(core)
            if names is not None:
                return names
        return None

    def resolve_text(self, text: str, dictionary: Any) -> Resolution:
        """Resolve one free-text allergy; unresolvable drug substances come back in ``unmapped``.

        The whole text is tried first (a name holding a separator word stays whole), then each
        substance of a list (青霉素、磺胺过敏). A food or environmental allergen is not a drug
        allergy and is left out; anything else that does not resolve is reported.
        """
        out = Resolution()
        whole = _LABEL.sub("", _PAREN.sub(" ", normalise_text(text))).strip()
        if not says_no_allergy(whole):
            names = self.resolve_part(whole, dictionary) if whole else None
            if names is not None:
                out.names |= names
                return out
        # Part by part: "否认其他药物过敏，青霉素过敏" denies the rest but still names penicillin.
        denied = False
        for part in substance_parts(text):
            if says_no_allergy(part):
                denied = True
                continue
            names = self.resolve_part(part, dictionary)
            if names is not None:
                out.names |= names
            elif not is_non_drug(part):
                out.unmapped.append(part)
        out.no_allergy = (denied or not whole) and not out.names and not out.unmapped
        if not out.names and out.unmapped:  # 过敏（青霉素）: the substance may be the parenthesis
            inner = " ".join(m.group(0)[1:-1] for m in _PAREN.finditer(normalise_text(text))).strip()
            if inner:
                again = self.resolve_text(inner, dictionary)
                if again.names:
                    return again
        return out


_BROAD_ATC = re.compile(r"^[A-Z](?:\d\d[A-Z]?)?$")  # ATC levels 1-3: far too broad to be an allergen


def allergy_names(drug: Any) -> set[str]:
    """What an allergy to a dictionary drug means: its ingredients, therapeutic classes and ATC groups of 5+ characters."""
    fields = drug.item_fields()
    classes = {c for c in fields.get("classes", []) if not _BROAD_ATC.match(c)}
    return set(fields.get("ingredients", [])) | classes


def build_allergens(path: Path, vocabulary: set[str], errors: Collector) -> AllergenIndex:
    """Parse and validate ``allergens.csv`` against the dictionary's ingredient and class names."""
    allergens: list[Allergen] = []
    synonyms: dict[str, Allergen] = {}
    codes: dict[tuple[str, str], Allergen] = {}
    for row in read_rows(path, ALLERGEN_COLUMNS, errors):
        name = row.get("过敏原")
        ok = True
        for col in ("过敏原", "来源"):
            if not row.get(col):
                errors.error(row, col, "must not be empty")
                ok = False
        implied = row.items("展开")
        for col, n in (("过敏原", name), *(("展开", x) for x in implied)):
            if n and n not in vocabulary:
                errors.error(row, col, f"{n!r} is not an ingredient or class of the drug dictionary",
                             did_you_mean(n, vocabulary))
                ok = False
        snomed = row.items("snomed")
        for c in snomed:
            if not c.isdigit() or not 6 <= len(c) <= 18:
                errors.error(row, "snomed", f"SNOMED CT code {c!r} must be 6-18 digits")
                ok = False
        atc = tuple(a.upper() for a in row.items("atc"))
        for a in atc:
            if not re.match(r"^[A-Z](\d\d([A-Z]([A-Z](\d\d)?)?)?)?$", a):
                errors.error(row, "atc", f"{a!r} is not an ATC code")
                ok = False
        if not ok:
            continue
        allergen = Allergen(name, frozenset({name, *implied}), row.get("说明"), row.get("来源"), row.line)
        allergens.append(allergen)
        for written in (name, *row.items("同义词")):
            key = normalise_text(written)
            if key in synonyms and synonyms[key].name != name:
                errors.error(row, "同义词", f"{written!r} already names allergen {synonyms[key].name!r}")
                continue
            synonyms[key] = allergen
        for kind, values in (("snomed", snomed), ("atc", atc)):
            for v in values:
                if (kind, v) in codes and codes[kind, v].name != name:
                    errors.error(row, kind, f"code {v} already names allergen {codes[kind, v].name!r}")
                    continue
                codes[(kind, v)] = allergen
    return AllergenIndex(allergens, synonyms, codes)
