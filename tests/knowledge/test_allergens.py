"""Allergies as HIS write them: the allergen table, free-text unwrapping, codes, and the explicit
finding for an allergy the engine cannot read (issue 9 §2)."""

from __future__ import annotations

import copy
import functools
import shutil
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from audit_engine import intake
from audit_engine.errors import RulebaseError
from audit_engine.facts import normalise
from audit_engine.knowledge import allergens as al
from audit_engine.knowledge.dictionary import build_dictionary, load_dictionary
from audit_engine.review import load_engine, review_payload

ROOT = Path(__file__).resolve().parents[2]
TABLES = ROOT / "rulebase" / "tables"
SNOMED = "http://snomed.info/sct"

CHINESE_PREFIXES = ("", "对", "有", "既往", "曾对", "既往对", "药物过敏史：", "过敏史:")
CHINESE_SUFFIXES = ("过敏", "过敏史", "类过敏", "类药物过敏", "药物过敏", "过敏反应", "过敏（皮疹）", "过敏史（具体不详）",
                    "类抗生素过敏", "皮试阳性")
ENGLISH_WRAPPERS = ("{} allergy", "allergy to {}", "{} intolerance", "allergic to {}", "{} allergy (rash)",
                    "history of {} allergy", "{} hypersensitivity", "{}")


@functools.cache
def dictionary() -> Any:
    return load_dictionary()


def index() -> al.AllergenIndex:
    return dictionary().allergens


def synonyms() -> list[tuple[str, al.Allergen]]:
    return sorted(index().synonyms().items())


def test_the_table_holds_at_least_forty_allergens_each_cited() -> None:
    rows = index().allergens
    assert len(rows) >= 40
    assert all(r.source for r in rows)
    families = {"青霉素类", "头孢菌素类", "第一代头孢菌素", "第三代头孢菌素", "碳青霉烯类", "磺胺类", "非甾体抗炎药",
                "阿司匹林", "碘造影剂", "酯类局麻药", "酰胺类局麻药", "阿片类", "氟喹诺酮类", "大环内酯类", "四环素类",
                "芳香族抗癫痫药"}
    assert families <= {r.name for r in rows}


def test_every_allergen_names_only_dictionary_vocabulary() -> None:
    d = dictionary()
    vocabulary = d.ingredient_names() | d.class_names()
    for r in index().allergens:
        assert r.names <= vocabulary, (r.line, r.names - vocabulary)
    assert {family for _, _, family in al.INN_STEMS} <= vocabulary


@pytest.mark.parametrize(("text", "expected"), [
    ("青霉素过敏", {"青霉素类", "β-内酰胺类"}),
    ("对磺胺类药物过敏", {"磺胺类"}),
    ("头孢过敏史", {"头孢菌素类", "β-内酰胺类"}),
    ("penicillin allergy", {"青霉素类"}),
    ("Allergy to Penicillin", {"青霉素类"}),
    ("ＰＥＮＩＣＩＬＬＩＮ　ａｌｌｅｒｇｙ", {"青霉素类"}),  # full-width input from a Chinese IME
    ("对乙酰氨基酚过敏", {"对乙酰氨基酚"}),  # starts like the wrapper 对…过敏
    ("青霉素、磺胺过敏", {"青霉素类", "磺胺类"}),
    ("青霉素 头孢", {"青霉素类", "头孢菌素类"}),
    ("否认其他药物过敏，青霉素过敏", {"青霉素类"}),
    ("药物过敏（青霉素）", {"青霉素类"}),  # the substance written in the parenthesis  # a denial next to a named allergy does not hide it  # a space between Chinese names separates them
    ("药物过敏：青霉素；阿司匹林", {"青霉素类", "阿司匹林"}),
    ("先锋霉素过敏", {"头孢菌素类"}),
    ("大环内酯类抗生素过敏", {"大环内酯类"}),
    ("头孢克肟过敏", {"头孢克肟", "头孢菌素类"}),  # not in the allergen table: the dictionary's drug
    ("阿莫西林胶囊过敏", {"阿莫西林", "青霉素类"}),
    ("碘造影剂过敏", {"碘造影剂"}),
    ("利多卡因过敏", {"利多卡因", "酰胺类局麻药"}),
    ("sulfa", {"磺胺类"}),
    ("阿洛西林过敏", {"青霉素类", "β-内酰胺类"}),  # not in the dictionary: read by its INN stem
    ("头孢硫脒过敏史", {"头孢菌素类"}),
    ("法罗培南过敏", {"碳青霉烯类"}),
    ("吉米沙星过敏", {"氟喹诺酮类"}),
    ("gemifloxacin allergy", {"氟喹诺酮类"}),
])
def test_wrapped_text_resolves_to_the_allergen_and_its_classes(text: str, expected: set[str]) -> None:
    r = index().resolve_text(text, dictionary())
    assert r.unmapped == [] and not r.no_allergy
    assert expected <= r.names


