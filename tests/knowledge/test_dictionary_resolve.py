"""Resolving codes and names to canonical drugs, and converting doses through strengths."""

from __future__ import annotations

import csv
import glob
import json
import math
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from audit_engine.errors import RulebaseError
from audit_engine.knowledge.dictionary import (
    ATC_SYSTEM,
    NHSA_SYSTEM,
    RXNORM_SYSTEM,
    build_dictionary,
    default_tables_dir,
    load_dictionary,
)

DATA = Path(__file__).parent / "data"
# The shipped copy of the external data (see its SOURCES.md); it holds every resource type that carries RxNorm codes.
EXTERNAL = Path(__file__).resolve().parents[2] / "fixtures" / "fhir" / "intake" / "external"


def _external_rows() -> list[dict[str, str]]:
    with open(DATA / "external_rxnorm_codes.csv", encoding="utf-8") as fh:
        return list(csv.DictReader(line for line in fh if not line.startswith("#")))


@pytest.mark.parametrize("row", _external_rows(), ids=lambda r: r["code"])
def test_every_external_rxnorm_product_maps_to_its_county_drug(row: dict[str, str]) -> None:
    drug = load_dictionary().resolve([(RXNORM_SYSTEM, row["code"], row["display"])])
    assert drug is not None
    assert drug.name_zh == row["expected_name_zh"]


def test_fixture_lists_every_rxnorm_code_in_the_external_data() -> None:
    seen: set[str] = set()

    def walk(o: object) -> None:
        if isinstance(o, dict):
            if "code" in o and "rxnorm" in str(o.get("system", "")).lower():
                seen.add(str(o["code"]))
            for v in o.values():
                walk(v)
        elif isinstance(o, list):
            for v in o:
                walk(v)

    for f in glob.glob(str(EXTERNAL / "synthea-bulk-10" / "*.ndjson")):
        for line in Path(f).read_text(encoding="utf-8").splitlines():
            walk(json.loads(line))
    for f in glob.glob(str(EXTERNAL / "synthea-bundles" / "*.json")) + glob.glob(str(EXTERNAL / "hl7-pddi-cds" / "*.json")):
        walk(json.loads(Path(f).read_text(encoding="utf-8")))
    # Equality, not inclusion: an empty or partial walk (files missing) must fail, not pass.
    assert seen == {r["code"] for r in _external_rows()}


def test_rxnorm_product_pins_strength_so_tablets_convert_to_mg() -> None:
    drug = load_dictionary().resolve([(RXNORM_SYSTEM, "314076", "lisinopril 10 MG Oral Tablet")])
    assert drug is not None and drug.name_zh == "赖诺普利"
    assert drug.canonical_dose(2, "片") == ("mass", 20.0)


def test_resolves_by_atc_code() -> None:
    drug = load_dictionary().resolve([(ATC_SYSTEM, "C10AA01", None)])
    assert drug is not None and drug.name_zh == "辛伐他汀"


def test_resolves_by_national_insurance_code() -> None:
    d = load_dictionary()
    with open(default_tables_dir() / "codes.csv", encoding="utf-8") as fh:
        code = next(r["code"] for r in csv.DictReader(fh) if r["system"] == "nhsa" and r["drug_id"] == "warfarin")
    drug = d.resolve([(NHSA_SYSTEM, code, None)])
    assert drug is not None and drug.name_zh == "华法林"


def test_local_code_needs_the_institution_that_owns_it() -> None:
    d = load_dictionary()
    coding = [("http://his.example/local-drug", "YP0001", None)]
    assert d.resolve(coding, institution="DEMO-COUNTY-HOSP").name_zh == "阿莫西林"  # type: ignore[union-attr]
    assert d.resolve(coding, institution="SOMEWHERE-ELSE") is None
    assert d.resolve(coding) is None
    assert d.resolve([("urn:cn:local:DEMO-COUNTY-HOSP", "YP0001", None)]).name_zh == "阿莫西林"  # type: ignore[union-attr]


