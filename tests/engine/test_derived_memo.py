"""Derived fields are evaluated once per distinct atom and binding.

The same atom (one table lookup on the same item) recurs in many rules and shards; the
compiler gives each derived field a structural key (``compiler.structural_key``) and the
runtime memoises by (key, bound item positions). Equal keys must mean equal values, so
keys ignore only spans, spellings and variable names — never anything that changes the
meaning.
"""

from __future__ import annotations

from typing import Any

import pytest

from audit_engine.engine import Engine
from audit_engine.lang import interpreter
from audit_engine.lang import nodes as n
from audit_engine.lang.compiler import compile_rulebase, structural_key
from audit_engine.network import closures

from . import builders as b

r = b.ref
S = b.S
OTHER = n.Span("other.rules", 7, 3, 7, 9)


def exists(table: str, *keys: n.Expr) -> n.Exists:
    return n.Exists(n.Lookup(table, keys, S), S)


def any_item(var: str, cond: n.Cond) -> n.Quantified:
    return n.Quantified("any", var, "item", cond, S)


def test_one_lookup_repeated_across_rules_and_shards_is_evaluated_once_per_binding(
        monkeypatch: pytest.MonkeyPatch) -> None:
    # Item atom K1 = 相互作用[item.成分, "克拉霉素"] 存在: rule A (general shard, variable X)
    # and rule B (routed shard for 辛伐他汀, variable Y). Pair atoms K2 = 相互作用[first.成分,
    # second.成分] 存在 (rules C and D, different variable names) and K3, its reverse (rule E).
    rules = [
        b.rule("A", b.for_each(exists("相互作用", r("X", "ingredients"), b.text("克拉霉素")), var="X")),
        b.rule("B", b.for_each(b.and_(n.Contains(r("Y", "ingredients"), b.text("辛伐他汀"), S),
                                      exists("相互作用", r("Y", "ingredients"), b.text("克拉霉素"))), var="Y")),
        b.rule("C", b.for_pair(exists("相互作用", r("甲", "ingredients"), r("乙", "ingredients")))),
        b.rule("D", b.for_pair(exists("相互作用", r("P", "ingredients"), r("Q", "ingredients")), "P", "Q")),
        b.rule("E", b.for_pair(exists("相互作用", r("乙", "ingredients"), r("甲", "ingredients")))),
    ]
    rb = b.rulebase(rules, {"相互作用": b.interactions_table([("辛伐他汀", "克拉霉素", 8, "CYP3A4")])})
    compiled = compile_rulebase(rb)
    fields = {d.rule_id: d for s in compiled.shards for d in s.derived}
    assert fields["A"].key == fields["B"].key
    assert fields["C"].key == fields["D"].key != fields["E"].key
    shard_of = {d.rule_id: i for i, s in enumerate(compiled.shards) for d in s.derived}
    assert shard_of["A"] != shard_of["B"]  # the memo is shared across shards

    facts = b.facts([b.item(0, ingredients=["辛伐他汀"]), b.item(1, ingredients=["克拉霉素"])])
    calls: list[Any] = []
    real = closures.compile_cond

    def spy(c: n.Cond, tables: Any) -> closures.Pred:
        pred = real(c, tables)

        def counted(ev: interpreter.Evaluator, env: interpreter.Env) -> bool:
            calls.append(c)
            return pred(ev, env)
        return counted

    monkeypatch.setattr(closures, "compile_cond", spy)
    engine = Engine(compiled)  # derived conditions are compiled here, once per key
    monkeypatch.undo()
    try:
        found = engine.evaluate(facts)
    finally:
        engine.close()
    # K1 on items 0 and 1 (B's keyed shard sees only item 0, already known); K2 only on the
    # pair (0, 1) and K3 only on (1, 0): the other order puts 克拉霉素 in the table's indexed
    # first column, where it has no row, so the screen (closures.compile_screen) decides it
    # without evaluation. 4 evaluations, where one per field and binding would be 9.
    assert len(calls) == 2 + 1 + 1
    assert found == interpreter.evaluate(rb, facts)
    assert sorted((f.rule_id, f.implicated) for f in found) == [
        ("A", ("MedicationRequest/mr0",)), ("B", ("MedicationRequest/mr0",)),
        ("C", ("MedicationRequest/mr0", "MedicationRequest/mr1")),
        ("D", ("MedicationRequest/mr0", "MedicationRequest/mr1")),
        ("E", ("MedicationRequest/mr0", "MedicationRequest/mr1")),
    ]