@pytest.mark.parametrize("text", ["否认药物过敏史", "无", "NKDA", "无已知药物过敏", "No known drug allergies", "不详"])
def test_no_known_allergy_texts_are_not_allergies(text: str) -> None:
    r = index().resolve_text(text, dictionary())
    assert r.no_allergy and not r.names and not r.unmapped


@pytest.mark.parametrize("text", ["海鲜过敏", "花粉过敏", "鸡蛋、牛奶过敏", "Peanut allergy", "house dust mite"])
def test_food_and_environmental_allergens_are_neither_drugs_nor_unmapped(text: str) -> None:
    r = index().resolve_text(text, dictionary())
    assert not r.names and not r.unmapped


def test_a_drug_name_holding_an_english_food_word_is_not_dropped() -> None:
    # "nut" / "cat" match whole words only: an unknown drug text must come back unmapped, not ignored
    r = index().resolve_text("catapresan allergy", dictionary())
    assert r.unmapped == ["catapresan allergy"]


@pytest.mark.parametrize(("code", "name"), [("373270004", "青霉素类"), ("764146007", "青霉素类"), ("387406002", "磺胺类"),
                                            ("372687004", "阿莫西林"), ("387458008", "阿司匹林"), ("387207008", "布洛芬"),
                                            ("387517004", "对乙酰氨基酚"), ("387494007", "可待因"), ("373529000", "吗啡")])
def test_snomed_substance_codes_map(code: str, name: str) -> None:
    hit = index().by_code(SNOMED, code)
    assert hit is not None and hit.name == name


def test_an_atc_class_code_maps_to_its_class() -> None:
    hit = index().by_code("http://www.whocc.no/atc", "J01MA")
    assert hit is not None and "氟喹诺酮类" in hit.names


# ------------------------------------------------------------------ property: HIS phrasings map


def _fullwidth(text: str) -> str:
    return "".join(chr(ord(c) + 0xFEE0) if "!" <= c <= "~" else c for c in text)


@st.composite
def phrasing(draw: st.DrawFn) -> tuple[str, al.Allergen]:
    written, allergen = draw(st.sampled_from(synonyms()))
    if written.isascii():
        text = draw(st.sampled_from(ENGLISH_WRAPPERS)).format(written)
        text = draw(st.sampled_from((str.lower, str.upper, str.title, _fullwidth, str)))(text)
    else:
        suffix = draw(st.sampled_from(CHINESE_SUFFIXES))
        text = draw(st.sampled_from(CHINESE_PREFIXES)) + written + suffix
        # 安定 is diazepam but 安定类 is the benzodiazepine class: "X类" means what the table says it means
        if suffix.startswith("类"):
            allergen = index().synonyms().get(written + "类", allergen)
    return draw(st.sampled_from(("", " ", "　"))) + text, allergen


