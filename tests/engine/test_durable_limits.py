"""The durable_rules 2.0.28 limits the network is designed around, reproduced on the raw core.

Each reproduction runs in a subprocess: one of them kills the interpreter, another reads memory
out of bounds (seen with valgrind). If an upgrade of durable-rules removes a limit these tests fail, and the design notes in
``audit_engine.lang.compiler`` / ``audit_engine.network.host`` should be revisited.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import textwrap

PRELUDE = textwrap.dedent(
    """
    import json, sys
    import durable_rules_engine as d

    def drain(h, state):
        n = 0
        if d.start_action_for_state(h, state):
            n = 1
            while d.complete_and_start_action(h, state):
                n += 1
        return n
    """
)


def run(code: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-c", PRELUDE + textwrap.dedent(code)],
                          capture_output=True, text=True, timeout=120)


def test_deleting_a_session_whose_only_fact_matched_nothing_kills_the_process() -> None:
    proc = subprocess.run([sys.executable, "-c", textwrap.dedent(
        """
        from durable.engine import Host, MessageNotHandledException
        host = Host({"x": {"r": {"all": [{"m": {"t": "item"}}], "run": lambda c: None}}})
        try:
            host.assert_fact("x", {"sid": "1", "t": "other"})
        except MessageNotHandledException:
            pass
        host.delete_state("x", "1")
        print("survived")
        """)], capture_output=True, text=True, timeout=120)
    assert proc.returncode in (-11, 139), (proc.returncode, proc.stdout, proc.stderr)
    assert "survived" not in proc.stdout


TWO_FACT_JOIN = """
    defn = {"j": {"all": [{"a": {"t": "it"}}, {"b": {"$and": [{"t": "it"}, JOIN]}}]},
            "open": {"all": [{"m": {"t": "open"}}]}}
    h = d.create_ruleset("x", json.dumps(defn))
    for s in range(3):
        sid = str(s)
        drain(h, d.assert_fact(h, json.dumps({"sid": sid, "t": "open"}))[1])
        for i in range(3):
            drain(h, d.assert_fact(h, json.dumps({"sid": sid, "t": "it", "i": i}))[1])
        d.delete_state(h, sid)
    print("survived")
"""


def core_invalid_reads(join: str) -> list[str]:
    """Run a two-fact join under valgrind; return each invalid read whose stack is in the core's join."""
    code = PRELUDE + textwrap.dedent(TWO_FACT_JOIN).replace("JOIN", join)
    proc = subprocess.run(["valgrind", sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=300, env={**os.environ, "PYTHONMALLOC": "malloc"})
    assert "survived" in proc.stdout or proc.returncode in (-11, 139), proc.stderr[-2000:]
    # valgrind separates its error records with a line holding only "==PID== ".
    records = re.split(r"^==\d+== $", proc.stderr, flags=re.MULTILINE)
    return [r for r in records if "Invalid read" in r and "isBetaMatch" in r]


def test_non_equality_join_between_two_facts_reads_memory_out_of_bounds() -> None:
    # Why pair rules only ever use equality joins (jruizgit/rules #381). Whether the bad read
    # becomes a segfault depends on the heap layout: it crashed about two runs in three on one
    # machine and never in 20 padded attempts on another. valgrind sees the out-of-bounds read
    # in the core's join on every run.
    bad = core_invalid_reads('{"$neq": {"i": {"a": "i"}}}')
    assert bad, "valgrind saw no invalid read in the core's join for a $neq join"
    assert all("reduceExpressionSequence" in r for r in bad)


def test_equality_join_of_the_same_shape_reads_nothing_out_of_bounds() -> None:
    """The control: the same program with an equality join is clean, so the read above is the $neq's."""
    assert core_invalid_reads('{"i": {"a": "i"}}') == []


def test_more_than_64_rules_matching_one_fact_is_error_303() -> None:
    code = """
        for n in (64, 65):
            defn = {f"r{i}": {"all": [{"m": {"$gt": {"dose": i}}}]} for i in range(n)}
            h = d.create_ruleset(f"x{n}", json.dumps(defn))
            try:
                print(n, drain(h, d.assert_fact(h, json.dumps({"sid": "1", "dose": 1000}))[1]))
            except d.error as e:
                print(n, "error", e)
    """
    out = run(code).stdout.splitlines()
    assert out[0] == "64 64"
    assert out[1].startswith("65 error") and "303" in out[1]


def test_a_fact_holds_at_most_253_properties() -> None:
    code = """
        h = d.create_ruleset("x", json.dumps({"c": {"all": [{"m": {"t": "it"}}]}}))
        for n in (253, 254):
            f = {"sid": str(n), "t": "it"}
            f.update({f"p{i}": i for i in range(n - 2)})
            try:
                print(n, drain(h, d.assert_fact(h, json.dumps(f))[1]))
            except d.error as e:
                print(n, "error", e)
    """
    out = run(code).stdout.splitlines()
    assert out[0] == "253 1"
    assert out[1].startswith("254 error") and "302" in out[1]


def test_a_ruleset_holds_at_most_1024_live_sessions() -> None:
    code = """
        h = d.create_ruleset("x", json.dumps({"c": {"all": [{"m": {"t": "it"}}]}}))
        for s in range(1025):
            try:
                drain(h, d.assert_fact(h, json.dumps({"sid": str(s), "t": "it"}))[1])
            except MemoryError:
                print("MemoryError at", s + 1)
                break
    """
    assert run(code).stdout.strip() == "MemoryError at 1025"


def test_a_pair_join_is_not_limited_by_the_64_matches_per_fact() -> None:
    # The 64 limit counts rules (branches) per fact, not bindings: 70 items x 69 partners.
    code = """
        defn = {"p": {"all": [{"a": {"t": "it"}}, {"b": {"t": "it"}}]}}
        h = d.create_ruleset("x", json.dumps(defn))
        r = d.assert_facts(h, json.dumps([{"sid": "1", "t": "it", "i": i} for i in range(70)]))
        print(drain(h, r[1]))
    """
    assert run(code).stdout.strip() == str(70 * 69)


def test_a_catch_all_that_never_fires_still_counts_as_handled() -> None:
    # The network's catch-alls join with a fact type nobody asserts: facts are "handled"
    # (batches never stop early) yet the catch-alls cost no action.
    code = """
        defn = {"r": {"all": [{"m": {"$and": [{"t": "it"}, {"$gt": {"dose": 5}}]}}]},
                "c": {"all": [{"m": {"t": "it"}}, {"n": {"t": "__never"}}]}}
        h = d.create_ruleset("x", json.dumps(defn))
        facts = [{"sid": "1", "t": "it", "i": i, "dose": 10 if i % 2 else 1} for i in range(6)]
        r = d.assert_facts(h, json.dumps(facts))
        print(r[0], drain(h, r[1]))
    """
    assert run(code).stdout.strip() == "0 3"
