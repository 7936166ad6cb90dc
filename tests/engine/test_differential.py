"""The network agrees with the reference interpreter, finding for finding.

Hypothesis generates checked rulebases over every construct — item, pair and
prescription-level rules; and/or/not; numbers with units, text, enums (ordered too), bools,
text sets; membership, ranges, containment, prefixes, presence; table lookups and columns;
any/all/count over items; comparisons across the two items of a pair; scopes and
conditional overrides by institution level — and prescriptions with absent fields, empty
sets and several items. Each rulebase (up to six rules) is compiled, registered and evaluated on up to three
prescriptions; the findings must equal ``interpreter.evaluate`` exactly.
"""

from __future__ import annotations

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from audit_engine.engine import Engine
from audit_engine.lang import interpreter
from audit_engine.lang.compiler import compile_rulebase
from audit_engine.lang.nodes import Rulebase
from audit_engine.schema import PrescriptionFacts

from . import strategies as gen


@settings(max_examples=1000, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(gen.rulebases(), st.lists(gen.prescriptions(), min_size=1, max_size=3))
def test_network_findings_equal_interpreter_findings(rulebase: Rulebase, prescriptions: list[PrescriptionFacts]) -> None:
    engine = Engine(compile_rulebase(rulebase))
    try:
        for facts in prescriptions:
            assert engine.evaluate(facts) == interpreter.evaluate(rulebase, facts)
    finally:
        engine.close()


def test_generated_rulebases_exercise_derived_fields_pairs_and_routing() -> None:
    """Guards the generator itself: the constructs the differential test claims to cover
    really reach the network (derived fields on every fact kind, pair joins, routed shards)."""
    seen: set[str] = set()

    @settings(max_examples=100, deadline=None, derandomize=True, database=None,
              suppress_health_check=[HealthCheck.too_slow])
    @given(gen.rulebases())
    def collect(rulebase: Rulebase) -> None:
        compiled = compile_rulebase(rulebase)
        for shard in compiled.shards:
            seen.update(f"derived:{d.on}" for d in shard.derived)
            if shard.needs_pairs:
                seen.add("pair-fact")
            if shard.keys:
                seen.add("routed")
            if any(b.kind == "pair" for b in shard.branches):
                seen.add("pair-join")
            if '"$iall"' in shard.definition:
                seen.add("negated-textset")
            if '"$nex"' in shard.definition:
                seen.add("negated-absent")

    collect()
    assert seen >= {"derived:item", "derived:rx", "derived:pair", "pair-fact", "routed", "pair-join",
                    "negated-textset", "negated-absent"}