@settings(max_examples=300, deadline=None)
@given(phrasing())
def test_random_his_phrasings_of_known_allergens_map(case: tuple[str, al.Allergen]) -> None:
    text, allergen = case
    r = index().resolve_text(text, dictionary())
    assert r.unmapped == [], text
    assert allergen.names <= r.names, text


# ------------------------------------------------------------------ property: unknown text is reported


@functools.cache
def unknown_alphabet() -> str:
    """Common CJK characters that occur in no known name, wrapper or special word: text made of them
    names nothing the engine knows."""
    d = dictionary()
    known = "".join([*index().synonyms(), *d.drug_names(), *d.ingredient_names(), *d.class_names(),
                     *(a for drug in d.all() for a in drug.aliases), *al.NO_ALLERGY_WORDS, *al.NO_ALLERGY_EXACT,
                     *al.UNKNOWN_EXACT, *al.NON_DRUG_WORDS, *CHINESE_PREFIXES, *CHINESE_SUFFIXES, "过敏史药物类抗生素"])
    used = set(known)
    return "".join(c for c in map(chr, range(0x4E00, 0x4E00 + 3000)) if c not in used)[:400]


def _bundle_with_allergy(text: str) -> dict[str, Any]:
    bundle: dict[str, Any] = {"resourceType": "Bundle", "type": "collection", "entry": [
        {"resource": {"resourceType": "Patient", "id": "p", "gender": "female", "birthDate": "1980-01-01"}},
        {"resource": {"resourceType": "AllergyIntolerance", "id": "a1", "patient": {"reference": "Patient/p"},
                      "clinicalStatus": {"coding": [{"code": "active"}]}, "code": {"text": text}}},
        {"resource": {"resourceType": "MedicationRequest", "id": "m1", "status": "draft", "intent": "order",
                      "subject": {"reference": "Patient/p"},
                      "medicationCodeableConcept": {"text": "氨氯地平"},
                      "dosageInstruction": [{"text": "口服 每日1次 每次5mg"}]}},
    ]}
    return bundle


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(core=st.text(alphabet=st.sampled_from(list(unknown_alphabet())), min_size=2, max_size=6),
       prefix=st.sampled_from(CHINESE_PREFIXES), suffix=st.sampled_from(CHINESE_SUFFIXES))
def test_random_unknown_allergy_text_always_yields_the_explicit_finding(core: str, prefix: str, suffix: str) -> None:
    text = prefix + core + suffix
    facts = normalise(intake.parse_bundle(_bundle_with_allergy(text)), dictionary=dictionary())
    unmapped = [i for i in facts.issues if i.code == "ALLERGY_UNMAPPED"]
    assert len(unmapped) == 1, text
    assert core in unmapped[0].message  # the finding names the text it could not read
    assert unmapped[0].where == "Bundle.entry[1].resource.code"


def test_unmapped_allergy_reaches_a_pharmacist_through_the_review() -> None:
    result = review_payload(_bundle_with_allergy("消炎针过敏（药名不详）"), kind="bundle", engine=_engine())
    sys_findings = [f for f in result.findings if f.rule_id == "SYS-ALLERGY-UNMAPPED"]
    assert len(sys_findings) == 1 and sys_findings[0].level == 5
    assert "消炎针过敏" in sys_findings[0].message
    assert result.unchecked


def test_a_coded_allergy_with_an_unknown_code_and_no_text_is_reported_by_its_code() -> None:
    bundle = _bundle_with_allergy("x")
    bundle["entry"][1]["resource"]["code"] = {"coding": [{"system": SNOMED, "code": "999999999"}]}
    facts = normalise(intake.parse_bundle(bundle), dictionary=dictionary())
    [issue] = [i for i in facts.issues if i.code == "ALLERGY_UNMAPPED"]
    assert "999999999" in issue.message


def test_no_known_drug_allergy_code_is_an_empty_allergy_list() -> None:
    bundle = _bundle_with_allergy("x")
    bundle["entry"][1]["resource"]["code"] = {"coding": [{"system": SNOMED, "code": "409137002"}]}
    facts = normalise(intake.parse_bundle(bundle), dictionary=dictionary())
    assert facts.patient["allergies"] == [] and not facts.issues


