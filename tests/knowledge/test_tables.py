"""The knowledge tables, as the rule language loads them, hold what the seed rules need.

Every table is read through ``audit_engine.lang.loader.load_rulebase`` — the one table system.
Three CSV files no shipped rule reads yet (hepatic, elderly, controlled_limits) are declared
here in a small extra rulebase with rules that look them up the way a rule would, so the same
loader and checker vet them too.
"""

from __future__ import annotations

import functools
import io
import shutil
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from audit_engine import units
from audit_engine.errors import RulebaseError
from audit_engine.knowledge.dictionary import Drug, load_dictionary
from audit_engine.lang import interpreter
from audit_engine.lang import nodes as n
from audit_engine.lang.checker import Vocabulary
from audit_engine.lang.commands import cmd_check
from audit_engine.lang.loader import load_rulebase
from audit_engine.lang.tables import TableData
from audit_engine.schema import PrescriptionFacts

RULEBASE = Path(__file__).resolve().parents[2] / "rulebase"
TABLES = RULEBASE / "tables"
DICTIONARY_FILES = {"drugs.csv", "codes.csv", "allergens.csv"}  # read by the drug dictionary, not declared with 表

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
PAIR_TABLES = ("相互作用", "重复用药", "配伍禁忌", "中药配伍")

# Key columns that hold drug, ingredient, class or herb names (机构限制.对象 only when 对象类型 is 类别 or 药品).
NAME_COLUMNS = {
    "剂量上限": ("药品",), "肾功能": ("药品",), "儿童禁忌": ("药品",), "妊娠哺乳": ("药品",),
    "过敏交叉": ("过敏原", "药品类别"), "药物诊断": ("药品",), "重复用药": ("类别甲", "类别乙"),
    "相互作用": ("成分甲", "成分乙"), "合用剂量上限": ("成分甲", "成分乙"), "配伍禁忌": ("药品甲", "药品乙"),
    "中药配伍": ("药材甲", "药材乙"), "妊娠药材": ("药材",), "毒性药材": ("药材",),
    "肝功能": ("药品",), "老年用药": ("药品",),
}

UNDECLARED = """
表 肝功能 来自 "{t}/hepatic.csv" {{ 键 药品, 处置 列 等级 整数, 说明 文本, 来源 文本 优先 等级 最高 }}
表 老年用药 来自 "{t}/elderly.csv" {{ 键 药品, 处置 列 等级 整数, 说明 文本, 来源 文本 优先 等级 最高 }}
表 麻精天数 来自 "{t}/controlled_limits.csv" {{
  键 管制类别, 剂型分类, 癌痛或慢性痛
  列 天数上限 整数, 说明 文本, 来源 文本
}}
规则 T-HEPATIC "肝功能不全用药" {{
  类别 适宜性.肝功能 等级 按表 肝功能.等级 依据 "hepatic.csv"
  对每个 药品 满足 患者.肝功能不全 且 (肝功能[药品.成分, "禁用"] 存在 或 肝功能[药品.类别, "禁用"] 存在
                                       或 肝功能[药品.成分, "慎用"] 存在 或 肝功能[药品.类别, "慎用"] 存在)
  提示 "{{药品.名称}}"
}}
规则 T-ELDERLY "老年人潜在不适当用药" {{
  类别 适宜性.老年用药 等级 按表 老年用药.等级 依据 "elderly.csv"
  对每个 药品 满足 患者.年龄 至少 65 岁 且 (老年用药[药品.成分, "禁用"] 存在 或 老年用药[药品.类别, "禁用"] 存在
                                          或 老年用药[药品.成分, "慎用"] 存在 或 老年用药[药品.类别, "慎用"] 存在)
  提示 "{{药品.名称}}"
}}
规则 T-CONTROLLED "麻精药品天数" {{
  类别 合法性.麻精药品 等级 6 依据 "controlled_limits.csv"
  对每个 药品 满足 药品.天数 > 麻精天数[药品.管制类别, "注射剂", "否"].天数上限
                或 药品.天数 > 麻精天数[药品.管制类别, "缓控释制剂", "是"].天数上限
                或 药品.天数 > 麻精天数[药品.管制类别, "其他剂型", "否"].天数上限
  提示 "{{药品.名称}}"
}}
"""


