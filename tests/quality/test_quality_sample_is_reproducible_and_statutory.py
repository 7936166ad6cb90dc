"""The 处方点评 sample: the same month and seed give the same prescriptions; each institution
and stratum gets at least the statutory minimum (1‰ and 100 outpatient, 0.5% and 100 饮片, or all);
who drew it and when is recorded."""

from __future__ import annotations

import math
from datetime import date

import pytest
import sqlalchemy as sa
from hypothesis import given, settings
from hypothesis import strategies as st
from population import add_prescriptions
from store_support import World

from audit_engine.errors import InvalidRequestError, NotFoundError
from audit_engine.quality import sampling
from audit_engine.store.db import session_scope
from audit_engine.store.models import AuditEntry
from audit_engine.store.quality_models import CommentSample, CommentSampleItem
from audit_engine.store.stats_models import ReviewStat


def _items(engine: sa.Engine, sample_id: str) -> list[tuple[str, int, str]]:
    with session_scope(engine) as s:
        return [tuple(r) for r in s.execute(  # type: ignore[misc]
            sa.select(CommentSampleItem.review_id, CommentSampleItem.institution_id, CommentSampleItem.stratum)
            .where(CommentSampleItem.sample_id == sample_id).order_by(CommentSampleItem.position))]


def test_same_month_and_seed_give_the_same_statutory_sample(engine: sa.Engine, world: World) -> None:
    m1, c1 = world.ids["M1"], world.ids["C1"]
    add_prescriptions(engine, institution_id=m1, day=date(2026, 11, 3), count=180)
    add_prescriptions(engine, institution_id=m1, day=date(2026, 11, 20), count=70)
    add_prescriptions(engine, institution_id=m1, day=date(2026, 11, 21), count=120, herbal=True)
    add_prescriptions(engine, institution_id=c1, day=date(2026, 11, 30), count=30)
    october = add_prescriptions(engine, institution_id=c1, day=date(2026, 10, 31), count=20, prefix="OCT")

    with session_scope(engine) as s:
        first = sampling.draw(s, principal=world.quality, month="2026-11", seed=20261130)
    with session_scope(engine) as s:
        again = sampling.draw(s, principal=world.quality, month="2026-11", seed=20261130)
        other = sampling.draw(s, principal=world.quality, month="2026-11", seed=7)

    drawn = _items(engine, first)
    assert drawn == _items(engine, again)  # same prescriptions, same order
    assert {r for r, _, _ in drawn} != {r for r, _, _ in _items(engine, other)}
    per = {(i, stratum): sum(1 for _, ii, ss in drawn if (ii, ss) == (i, stratum)) for _, i, stratum in drawn}
    # 250 outpatient → max(100, 1‰) = 100; 120 饮片 → max(100, 0.5%) = 100; 30 → all 30
    assert per == {(m1, "western"): 100, (m1, "herbal"): 100, (c1, "western"): 30}
    assert not {r for r, _, _ in drawn} & set(october)  # only the month's prescriptions
    with session_scope(engine) as s:
        months = set(s.scalars(sa.select(ReviewStat.local_month).where(
            ReviewStat.review_id.in_([r for r, _, _ in drawn]))))
        assert months == {"2026-11"}
        sample = s.get(CommentSample, first)
        assert sample is not None and sample.seed == 20261130 and sample.drawn_by == "quality"
        assert sample.drawn_at is not None
        strata = {(x["institution"], x["stratum"]): (x["population"], x["minimum"], x["drawn"]) for x in sample.strata}
        assert strata == {("M1", "western"): (250, 100, 100), ("M1", "herbal"): (120, 100, 100),
                          ("C1", "western"): (30, 30, 30)}
        logged = s.scalar(sa.select(AuditEntry).where(AuditEntry.object_id == first))
        assert logged is not None and logged.action == "quality.sample_drawn" and logged.detail["seed"] == 20261130


def test_a_member_bound_manager_samples_only_their_institution_and_bad_input_is_refused(
        engine: sa.Engine, world: World) -> None:
    from audit_engine.store.models import User

    add_prescriptions(engine, institution_id=world.ids["M1"], day=date(2026, 11, 3), count=12)
    add_prescriptions(engine, institution_id=world.ids["M2"], day=date(2026, 11, 3), count=12)
    from audit_engine import auth

    with session_scope(engine) as s:
        user = User(username="q_m1", password_hash="x", role="quality", institution_id=world.ids["M1"],
                    created_at=sampling.utcnow())
        s.add(user)
        s.flush()
        member = auth.principal_for_user(s, user)
        sample_id = sampling.draw(s, principal=member, month="2026-11", seed=1)
    assert {i for _, i, _ in _items(engine, sample_id)} == {world.ids["M1"]}
    with session_scope(engine) as s:
        with pytest.raises(NotFoundError):
            sampling.draw(s, principal=member, month="2026-11", institution="M2")
        with pytest.raises(InvalidRequestError, match="YYYY-MM"):
            sampling.draw(s, principal=member, month="2026-13")
        with pytest.raises(InvalidRequestError, match="没有可抽样的处方"):
            sampling.draw(s, principal=member, month="2026-01")
        with pytest.raises(InvalidRequestError):
            sampling.draw(s, principal=member, month="2026-11", seed=-1)


@given(population=st.integers(min_value=0, max_value=2_000_000), herbal=st.booleans())
def test_the_statutory_minimum_matches_the_rule_as_written(population: int, herbal: bool) -> None:
    rate = 0.005 if herbal else 0.001
    expected = population if population <= 100 else max(100, math.ceil(population * rate - 1e-9))
    got = sampling.statutory_minimum(population, "herbal" if herbal else "western")
    assert got == expected
    assert got <= population and got >= min(population, 100) and got >= population * rate - 1e-9


@settings(max_examples=30, deadline=None)
@given(sizes=st.lists(st.integers(min_value=0, max_value=400), min_size=1, max_size=4),
       seed=st.integers(min_value=0, max_value=2**53 - 1), at_least=st.integers(min_value=0, max_value=150))
def test_choice_is_the_lowest_seeded_ranks_whatever_the_row_order(sizes: list[int], seed: int, at_least: int) -> None:
    candidates = [sampling.Candidate(f"r{i}-{n:04d}", i, "western") for i, size in enumerate(sizes) for n in range(size)]
    chosen, strata = sampling.choose(candidates, seed=seed, at_least=at_least)
    shuffled, _ = sampling.choose(list(reversed(candidates)), seed=seed, at_least=at_least)
    assert {c.review_id for c, _ in chosen} == {c.review_id for c, _ in shuffled}
    for i, size in enumerate(sizes):  # brute-force oracle: sort the institution's ranks, take the first k
        k = min(size, max(sampling.statutory_minimum(size, "western"), at_least))
        ranks = sorted((sampling.rank(seed, f"r{i}-{n:04d}"), f"r{i}-{n:04d}") for n in range(size))
        assert {c.review_id for c, _ in chosen if c.institution_id == i} == {r for _, r in ranks[:k]}
    assert sum(x["drawn"] for x in strata) == len(chosen)


def test_a_large_month_draws_the_per_mille_above_the_floor() -> None:
    candidates = [sampling.Candidate(f"w{n}", 1, "western") for n in range(150_000)]
    candidates += [sampling.Candidate(f"h{n}", 1, "herbal") for n in range(30_000)]
    _, strata = sampling.choose(candidates, seed=3)
    assert {x["stratum"]: x["drawn"] for x in strata} == {"western": 150, "herbal": 150}
