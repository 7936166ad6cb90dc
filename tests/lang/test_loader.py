"""Loading follows imports, folds overrides per institution, and hashes every source byte."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from audit_engine.lang import nodes as n
from audit_engine.lang.loader import load_rulebase

from .conftest import VOCAB, rule

Load = Callable[..., n.Rulebase]
Errors = Callable[..., list[str]]


def test_imports_load_first_and_rules_keep_load_order(load: Load) -> None:
    rb = load('导入 "base/a.rules"\n' + rule("MAIN", "当 患者.妊娠"),
              **{"base__a.rules": '导入 "b.rules"\n' + rule("A", "当 患者.妊娠"),
                 "base__b.rules": rule("B", "当 患者.妊娠")})
    assert [r.id for r in rb.rules] == ["B", "A", "MAIN"]
    assert rb.files == ("base/b.rules", "base/a.rules", "main.rules")


def test_a_file_imported_twice_loads_once(load: Load) -> None:
    rb = load('导入 "a.rules"\n导入 "b.rules"\n' + rule("MAIN", "当 患者.妊娠"),
              **{"a.rules": '导入 "common.rules"\n', "b.rules": '导入 "common.rules"\n',
                 "common.rules": rule("C", "当 患者.妊娠")})
    assert [r.id for r in rb.rules] == ["C", "MAIN"]


def test_import_cycle_is_reported_with_the_chain(errors: Errors) -> None:
    (msg,) = errors('导入 "a.rules"\n', **{"a.rules": '导入 "main.rules"\n'})
    assert msg == ("a.rules:1:4: 循环导入：main.rules → a.rules → main.rules\n"
                   '    导入 "main.rules"\n'
                   "         ^^^^^^^^^^^^")


def test_missing_import_suggests_a_file_next_to_it(errors: Errors) -> None:
    (msg,) = errors('导入 "bsae.rules"\n', **{"base.rules": ""})
    assert msg.splitlines()[0] == "main.rules:1:4: 导入的文件不存在：bsae.rules (是否应为“base.rules”？)"


def test_missing_path_and_empty_folder(tmp_path: Path) -> None:
    from audit_engine.errors import RulebaseError

    for target, text in ((tmp_path / "none.rules", "规则文件或目录不存在"), (tmp_path, "目录中没有 .rules 文件")):
        try:
            load_rulebase(target, vocabulary=VOCAB)
        except RulebaseError as err:
            assert err.diagnostics[0].message == text
        else:
            raise AssertionError("expected a RulebaseError")


def test_folder_loads_every_rules_file(write: Callable[..., Path]) -> None:
    write("x/one.rules", rule("ONE", "当 患者.妊娠"))
    write("x/two.rules", rule("TWO", "当 患者.妊娠"))
    rb = load_rulebase("x", vocabulary=VOCAB)
    assert [r.id for r in rb.rules] == ["ONE", "TWO"]


def test_unconditional_override_disables_and_changes_level(load: Load) -> None:
    rb = load('导入 "base.rules"\n覆盖 A { 停用 }\n覆盖 B { 等级 8 }\n',
              **{"base.rules": rule("A", "当 患者.妊娠") + rule("B", "当 患者.妊娠")})
    assert [r.id for r in rb.rules] == ["B"]
    (b,) = rb.rules
    assert isinstance(b.level, n.FixedLevel) and b.level.value == 8 and b.variants == ()


def test_conditional_overrides_stay_as_variants_resolved_per_institution(load: Load) -> None:
    rb = load(rule("A", "当 患者.妊娠") +
              '覆盖 A 对 机构级别 = 村卫生室 { 等级 7 }\n覆盖 A 对 机构编码 = "X01" { 停用 }\n'
              '覆盖 A 对 机构级别 属于 (村卫生室, 乡镇卫生院) { 范围 处方类型 = 门诊 }\n')
    (a,) = rb.rules
    assert len(a.variants) == 3
    enabled, level, scope = a.resolve_for({"level": "村卫生室"})
    assert enabled and isinstance(level, n.FixedLevel) and level.value == 7
    assert scope.prescription_types == frozenset({"门诊"})
    assert a.resolve_for({"level": "县级医院"}) == (True, a.level, n.Scope())
    assert a.resolve_for({"level": "县级医院", "code": "X01"})[0] is False


def test_a_later_unconditional_level_beats_an_earlier_conditional_one(load: Load) -> None:
    rb = load('导入 "base.rules"\n覆盖 A { 等级 2 }\n',
              **{"base.rules": rule("A", "当 患者.妊娠") + '覆盖 A 对 机构级别 = 村卫生室 { 等级 7 }\n'})
    _, level, _ = rb.rules[0].resolve_for({"level": "村卫生室"})
    assert isinstance(level, n.FixedLevel) and level.value == 2


def test_override_scope_narrows_by_intersection(load: Load) -> None:
    rb = load(rule("A", "当 患者.妊娠", extra="范围 机构级别 属于 (村卫生室, 乡镇卫生院)") +
              "覆盖 A { 范围 机构级别 = 村卫生室 }\n")
    assert rb.rules[0].effective_scope.institution_levels == frozenset({"村卫生室"})


def test_override_scope_that_leaves_nothing_is_an_error(errors: Errors) -> None:
    (msg,) = errors(rule("A", "当 患者.妊娠", extra="范围 机构级别 = 村卫生室") + "覆盖 A { 范围 机构级别 = 县级医院 }\n")
    assert msg.splitlines()[0] == "main.rules:2:11: 覆盖后的范围与规则 A 原有的机构级别范围没有交集"


def test_override_without_action_is_an_error(errors: Errors) -> None:
    (msg,) = errors(rule("A", "当 患者.妊娠") + "覆盖 A { }\n")
    assert msg.splitlines()[0] == "main.rules:2:4: 覆盖 A 没有任何动作（停用 / 等级 / 范围）"


def test_source_hash_covers_rules_and_tables_and_ignores_location(write: Callable[..., Path]) -> None:
    table = '表 T 来自 "t.csv" { 键 k 列 v 文本 }\n'
    for folder in ("one", "two"):
        write(f"{folder}/main.rules", table + rule("A", "当 患者.妊娠"))
        write(f"{folder}/t.csv", "k,v\na,b\n")
    one = load_rulebase("one/main.rules", vocabulary=VOCAB).source_hash
    assert one == load_rulebase("two/main.rules", vocabulary=VOCAB).source_hash
    write("two/t.csv", "k,v\na,c\n")
    assert one != load_rulebase("two/main.rules", vocabulary=VOCAB).source_hash


def test_sample_fixture_loads_with_the_shipped_dictionary() -> None:
    sample = Path(__file__).resolve().parents[2] / "fixtures" / "rules" / "sample"
    rb = load_rulebase(sample)
    assert {r.id for r in rb.rules} >= {"DOSE-MAX", "DDI-TABLE", "DDI-SIMVA-AMLO", "DAYS-OUTPATIENT"}
    assert rb.name == "示范县处方审核规则库" and len(rb.tests) >= 6