def test_resolves_english_names_case_insensitively_and_aliases() -> None:
    d = load_dictionary()
    assert d.resolve([], text="Atorvastatin").name_zh == "阿托伐他汀"  # type: ignore[union-attr]
    assert d.resolve([(None, None, "acetaminophen")]).name_zh == "对乙酰氨基酚"  # type: ignore[union-attr]
    assert d.by_name("地尔硫䓬") is d.by_name("地尔硫卓")


def test_name_with_form_word_narrows_the_drug_to_that_form() -> None:
    drug = load_dictionary().resolve([], text="头孢曲松注射用无菌粉末")
    assert drug is not None and drug.forms == ("注射用无菌粉末",)
    assert drug.item_fields()["injection"] is True


def test_code_takes_priority_over_a_conflicting_name() -> None:
    drug = load_dictionary().resolve([(ATC_SYSTEM, "B01AA03", "阿司匹林")], text="阿司匹林")
    assert drug is not None and drug.name_zh == "华法林"


def test_unknown_drug_resolves_to_none() -> None:
    assert load_dictionary().resolve([(RXNORM_SYSTEM, "999999999", "Unobtainium 5 MG")], text="未知药") is None


def test_item_fields_omit_what_depends_on_the_prescribed_form() -> None:
    fields = load_dictionary().by_name("地塞米松").item_fields()  # type: ignore[union-attr]
    assert "injection" not in fields and "form" not in fields
    assert fields["drug_id"] == "dexamethasone" and "H02AB02" in fields["classes"]


def test_herb_item_fields_mark_decoction_piece_and_toxic_control() -> None:
    fields = load_dictionary().by_name("生半夏").item_fields()  # type: ignore[union-attr]
    assert fields["herbal"] is True and fields["control"] == "毒性" and fields["route"] == "煎服"


def test_ampoule_strength_converts_volume_to_mass() -> None:
    furosemide = load_dictionary().by_name("呋塞米").with_form("注射液")  # type: ignore[union-attr]
    assert furosemide.canonical_dose(4, "mL") == ("mass", 40.0)
    assert furosemide.canonical_dose(1, "支") == ("mass", 20.0)


def test_tablets_do_not_convert_when_several_strengths_exist() -> None:
    assert load_dictionary().by_name("辛伐他汀").canonical_dose(1, "片") is None  # type: ignore[union-attr]


def test_unknown_unit_does_not_convert() -> None:
    assert load_dictionary().by_name("辛伐他汀").canonical_dose(1, "勺") is None  # type: ignore[union-attr]


@settings(max_examples=60, deadline=None)
@given(value=st.floats(min_value=0.001, max_value=1e5, allow_nan=False), unit=st.sampled_from(["mg", "g", "µg", "mcg"]))
def test_mass_units_round_trip_through_mg(value: float, unit: str) -> None:
    drug = load_dictionary().by_name("阿莫西林")
    assert drug is not None
    dim, mg = drug.canonical_dose(value, unit)  # type: ignore[misc]
    factor = {"mg": 1.0, "g": 1000.0, "µg": 0.001, "mcg": 0.001}[unit]
    assert dim == "mass" and math.isclose(mg / factor, value, rel_tol=1e-9)
    assert math.isclose(drug.canonical_dose(mg / 1000.0, "g")[1], mg, rel_tol=1e-9)  # type: ignore[index]


@settings(max_examples=60, deadline=None)
@given(count=st.integers(min_value=1, max_value=20), row=st.sampled_from(_external_rows()))
def test_count_doses_scale_linearly_with_the_pinned_strength(count: int, row: dict[str, str]) -> None:
    drug = load_dictionary().resolve([(RXNORM_SYSTEM, row["code"], None)])
    assert drug is not None
    one = drug.canonical_dose(1, "片")
    many = drug.canonical_dose(count, "片")
    assert (one is None) == (many is None)
    if one is not None and many is not None:
        assert one[0] == many[0] and math.isclose(many[1], one[1] * count)


def _write(tmp: Path, drugs: str, codes: str = "system,code,drug_id,institution,form,strength,display\n") -> Path:
    (tmp / "drugs.csv").write_text(drugs, encoding="utf-8")
    (tmp / "codes.csv").write_text(codes, encoding="utf-8")
    return tmp


