"""Verdict policy: thresholds, the unchecked floor, monotonicity, working-time deadlines."""

from __future__ import annotations

from datetime import datetime

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from audit_engine.errors import InvalidRequestError
from audit_engine.findings import Finding
from audit_engine.policy import VERDICTS, Policy, decide_verdict
from audit_engine.store.db import session_scope
from audit_engine.store.policies import policy_for, set_policy


def finding(level: int) -> Finding:
    return Finding("R-1", "测试", "适宜性", "剂量", level, "消息", "依据")


@pytest.mark.parametrize(
    ("level", "expected"),
    [(0, "pass"), (2, "pass"), (3, "explain"), (4, "explain"), (5, "recheck"), (7, "recheck"), (8, "block"), (9, "block")],
)
def test_default_thresholds_follow_the_county_scheme(level: int, expected: str) -> None:
    assert decide_verdict([finding(level)], unchecked=False, policy=Policy()) == expected


def test_no_findings_pass() -> None:
    assert decide_verdict([], unchecked=False, policy=Policy()) == "pass"


@pytest.mark.parametrize(("level", "expected"), [(0, "recheck"), (4, "recheck"), (6, "recheck"), (9, "block")])
def test_unchecked_facts_are_at_least_recheck(level: int, expected: str) -> None:
    assert decide_verdict([finding(level)], unchecked=True, policy=Policy()) == expected


policies = st.tuples(st.integers(0, 10), st.integers(0, 10), st.integers(0, 10)).map(sorted).map(
    lambda t: Policy(explain_at=t[0], recheck_at=t[1], block_at=t[2])
)


@settings(max_examples=200, deadline=None)
@given(policies, st.lists(st.integers(0, 9), max_size=6), st.integers(0, 9), st.booleans())
def test_verdict_is_monotone_in_the_highest_level(policy: Policy, levels: list[int], extra: int, unchecked: bool) -> None:
    before = decide_verdict([finding(x) for x in levels], unchecked=unchecked, policy=policy)
    after = decide_verdict([finding(x) for x in [*levels, extra]], unchecked=unchecked, policy=policy)
    assert VERDICTS.index(after) >= VERDICTS.index(before)
    # and depends on nothing but the highest level
    top = max([*levels, extra])
    assert after == decide_verdict([finding(top)], unchecked=unchecked, policy=policy)


@settings(max_examples=100, deadline=None)
@given(policies, st.integers(0, 9))
def test_unchecked_never_lowers_a_verdict(policy: Policy, level: int) -> None:
    plain = decide_verdict([finding(level)], unchecked=False, policy=policy)
    flagged = decide_verdict([finding(level)], unchecked=True, policy=policy)
    assert VERDICTS.index(flagged) >= max(VERDICTS.index(plain), VERDICTS.index("recheck"))


def test_thresholds_out_of_order_are_refused_with_every_problem() -> None:
    with pytest.raises(InvalidRequestError) as caught:
        Policy(explain_at=6, recheck_at=5, fail_mode="sideways", timeout_action="shrug")  # type: ignore[arg-type]
    text = str(caught.value)
    assert "explain_at" in text and "fail_mode" in text and "timeout_action" in text
    assert caught.value.location == "Policy"


def test_deadline_counts_only_working_time() -> None:
    # Mon-Fri 08:00-17:00 Beijing time, 30 minutes: Friday 16:50 local (08:50 UTC) → Monday 08:20 local.
    policy = Policy(work_start="08:00", work_end="17:00", work_days=(1, 2, 3, 4, 5), timeout_minutes=30)
    friday_1650_local = datetime(2026, 11, 20, 8, 50)  # naive UTC
    assert policy.deadline(friday_1650_local) == datetime(2026, 11, 23, 0, 20)  # Monday 08:20 +08:00


def test_deadline_at_night_starts_at_opening_time() -> None:
    policy = Policy(work_start="08:00", work_end="17:00", timeout_minutes=15)
    tuesday_2300_local = datetime(2026, 11, 24, 15, 0)
    assert policy.deadline(tuesday_2300_local) == datetime(2026, 11, 25, 0, 15)  # Wednesday 08:15 local


def test_round_the_clock_deadline_is_plain_addition() -> None:
    assert Policy(timeout_minutes=15).deadline(datetime(2026, 11, 23, 3, 0)) == datetime(2026, 11, 23, 3, 15)


def test_working_time_is_judged_in_the_policy_timezone() -> None:
    policy = Policy(work_start="08:00", work_end="17:00")
    assert policy.is_working_time(datetime(2026, 11, 23, 1, 0))  # 09:00 Beijing
    assert not policy.is_working_time(datetime(2026, 11, 23, 10, 0))  # 18:00 Beijing


def test_snapshot_round_trips() -> None:
    policy = Policy(explain_at=2, recheck_at=4, block_at=9, fail_mode="open", work_days=(1, 2, 3), timeout_action="escalate")
    assert Policy.from_snapshot(policy.snapshot()) == policy


def test_stored_policy_is_used_and_absent_means_defaults(engine, world) -> None:
    with session_scope(engine) as s:
        assert policy_for(s, institution_id=world.ids["M1"]) == Policy()
        custom = Policy(recheck_at=4, timeout_minutes=30, timeout_action="escalate")
        set_policy(s, institution_id=world.ids["M1"], policy=custom)
    with session_scope(engine) as s:
        assert policy_for(s, institution_id=world.ids["M1"]) == custom
        assert policy_for(s, institution_id=world.ids["M2"]) == Policy()


@pytest.mark.parametrize(("start", "end"), [("17:00", "08:00"), ("08:00", "08:00"), ("8h", "17:00"), ("08:00", "25:00")])
def test_working_hours_must_be_a_real_interval(start: str, end: str) -> None:
    with pytest.raises(InvalidRequestError, match="work_"):
        Policy(work_start=start, work_end=end)
