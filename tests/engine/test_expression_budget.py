"""A rule whose test is too large for one durable_rules node still compiles and agrees.

The core refuses a node with too many expressions (error 113). Hypothesis found such a rule:
two identical conditional overrides plus a negated range and a negated conjunction. The
compiler must hand such a condition to a host-derived field instead of emitting it.
"""

from __future__ import annotations

import dataclasses

from audit_engine.engine import Engine
from audit_engine.lang import interpreter
from audit_engine.lang import nodes as n
from audit_engine.lang.compiler import MAX_TEST_SIZE, compile_rulebase

from . import builders as b


def _big_rule() -> n.Rulebase:
    s = b.S
    days, drug, route = b.ref("药品", "days"), b.ref("药品", "drug_id"), b.ref("药品", "route")
    cond = b.and_(
        b.not_(n.Between(days, b.num(1.0), b.num(7.0), s)),
        b.not_(b.and_(b.cmp("=", drug, b.text("d1")), n.In(route, (n.Symbol("口服", s), n.Symbol("静滴", s)), s))),
    )
    rule = b.rule("R00", b.for_each(cond))
    outpatient_only = n.Override("R00", n.OverrideTarget("institution_level", ("县级医院",), s), False, None,
                                 (n.ScopeItem("prescription_type", ("门诊",), s),), s)
    rule = dataclasses.replace(rule, variants=(outpatient_only, outpatient_only))
    return b.rulebase([rule])


def test_a_condition_too_large_for_one_node_becomes_a_derived_field_and_still_agrees() -> None:
    rulebase = _big_rule()
    compiled = compile_rulebase(rulebase)
    (shard,) = compiled.shards
    assert [(d.on, d.cond) for d in shard.derived] == [("item", rulebase.rules[0].trigger.cond)]  # decided by the host
    engine = Engine(compiled)  # the core accepts the ruleset (it refused it with error 113)
    try:
        for days in (3, 10):
            for route in ("口服", "外用"):
                facts = b.facts([b.item(0, drug_id="d1", days=days, route=route)],
                                institution={"level": "县级医院"}, prescription={"type": "门诊"})
                assert engine.evaluate(facts) == interpreter.evaluate(rulebase, facts)
    finally:
        engine.close()


def test_the_budget_is_below_the_smallest_test_the_core_was_seen_to_refuse() -> None:
    assert MAX_TEST_SIZE < 49