HEADER = "id,name_zh,name_en,atc,ingredients,classes,forms,route,antimicrobial_grade,control,flags,rxnorm,aliases,来源\n"


def test_bad_cell_is_reported_with_file_line_and_column(tmp_path: Path) -> None:
    folder = _write(tmp_path, HEADER + "x,某药,x,C10AA01,某药,,片剂=10 mg,口服,非限制级,,,,,LBL\n")
    with pytest.raises(RulebaseError) as err:
        build_dictionary(folder)
    text = str(err.value)
    assert f"{folder / 'drugs.csv'}:2:9:" in text
    assert "antimicrobial_grade" in text and "did you mean '非限制使用级'" in text


def test_every_bad_row_is_reported_at_once(tmp_path: Path) -> None:
    folder = _write(tmp_path, HEADER + "a,甲,a,C1,甲,,片剂=ten mg,口服,,,,,,LBL\nb,乙,b,,乙,,,飞,,,,,,\n")
    with pytest.raises(RulebaseError) as err:
        build_dictionary(folder)
    lines = {(d.line, d.message.split(":")[0]) for d in err.value.diagnostics}
    assert (2, "column 'atc'") in lines and (2, "column 'forms'") in lines
    assert (3, "column 'route'") in lines and (3, "column '来源'") in lines


def test_code_row_for_unknown_drug_suggests_the_closest_id(tmp_path: Path) -> None:
    folder = _write(tmp_path, HEADER + "aspirin,阿司匹林,aspirin,B01AC06,阿司匹林,,片剂=100 mg,口服,,,,,,LBL\n",
                    "system,code,drug_id,institution,form,strength,display\nrxnorm,1,asprin,,,,x\n")
    with pytest.raises(RulebaseError) as err:
        build_dictionary(folder)
    assert "did you mean 'aspirin'" in str(err.value)


def test_duplicate_names_are_rejected(tmp_path: Path) -> None:
    folder = _write(tmp_path, HEADER + "a,甲,a,,甲,,,口服,,,,,,LBL\nb,甲,b,,甲,,,口服,,,,,,LBL\n")
    with pytest.raises(RulebaseError, match="already names drug 'a'"):
        build_dictionary(folder)


def test_load_dictionary_is_cached() -> None:
    assert load_dictionary() is load_dictionary()


def test_narrowing_to_a_form_fixes_the_route_it_implies() -> None:
    d = load_dictionary()
    dexa = d.by_name("地塞米松")
    assert dexa is not None and dexa.route == "口服"
    assert "route" not in dexa.with_form("注射液").item_fields()
    assert d.by_name("头孢呋辛").with_form("片剂").route == "口服"  # type: ignore[union-attr]
    assert d.by_name("硝酸甘油").with_form("舌下片").route == "舌下"  # type: ignore[union-attr]
    assert d.by_name("头孢曲松").with_form("注射用无菌粉末").route == "静滴"  # type: ignore[union-attr]


def test_item_fields_use_only_catalogue_fields_with_valid_values() -> None:
    from audit_engine.schema import FIELDS

    item_fields = {f.name: f for f in FIELDS if f.entity == "item"}
    for drug in load_dictionary().all():
        for key, value in drug.item_fields().items():
            assert key in item_fields, key
            spec = item_fields[key]
            if spec.type == "enum":
                assert value in spec.values, (drug.id, key, value)
            if spec.type == "textset":
                assert value == sorted(value)


@pytest.mark.parametrize(("text", "name", "form"), [
    ("注射用头孢曲松钠", "头孢曲松", "注射用无菌粉末"),
    ("盐酸二甲双胍缓释片", "二甲双胍", "缓释片"),
    ("硫酸氢氯吡格雷片", "氯吡格雷", "片剂"),
    ("呋塞米注射液", "呋塞米", "注射液"),
])
def test_his_product_names_resolve_with_their_form(text: str, name: str, form: str) -> None:
    drug = load_dictionary().resolve([], text=text)
    assert drug is not None and drug.name_zh == name and drug.forms == (form,)