@functools.cache
def shipped() -> n.Rulebase:
    return load_rulebase(RULEBASE)


@pytest.fixture(scope="module")
def extra(tmp_path_factory: pytest.TempPathFactory) -> n.Rulebase:
    """The tables of the CSV files no shipped rule declares, loaded by the language loader."""
    # Rule text reads only files inside its rulebase, so the tables are copied next to the file.
    folder = tmp_path_factory.mktemp("extra")
    shutil.copytree(TABLES, folder / "tables")
    path = folder / "extra.rules"
    path.write_text(UNDECLARED.format(t="tables"), encoding="utf-8")
    return load_rulebase(path)


@pytest.fixture(scope="module")
def tables(extra: n.Rulebase) -> dict[str, TableData]:
    return {**shipped().tables, **extra.tables}


def row(table: TableData, *key: str | None) -> dict[str, Any] | None:
    """The row whose key cells are exactly ``key`` (not the lookup's wildcard matching)."""
    names = [k.name for k in table.decl.keys]
    return next((r for r in table.rows if tuple(r.get(k) for k in names) == key), None)


def pair_row(table: TableData, a: str, b: str, *rest: str) -> dict[str, Any] | None:
    """The row of the unordered pair ``a``, ``b``: rules look pairs up in both orders."""
    return row(table, a, b, *rest) or row(table, b, a, *rest)


def amount(value: Any, unit: str) -> float:
    """A table quantity expressed in ``unit``."""
    return float(value.value / units.lookup(unit).factor)


def test_every_knowledge_csv_is_declared_and_has_rows(tables: dict[str, TableData]) -> None:
    declared = {Path(t.path).name: t for t in tables.values()}
    on_disk = {p.name for p in TABLES.glob("*.csv")} - DICTIONARY_FILES
    assert on_disk == set(declared)
    assert all(len(t.rows) > 0 for t in declared.values())


def test_the_shipped_rulebase_is_checked_against_the_real_dictionary() -> None:
    vocab = Vocabulary.default()
    assert not vocab.open and "辛伐他汀" in vocab.ingredients and "他汀类" in vocab.classes
    assert shipped().tables  # loading ran the table-cell checks with that vocabulary


def test_every_row_of_every_table_names_its_source(tables: dict[str, TableData]) -> None:
    for name, table in tables.items():
        for r in table.rows:
            assert r.get("来源"), (name, r["_line"])


def test_every_name_in_a_table_is_in_the_dictionary_vocabulary(tables: dict[str, TableData]) -> None:
    d = load_dictionary()
    vocab = d.ingredient_names() | d.class_names() | d.drug_names()
    for name, columns in NAME_COLUMNS.items():
        for column in columns:
            for r in tables[name].rows:
                assert r[column] is None or r[column] in vocab, (name, r["_line"], r[column])
    for r in tables["机构限制"].rows:
        if r["对象类型"] in ("类别", "药品"):
            assert r["对象"] in vocab, r["_line"]


def test_every_level_is_an_integer_from_0_to_9(tables: dict[str, TableData]) -> None:
    for name, table in tables.items():
        if any(c.name == "等级" for c in table.decl.columns):
            assert all(isinstance(r["等级"], int) and 0 <= r["等级"] <= 9 for r in table.rows), name


def test_interactions_hold_at_least_150_graded_pairs(tables: dict[str, TableData]) -> None:
    interactions = tables["相互作用"].rows
    assert len(interactions) >= 150
    assert all(0 <= r["等级"] <= 9 for r in interactions)