ITEM_LOOKUP = exists("相互作用", r("X", "ingredients"), b.text("克拉霉素"))


@pytest.mark.parametrize(("cond", "binds"), [
    (exists("相互作用", r("Y", "ingredients"), b.text("克拉霉素")), ("Y",)),  # another variable name
    (n.Exists(n.Lookup("相互作用", (n.FieldRef("X", "成分", OTHER, "item", "ingredients"),
                                     n.Text("克拉霉素", OTHER)), OTHER), OTHER), ("X",)),  # spans, spelling
])
def test_conditions_equal_up_to_spans_spellings_and_variable_names_share_a_key(
        cond: n.Cond, binds: tuple[str, ...]) -> None:
    assert structural_key(cond, binds) == structural_key(ITEM_LOOKUP, ("X",))


@pytest.mark.parametrize(("cond", "binds"), [
    (exists("相互作用", r("X", "ingredients"), b.text("红霉素")), ("X",)),  # literal
    (exists("重复用药", r("X", "ingredients"), b.text("克拉霉素")), ("X",)),  # table
    (exists("相互作用", r("X", "classes"), b.text("克拉霉素")), ("X",)),  # field
    (exists("相互作用", r("X", "ingredients"), n.Symbol("克拉霉素", S)), ("X",)),  # literal kind
    (exists("相互作用", r("X", "ingredients"), b.text("克拉霉素")), ("W", "X")),  # bound position
    (exists("相互作用", r("X", "ingredients"), b.text("克拉霉素")), ()),  # not bound: an absent item
    (n.Not(ITEM_LOOKUP, S), ("X",)),  # negated
])
def test_conditions_differing_in_meaning_get_different_keys(cond: n.Cond, binds: tuple[str, ...]) -> None:
    assert structural_key(cond, binds) != structural_key(ITEM_LOOKUP, ("X",))


def test_keys_tell_apart_literals_units_operators_columns_and_quantifier_variables() -> None:
    def key(cond: n.Cond) -> str:
        return structural_key(cond, ("X",))

    dose = r("X", "daily_dose")
    assert key(b.cmp(">", dose, b.num(4, "g"))) != key(b.cmp(">", dose, b.num(4, "mg")))
    assert key(b.cmp(">", dose, b.num(4, "g"))) != key(b.cmp(">=", dose, b.num(4, "g")))
    assert key(b.cmp(">", dose, b.num(4, "g"))) != key(b.cmp(">", dose, b.num(5, "g")))
    limit = n.Lookup("剂量上限", (r("X", "name"),), S)
    assert key(b.cmp(">", dose, n.Column(limit, "日上限", S))) != key(b.cmp(">", dose, n.Column(limit, "单次上限", S)))
    # A quantifier variable is renamed by depth, scoped: shadowing and nesting keep their meaning.
    same = b.cmp("=", r("Z", "ingredients"), r("Z", "classes"))
    cross = b.cmp("=", r("X", "ingredients"), r("Z", "classes"))
    assert key(any_item("Z", same)) == key(any_item("V", b.cmp("=", r("V", "ingredients"), r("V", "classes"))))
    assert key(any_item("Z", same)) != key(any_item("Z", cross))
    assert key(any_item("X", b.cmp("=", r("X", "ingredients"), r("X", "classes")))) != key(any_item("Z", cross))
    inner_outer = any_item("X", any_item("Z", b.cmp("=", r("X", "ingredients"), r("Z", "classes"))))
    inner_inner = any_item("X", any_item("Z", b.cmp("=", r("Z", "ingredients"), r("Z", "classes"))))
    assert key(inner_outer) != key(inner_inner)
    assert key(any_item("Z", same)) != key(n.Quantified("all", "Z", "item", same, S))
    assert key(any_item("Z", same)) != key(n.Quantified("any", "Z", "diagnosis", same, S))
