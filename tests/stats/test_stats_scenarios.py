"""Every indicator against hand-computed figures, one scenario file per situation (scenarios/*.json)."""

from __future__ import annotations

import pytest
from scenario import SCENARIOS, run_scenario

NAMES = sorted(p.name for p in SCENARIOS.glob("*.json"))


@pytest.mark.parametrize("name", NAMES)
def test_the_scenario_gives_the_hand_computed_figures(engine, world, name: str) -> None:
    assert run_scenario(engine, world, name) > 0