@functools.cache
def _engine() -> Any:
    return load_engine(ROOT / "rulebase")


# ------------------------------------------------------------------ the table is checked at load


def test_an_allergen_outside_the_dictionary_vocabulary_is_reported_at_its_cell(tmp_path: Path) -> None:
    shutil.copytree(TABLES, tmp_path / "tables")
    path = tmp_path / "tables" / "allergens.csv"
    with path.open("a", encoding="utf-8") as f:
        f.write("青霉烯类,青霉烯,,,,测试,测试来源\n")
    lines = path.read_text(encoding="utf-8").splitlines()
    with pytest.raises(RulebaseError) as err:
        build_dictionary(tmp_path / "tables")
    assert f"allergens.csv:{len(lines)}:1" in str(err.value)


def test_a_synonym_naming_two_allergens_is_reported(tmp_path: Path) -> None:
    shutil.copytree(TABLES, tmp_path / "tables")
    path = tmp_path / "tables" / "allergens.csv"
    text = path.read_text(encoding="utf-8")
    path.write_text(text + "磺胺类,头孢,,,,测试,测试来源\n", encoding="utf-8")
    with pytest.raises(RulebaseError) as err:
        build_dictionary(tmp_path / "tables")
    assert "already names allergen" in str(err.value)


def test_copying_the_table_keeps_it_valid(tmp_path: Path) -> None:
    shutil.copytree(TABLES, tmp_path / "tables")
    d = build_dictionary(tmp_path / "tables")
    assert len(d.allergens) == len(index()) and copy.copy(d.allergens.synonyms()) == index().synonyms()


@pytest.mark.parametrize(("coding", "expected"), [
    ({"system": "http://www.nlm.nih.gov/research/umls/rxnorm", "code": "1191", "display": "Aspirin"}, {"阿司匹林"}),
    ({"system": "http://www.nlm.nih.gov/research/umls/rxnorm", "code": "10831"}, {"磺胺类", "磺胺甲噁唑"}),
    ({"system": "http://www.whocc.no/atc", "code": "J01DD"}, {"第三代头孢菌素", "头孢菌素类"}),
    ({"system": "http://www.whocc.no/atc", "code": "J01CA04"}, {"阿莫西林", "青霉素类", "J01CA04"}),
    ({"system": SNOMED, "code": "387406002", "display": "Sulfonamide (substance)"}, {"磺胺类"}),
])
def test_coded_allergies_resolve_through_rxnorm_atc_and_snomed(coding: dict[str, str], expected: set[str]) -> None:
    bundle = _bundle_with_allergy("x")
    bundle["entry"][1]["resource"]["code"] = {"coding": [coding]}
    facts = normalise(intake.parse_bundle(bundle), dictionary=dictionary())
    assert expected <= set(facts.patient["allergies"]) and not facts.issues


def test_an_unknown_snomed_code_with_a_readable_display_resolves_by_the_display() -> None:
    bundle = _bundle_with_allergy("x")
    bundle["entry"][1]["resource"]["code"] = {"coding": [{"system": SNOMED, "code": "111111111",
                                                          "display": "Penicillin allergy"}]}
    facts = normalise(intake.parse_bundle(bundle), dictionary=dictionary())
    assert "青霉素类" in facts.patient["allergies"] and not facts.issues


def test_a_reaction_substance_is_read_as_well_as_the_code() -> None:
    bundle = _bundle_with_allergy("青霉素过敏")
    bundle["entry"][1]["resource"]["reaction"] = [{"substance": {"text": "磺胺"}, "manifestation": [{"text": "皮疹"}]}]
    facts = normalise(intake.parse_bundle(bundle), dictionary=dictionary())
    assert {"青霉素类", "磺胺类"} <= set(facts.patient["allergies"])