def test_dose_limits_cover_at_least_100_drugs_across_age_bands(tables: dict[str, TableData]) -> None:
    limits = tables["剂量上限"].rows
    assert len({r["药品"] for r in limits}) >= 100
    assert {r["人群"] for r in limits} >= {"新生儿", "婴儿", "幼儿", "儿童", "青少年", "成人", "老年"}


def test_no_table_holds_two_rows_for_one_key(tables: dict[str, TableData]) -> None:
    """The language lets the 优先 order pick among duplicates; the shipped data has none to pick."""
    for name, table in tables.items():
        keys = [tuple(r.get(k.name) for k in table.decl.keys) for r in table.rows]
        assert len(keys) == len(set(keys)), name


@pytest.mark.parametrize("name", PAIR_TABLES)
def test_pair_tables_hold_each_unordered_pair_once(tables: dict[str, TableData], name: str) -> None:
    seen: set[tuple[Any, ...]] = set()
    for r in tables[name].rows:
        a, b, *rest = (r.get(k.name) for k in tables[name].decl.keys)
        assert (b, a, *rest) not in seen or a == b, (name, r["_line"])
        seen.add((a, b, *rest))


@pytest.mark.parametrize(("a", "b"), EIGHTEEN_OPPOSITIONS)
def test_eighteen_oppositions_are_complete(tables: dict[str, TableData], a: str, b: str) -> None:
    table = tables["中药配伍"]
    assert pair_row(table, a, b, "十八反") is not None
    # whichever order the two herbs are prescribed in, one of the rule's two lookups finds it
    assert table.lookup([a, b, "十八反"]) or table.lookup([b, a, "十八反"])


@pytest.mark.parametrize(("a", "b"), NINETEEN_FEARS)
def test_nineteen_fears_are_complete(tables: dict[str, TableData], a: str, b: str) -> None:
    assert pair_row(tables["中药配伍"], a, b, "十九畏") is not None


def test_raw_aconite_forms_share_the_oppositions_of_their_class(tables: dict[str, TableData]) -> None:
    for raw in ("生川乌", "生草乌", "生附子"):
        assert all(pair_row(tables["中药配伍"], raw, b, "十八反") for b in WUTOU_OPPOSED), raw


@pytest.mark.parametrize(("a", "b"), [
    ("阿扎那韦", "质子泵抑制剂"), ("非布司他", "硫唑嘌呤"), ("选择性5-羟色胺再摄取抑制剂", "单胺氧化酶抑制剂"),
    ("伊立替康", "强效CYP3A4抑制剂"), ("哌替啶", "单胺氧化酶抑制剂"), ("三环类抗抑郁药", "单胺氧化酶抑制剂"),
    ("QT间期延长药物", "QT间期延长药物"), ("雷美替胺", "CYP1A2强抑制剂"), ("辛伐他汀", "强效CYP3A4抑制剂"),
    ("麦角胺", "强效CYP3A4抑制剂"), ("替扎尼定", "环丙沙星"), ("替扎尼定", "氟伏沙明"), ("曲坦类", "单胺氧化酶抑制剂"),
    ("哌甲酯", "单胺氧化酶抑制剂"), ("阿扎那韦", "强效CYP3A4诱导剂"), ("甲氨蝶呤", "甲氧苄啶"),
    ("硝酸酯类", "PDE5抑制剂"), ("氯吡格雷", "奥美拉唑"), ("氯吡格雷", "埃索美拉唑"), ("华法林", "非甾体抗炎药"),
    ("茶碱", "环丙沙星"), ("地高辛", "维拉帕米"), ("辛伐他汀", "吉非罗齐"), ("辛伐他汀", "环孢素"),
    ("华法林", "磺胺甲噁唑"),
])
def test_required_interaction_pairs_are_present(tables: dict[str, TableData], a: str, b: str) -> None:
    assert pair_row(tables["相互作用"], a, b) is not None


