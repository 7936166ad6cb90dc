"""The knowledge tables load, hold what the seed rules need, and reject bad rows precisely."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from audit_engine.errors import RulebaseError
from audit_engine.knowledge.dictionary import default_tables_dir, load_dictionary
from audit_engine.knowledge.tables import SPECS, build_tables, load_tables

WUTOU = ["川乌", "草乌", "附子"]
WUTOU_OPPOSED = ["半夏", "瓜蒌", "瓜蒌子", "瓜蒌皮", "天花粉", "川贝母", "浙贝母", "平贝母", "伊贝母", "湖北贝母", "白蔹", "白及"]
GANCAO_OPPOSED = ["甘遂", "京大戟", "红大戟", "海藻", "芫花"]
LILU_OPPOSED = ["人参", "西洋参", "党参", "丹参", "玄参", "南沙参", "北沙参", "苦参", "细辛", "白芍", "赤芍"]
EIGHTEEN_OPPOSITIONS = (
    [(a, b) for a in WUTOU for b in WUTOU_OPPOSED]
    + [("甘草", b) for b in GANCAO_OPPOSED]
    + [("藜芦", b) for b in LILU_OPPOSED]
)
NINETEEN_FEARS = [("硫黄", "芒硝"), ("水银", "砒霜"), ("狼毒", "密陀僧"), ("巴豆", "牵牛子"), ("丁香", "郁金"),
                  ("川乌", "犀角"), ("草乌", "犀角"), ("芒硝", "三棱"), ("肉桂", "赤石脂"), ("人参", "五灵脂")]


def test_every_table_loads_with_rows() -> None:
    tables = load_tables()
    for spec in SPECS:
        assert len(tables[spec.name]) > 0, spec.file


def test_every_row_of_every_table_names_its_source() -> None:
    for table in load_tables():
        for row in table.rows:
            assert row["来源"], (table.spec.file, row["_line"])


def test_every_name_in_a_table_is_in_the_dictionary_vocabulary() -> None:
    d = load_dictionary()
    vocab = d.ingredient_names() | d.class_names() | d.drug_names()
    for table in load_tables():
        for col in table.spec.columns:
            if col.kind in ("name", "herb"):
                for row in table.rows:
                    assert row[col.name] in vocab, (table.spec.file, row["_line"], row[col.name])


def test_interactions_hold_at_least_150_graded_pairs() -> None:
    table = load_tables()["相互作用"]
    assert len(table) >= 150
    assert all(0 <= row["等级"] <= 9 for row in table.rows)


def test_dose_limits_cover_at_least_100_drugs_across_age_bands() -> None:
    table = load_tables()["剂量上限"]
    assert len({row["药品"] for row in table.rows}) >= 100
    assert {row["人群"] for row in table.rows} >= {"新生儿", "婴儿", "幼儿", "儿童", "青少年", "成人", "老年"}


@pytest.mark.parametrize(("a", "b"), EIGHTEEN_OPPOSITIONS)
def test_eighteen_oppositions_are_complete(a: str, b: str) -> None:
    row = load_tables()["中药配伍禁忌"].get(a, b)
    assert row is not None and row["类型"] == "十八反"
    assert load_tables()["中药配伍禁忌"].get(b, a) is row


@pytest.mark.parametrize(("a", "b"), NINETEEN_FEARS)
def test_nineteen_fears_are_complete(a: str, b: str) -> None:
    row = load_tables()["中药配伍禁忌"].get(a, b)
    assert row is not None and row["类型"] == "十九畏"


def test_raw_aconite_forms_share_the_oppositions_of_their_class() -> None:
    table = load_tables()["中药配伍禁忌"]
    for raw in ("生川乌", "生草乌", "生附子"):
        assert all(table.get(raw, b) for b in WUTOU_OPPOSED)


@pytest.mark.parametrize(("a", "b"), [
    ("阿扎那韦", "质子泵抑制剂"), ("非布司他", "硫唑嘌呤"), ("选择性5-羟色胺再摄取抑制剂", "单胺氧化酶抑制剂"),
    ("伊立替康", "强效CYP3A4抑制剂"), ("哌替啶", "单胺氧化酶抑制剂"), ("三环类抗抑郁药", "单胺氧化酶抑制剂"),
    ("QT间期延长药物", "QT间期延长药物"), ("雷美替胺", "CYP1A2强抑制剂"), ("辛伐他汀", "强效CYP3A4抑制剂"),
    ("麦角胺", "强效CYP3A4抑制剂"), ("替扎尼定", "环丙沙星"), ("替扎尼定", "氟伏沙明"), ("曲坦类", "单胺氧化酶抑制剂"),
    ("哌甲酯", "单胺氧化酶抑制剂"), ("阿扎那韦", "强效CYP3A4诱导剂"), ("甲氨蝶呤", "甲氧苄啶"),
    ("硝酸酯类", "PDE5抑制剂"), ("氯吡格雷", "奥美拉唑"), ("氯吡格雷", "埃索美拉唑"), ("华法林", "非甾体抗炎药"),
    ("茶碱", "环丙沙星"), ("地高辛", "维拉帕米"), ("辛伐他汀", "吉非罗齐"), ("辛伐他汀", "环孢素"),
])
def test_required_interaction_pairs_are_present(a: str, b: str) -> None:
    assert load_tables()["相互作用"].get(a, b) is not None


@pytest.mark.parametrize(("statin", "other", "limit"), [
    ("辛伐他汀", "氨氯地平", 20.0), ("辛伐他汀", "维拉帕米", 10.0), ("辛伐他汀", "地尔硫卓", 10.0), ("辛伐他汀", "胺碘酮", 20.0),
])
def test_simvastatin_dose_conditional_limits_follow_fda_2011(statin: str, other: str, limit: float) -> None:
    row = load_tables()["相互作用剂量"].get(statin, other)
    assert row is not None and row["甲日剂量上限"] == limit and row["单位"] == "mg"


def test_interaction_matches_are_symmetric_for_a_real_pair() -> None:
    d, table = load_dictionary(), load_tables()["相互作用"]
    simva, clari = d.by_name("辛伐他汀"), d.by_name("克拉霉素")
    assert simva is not None and clari is not None
    a = {*simva.ingredients, *simva.classes}
    b = {*clari.ingredients, *clari.classes}
    hits = table.matches(a, b)
    assert any(r["成分甲"] == "辛伐他汀" and r["成分乙"] == "强效CYP3A4抑制剂" for r in hits)
    assert hits == table.matches(b, a)


@settings(max_examples=40, deadline=None)
@given(data=st.data())
def test_pair_matching_does_not_depend_on_item_order(data: st.DataObject) -> None:
    drugs = load_dictionary().all()
    x = data.draw(st.sampled_from(drugs))
    y = data.draw(st.sampled_from(drugs))
    a, b = {*x.ingredients, *x.classes}, {*y.ingredients, *y.classes}
    for name in ("相互作用", "重复用药", "配伍禁忌", "中药配伍禁忌"):
        table = load_tables()[name]
        assert table.matches(a, b) == table.matches(b, a)


def test_key_clinical_facts_are_encoded() -> None:
    t = load_tables()
    assert t["肾功能"].get("二甲双胍", "禁用")["eGFR低于"] == 30  # type: ignore[index]
    assert t["肾功能"].get("二甲双胍", "慎用")["eGFR低于"] == 45  # type: ignore[index]
    assert t["儿童禁忌"].get("可待因")["年龄低于"] == 12  # type: ignore[index]
    assert t["儿童禁忌"].get("四环素类")["年龄低于"] == 8  # type: ignore[index]
    assert t["儿童禁忌"].get("氟喹诺酮类")["年龄低于"] == 18  # type: ignore[index]
    assert t["剂量上限"].get("对乙酰氨基酚", "成人")["日上限"] == 4000  # type: ignore[index]
    assert t["配伍禁忌"].get("含钙制剂", "头孢曲松") is not None
    assert (t["毒性药材剂量"].get("附子")["日下限"], t["毒性药材剂量"].get("附子")["日上限"]) == (3, 15)  # type: ignore[index]
    assert t["毒性药材剂量"].get("细辛")["日上限"] == 3  # type: ignore[index]
    assert t["过敏交叉"].get("青霉素类", "头孢菌素类")["处置"] == "慎用"  # type: ignore[index]
    assert t["重复用药"].get("血管紧张素II受体拮抗剂", "血管紧张素转换酶抑制剂") is not None
    assert t["机构限制"].get("村卫生室", "抗菌级别", "特殊使用级") is not None


@pytest.mark.parametrize("control", ["麻醉", "精一"])
def test_controlled_day_limits_cover_every_form_and_pain_status(control: str) -> None:
    t = load_tables()["麻精天数"]
    expected = {("注射剂", "否"): 1, ("缓控释制剂", "否"): 7, ("其他剂型", "否"): 3,
                ("注射剂", "是"): 3, ("缓控释制剂", "是"): 15, ("其他剂型", "是"): 7}
    for (form, pain), days in expected.items():
        assert t.get(control, form, pain)["天数上限"] == days  # type: ignore[index]


def _copy_tables(tmp_path: Path) -> Path:
    folder = tmp_path / "tables"
    shutil.copytree(default_tables_dir(), folder)
    return folder


def test_unknown_name_in_a_table_is_reported_with_position_and_suggestion(tmp_path: Path) -> None:
    folder = _copy_tables(tmp_path)
    path = folder / "interactions.csv"
    path.write_text(path.read_text(encoding="utf-8") + "华法林,布洛芬片,5,机制,建议,说明书\n", encoding="utf-8")
    with pytest.raises(RulebaseError) as err:
        build_tables(folder, load_dictionary(folder))
    line = len(path.read_text(encoding="utf-8").splitlines())
    assert f"interactions.csv:{line}:2:" in str(err.value)
    assert "did you mean '布洛芬'" in str(err.value)


def test_bad_level_missing_source_and_reversed_duplicate_pair_are_all_reported(tmp_path: Path) -> None:
    folder = _copy_tables(tmp_path)
    path = folder / "interactions.csv"
    path.write_text(path.read_text(encoding="utf-8")
                    + "布洛芬,对乙酰氨基酚,12,机制,建议,说明书\n"
                    + "氨氯地平,辛伐他汀,3,机制,建议,\n"
                    + "强效CYP3A4抑制剂,辛伐他汀,8,机制,建议,说明书\n", encoding="utf-8")
    with pytest.raises(RulebaseError) as err:
        build_tables(folder, load_dictionary(folder))
    messages = [d.message for d in err.value.diagnostics]
    assert any("level '12' must be an integer 0-9" in m for m in messages)
    assert any(m.startswith("column '来源'") for m in messages)
    assert any("duplicate key 强效CYP3A4抑制剂 + 辛伐他汀" in m for m in messages)


def test_an_amount_without_its_unit_is_an_error(tmp_path: Path) -> None:
    folder = _copy_tables(tmp_path)
    path = folder / "dose_limits.csv"
    path.write_text(path.read_text(encoding="utf-8") + "叶酸,儿童,5,10,,,,说明书\n", encoding="utf-8")
    with pytest.raises(RulebaseError, match="单次上限 is given, so 单位 must not be empty"):
        build_tables(folder, load_dictionary(folder))
