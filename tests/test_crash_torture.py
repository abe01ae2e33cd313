"""A small sample of the crash torture harness (bench/crash_torture.py runs 200 kills):
a daemon SIGKILLed at random moments under writes, updates and deletes (integer and UUID ids), fades,
revives, undos, consolidation, forgetting, maintenance and (one cycle in five) inversion, on both
engines, with every invariant checked after each kill."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "bench"))
from crash_torture import torture  # noqa: E402

KILLS = 5  # the fifth loads the inverter


@pytest.mark.parametrize("store", ["edge", "local"])
def test_random_sigkills_under_load_lose_nothing(store: str, tmp_path: Path) -> None:
    tally = torture(store, kills=KILLS, seed=3, work=tmp_path)
    assert tally.problems == []
    assert tally.kills == KILLS
    assert tally.acknowledged > 100, "the writer barely wrote: the test tested nothing"
    assert tally.agent_deletes > 0, "the agents never deleted: updates and deletes went untested"
    assert tally.merges_applied > 0, "nothing was consolidated between the kills"
    assert tally.forget_runs > 0 and tally.dormant_peak > 0, "nothing was forgotten between the kills"
    assert tally.operations.get("revive", 0) > 0, "no dormant memory was revived"
    assert tally.inversion_cycles == 1