@pytest.mark.parametrize(("other", "limit"), [("氨氯地平", 20.0), ("维拉帕米", 10.0), ("地尔硫卓", 10.0), ("胺碘酮", 20.0)])
def test_simvastatin_dose_conditional_limits_follow_fda_2011(tables: dict[str, TableData], other: str,
                                                             limit: float) -> None:
    r = row(tables["合用剂量上限"], "辛伐他汀", other)
    assert r is not None and r["单位"] == "mg" and amount(r["甲日剂量上限"], "mg") == limit


def test_a_real_pair_is_found_through_the_dictionary_sets_the_rules_pass() -> None:
    d, table = load_dictionary(), shipped().tables["相互作用"]
    simva, clari = d.by_name("辛伐他汀"), d.by_name("克拉霉素")
    assert simva is not None and clari is not None
    hit = table.lookup([list(simva.ingredients), list(clari.classes)])  # 相互作用[甲.成分, 乙.类别]
    assert hit is not None and (hit["成分甲"], hit["成分乙"]) == ("辛伐他汀", "强效CYP3A4抑制剂")


def _facts(drugs: list[Drug]) -> PrescriptionFacts:
    items = [{**d.item_fields(), "id": f"{d.id}~{k}", "reference": f"MedicationRequest/{d.id}~{k}"}
             for k, d in enumerate(drugs)]
    return PrescriptionFacts(items=items, patient={"population": "成人"}, prescription={"type": "门诊"},
                             prescriber={}, institution={"level": "县级医院"})


def _seen(drugs: list[Drug]) -> list[tuple[str, int, tuple[str, ...]]]:
    """Findings as (rule, level, implicated drugs), independent of the items' positions."""
    found = interpreter.evaluate(shipped(), _facts(drugs))
    return sorted((f.rule_id, f.level, tuple(sorted(ref.split("/")[-1].split("~")[0] for ref in f.implicated)))
                  for f in found)


@settings(max_examples=40, deadline=None)
@given(data=st.data())
def test_pair_findings_do_not_depend_on_item_order(data: st.DataObject) -> None:
    drugs = load_dictionary().all()
    x = data.draw(st.sampled_from(drugs))
    y = data.draw(st.sampled_from(drugs))
    assert _seen([x, y]) == _seen([y, x])


def test_key_clinical_facts_are_encoded(tables: dict[str, TableData]) -> None:
    t = tables

    def get(table: str, *key: str | None) -> dict[str, Any]:
        r = row(t[table], *key)
        assert r is not None, (table, key)
        return r

    assert amount(get("肾功能", "二甲双胍", "禁用")["eGFR低于"], "mL/min/1.73m²") == 30
    assert amount(get("肾功能", "二甲双胍", "慎用")["eGFR低于"], "mL/min/1.73m²") == 45
    for drug, years in (("可待因", 12), ("四环素类", 8), ("氟喹诺酮类", 18)):
        r = get("儿童禁忌", drug)
        assert r["年龄单位"] == "岁" and amount(r["年龄低于"], "岁") == years
    assert amount(get("剂量上限", "对乙酰氨基酚", "成人")["日上限"], "mg") == 4000
    assert pair_row(t["配伍禁忌"], "含钙制剂", "头孢曲松") is not None
    fuzi = get("毒性药材", "附子")
    assert (amount(fuzi["日下限"], "g"), amount(fuzi["日上限"], "g")) == (3, 15)
    assert amount(get("毒性药材", "细辛")["日上限"], "g") == 3
    assert row(t["过敏交叉"], "青霉素类", "头孢菌素类", "慎用") is not None
    assert row(t["过敏交叉"], "青霉素类", "头孢菌素类", "禁用") is None
    assert pair_row(t["重复用药"], "血管紧张素II受体拮抗剂", "血管紧张素转换酶抑制剂") is not None
    assert row(t["机构限制"], "村卫生室", "抗菌级别", "特殊使用级") is not None


