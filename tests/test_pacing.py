"""Writes first (consolidation/pacing.py): a run gives way to writes, and only to them."""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest

from reverie.consolidation.adoption import adopt, mark_adopted
from reverie.consolidation.pacing import QUIET, WritesFirst
from reverie.memory import NewMemory, Reverie
from reverie.storage import Filter, Match, Record, Store
from reverie.storage import payload as p
from reverie.storage.base import VectorSchema
from reverie.storage.layouts import LAYOUTS

from helpers import check_invariants, memories, near_duplicates


class Clock:
    """Time that moves only when told to (or when the pacer sleeps)."""

    def __init__(self) -> None:
        self.now = 100.0
        self.slept: list[float] = []

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.now += seconds


def test_under_writes_that_never_stop_a_run_keeps_its_share() -> None:
    clock = Clock()
    pacer = WritesFirst(0.25, clock=clock, sleep=clock.sleep)
    pacer.restart()
    with pacer.writing():
        clock.now += 1.0
        pacer.pace()  # a second of work, a write in flight all along: three seconds for it
    assert pacer.paused == pytest.approx(3.0)
    assert sum(clock.slept) == pytest.approx(3.0)
    pacer.restart()
    assert pacer.paused == 0.0


def test_a_run_waits_only_for_a_quiet_moment_and_not_without_writes() -> None:
    clock = Clock()
    pacer = WritesFirst(0.25, clock=clock, sleep=clock.sleep)
    pacer.restart()
    clock.now += 1.0
    pacer.pace()  # no write during the step
    assert clock.slept == []
    with pacer.writing():
        clock.now += 0.1
    clock.now += 0.01
    pacer.pace()  # the write ended 10 ms ago: wait until QUIET has passed since, no more
    assert pacer.paused == pytest.approx(QUIET - 0.01)
    clock.now += 0.5
    pacer.pace()  # the write ended before this step began
    assert pacer.paused == pytest.approx(QUIET - 0.01)


def test_a_share_of_one_never_pauses_and_a_share_outside_the_range_is_refused() -> None:
    clock = Clock()
    pacer = WritesFirst(1.0, clock=clock, sleep=clock.sleep)
    with pacer.writing():
        clock.now += 1.0
        pacer.pace()
    assert clock.slept == []
    for share in (0.0, -0.5, 1.5):
        with pytest.raises(ValueError, match="share"):
            WritesFirst(share)


def test_a_long_scroll_is_paced_in_steps() -> None:
    clock = Clock()
    pacer = WritesFirst(0.5, clock=clock, sleep=clock.sleep)
    pacer.restart()
    seen = []
    with pacer.writing():
        for item in pacer.paced(range(10), every=4):
            clock.now += 1.0  # a second of work on each item
            seen.append(item)
    assert seen == list(range(10))
    # paces before items 0, 4 and 8: no work yet, then four seconds of it twice
    assert pacer.paused == pytest.approx(8.0)


def test_adopted_points_are_stamped_a_page_at_a_time_with_a_pace_between(store: Store) -> None:
    store.ensure_collection("c", VectorSchema.single(4))
    fresh = {p.KEY: p.fresh_meta()}
    store.upsert("c", [Record(i, np.eye(4)[i % 4] + 0.1, fresh) for i in range(6)])
    live_at_each_pace: list[int] = []

    def pace() -> None:
        live_at_each_pace.append(store.count("c", Filter(must=(Match(f"{p.KEY}.state", p.LIVE),))))

    mark_adopted(store, "c", {(p.ORIGINAL, 1.0): list(range(6))}, skip={5}, pace=pace, page=2)
    assert live_at_each_pace == [0, 2, 4]  # three writes of two, a pace before each
    stamps = {r.id: p.meta(r.payload) for r in store.retrieve("c", list(range(6)), with_vectors=False)}
    assert [stamps[i]["state"] for i in range(6)] == [p.LIVE] * 5 + [p.FRESH]
    assert all(stamps[i]["kind"] == p.ORIGINAL and stamps[i]["weight"] == 1.0 for i in range(5))


def test_fresh_points_are_checked_a_page_at_a_time_with_a_pace_before_each(store: Store) -> None:
    store.ensure_collection("c", VectorSchema.single(4))
    fresh = [Record(i, np.eye(4)[i % 4] + 0.1, {p.KEY: p.fresh_meta()}) for i in range(5)]
    fresh[3] = Record(3, np.full(4, np.nan), {p.KEY: p.fresh_meta()})  # quarantined, never stored
    store.upsert("c", [r for r in fresh if r.id != 3])
    paces: list[float] = []
    adoption = adopt(store, "c", fresh, "r-1", False, LAYOUTS["reverie"], lambda: paces.append(1), page=2)
    assert len(paces) == 3  # pages of two, two and one
    assert [r.id for r in adoption.valid] == [0, 1, 2, 4]
    assert [i for i, _ in adoption.quarantined] == [3]


def _writing_meanwhile(rv: Reverie, start: int) -> tuple[threading.Event, threading.Thread, list[int]]:
    """A writer that writes a small batch of new memories every few milliseconds until told
    to stop (at most 2,000 memories: local mode's searches grow slower with each)."""
    done, written = threading.Event(), []
    vectors = np.random.default_rng(start).normal(size=(2000, 32))

    def write() -> None:
        for first in range(0, len(vectors), 5):
            if done.wait(0.005):
                return
            ids = range(start + first, start + first + 5)
            rv.write([NewMemory(vectors[i - start], {"text": f"new {i}"}, i) for i in ids])
            written.extend(ids)

    thread = threading.Thread(target=write)
    thread.start()
    return done, thread, written


def test_a_run_gives_way_to_writes_and_merges_as_it_would_alone(rv: Reverie) -> None:
    vectors, labels = near_duplicates(groups=40, per_group=3)
    rv.write(memories(vectors, labels))
    rv.settings.consolidation.apply_batch = 2  # steps enough to see writes
    rv.consolidator.writes_first.share = 0.5
    done, writer, written = _writing_meanwhile(rv, start=10_000)
    try:
        report = rv.consolidate(full=True)
    finally:
        done.set()
        writer.join()
    assert report.paused > 0
    assert report.merge_count == 40
    check_invariants(rv, set(range(len(vectors))) | set(written))
    quiet = rv.consolidate(full=True)  # nobody writes: no pause
    assert quiet.paused == 0.0


def test_a_shutdown_cuts_a_pause_short(rv: Reverie) -> None:
    vectors, labels = near_duplicates(groups=40, per_group=3)
    rv.write(memories(vectors, labels))
    rv.settings.consolidation.apply_batch = 2
    rv.consolidator.writes_first.share = 1e-4  # a pause of ten thousand times a step
    done, writer, _ = _writing_meanwhile(rv, start=10_000)
    stopper = threading.Timer(1.0, rv.consolidator.stopping.set)
    stopper.start()
    started = time.monotonic()
    try:
        report = rv.consolidate(full=True)
    finally:
        done.set()
        writer.join()
    assert report.stopped
    assert time.monotonic() - started < 30