@pytest.mark.parametrize("control", ["麻醉", "精一"])
def test_controlled_day_limits_cover_every_form_and_pain_status(tables: dict[str, TableData], control: str) -> None:
    expected = {("注射剂", "否"): 1, ("缓控释制剂", "否"): 7, ("其他剂型", "否"): 3,
                ("注射剂", "是"): 3, ("缓控释制剂", "是"): 15, ("其他剂型", "是"): 7}
    for (form, pain), days in expected.items():
        r = row(tables["麻精天数"], control, form, pain)
        assert r is not None and r["天数上限"] == days, (form, pain)


# ---------------------------------------------------------------- bad rows in a copy of the rulebase

@pytest.fixture
def copy(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A copy of the shipped rulebase in the working directory, so diagnostics say rulebase/…"""
    shutil.copytree(RULEBASE, tmp_path / "rulebase")
    monkeypatch.chdir(tmp_path)
    return tmp_path / "rulebase"


def _append(path: Path, text: str) -> int:
    """Append rows to a CSV; the line number of the first appended row."""
    before = path.read_text(encoding="utf-8")
    path.write_text(before + text, encoding="utf-8")
    return len(before.splitlines()) + 1


def test_check_reports_a_misspelled_ingredient_at_the_csv_cell(copy: Path) -> None:
    line = _append(copy / "tables" / "interactions.csv", "华法林,布洛芬片,5,机制,建议,说明书\n")
    out = io.StringIO()
    assert cmd_check("rulebase", out) == 1
    assert out.getvalue() == (
        f"rulebase/tables/interactions.csv:{line}:5: 列“成分乙”：药品字典中没有成分或药物类别“布洛芬片”"
        " (是否应为“布洛芬”？)\n"
        "    华法林,布洛芬片,5,机制,建议,说明书\n"
        "           ^^^^^^^^\n"
        "1 个错误\n")


def test_a_drug_name_where_rules_pass_ingredients_is_reported(copy: Path) -> None:
    line = _append(copy / "tables" / "renal.csv", "复方磺胺甲噁唑,禁用,15,,,7,说明,说明书\n")
    with pytest.raises(RulebaseError) as err:
        load_rulebase("rulebase")
    assert [d.render().splitlines()[0] for d in err.value.diagnostics] == [
        f"rulebase/tables/renal.csv:{line}:1: 列“药品”：“复方磺胺甲噁唑”不是成分或药物类别："
        "它是药品名称，但没有规则按药品名称查询此列"]


def test_bad_level_and_missing_source_are_reported_together(copy: Path) -> None:
    line = _append(copy / "tables" / "interactions.csv",
                   "布洛芬,对乙酰氨基酚,12,机制,建议,说明书\n氨氯地平,辛伐他汀,3,机制,建议,\n")
    with pytest.raises(RulebaseError) as err:
        load_rulebase("rulebase")
    assert sorted(d.render().splitlines()[0] for d in err.value.diagnostics) == [
        f"rulebase/tables/interactions.csv:{line}:12: 列“等级”用作等级，但值“12”不是 0–9 的整数",
        f"rulebase/tables/interactions.csv:{line + 1}:19: 列“来源”为空：每行知识都须注明出处"]


def test_an_amount_without_its_unit_is_an_error(copy: Path) -> None:
    line = _append(copy / "tables" / "dose_limits.csv", "叶酸,儿童,5,10,,,,说明书\n")
    with pytest.raises(RulebaseError) as err:
        load_rulebase("rulebase")
    assert sorted(d.render().splitlines()[0] for d in err.value.diagnostics) == [
        f"rulebase/tables/dose_limits.csv:{line}:7: 列“单次上限”：缺少单位（列“单位”为空）",
        f"rulebase/tables/dose_limits.csv:{line}:9: 列“日上限”：缺少单位（列“单位”为空）"]
