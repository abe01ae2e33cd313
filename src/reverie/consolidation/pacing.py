"""Writes first: while agents write, a consolidation run gives way to them.

A run is Python work in the process that takes the writes, and the engine's binding holds
the GIL while it works, so the two take turns. Side by side with a run every 5 seconds, 8
clients wrote 2,900 memories a second over HTTP; with no run, 9,900-11,300 (bench/write_speed.py).
A write is an agent waiting; a run is background work, and it can wait. So
between two steps of a run (a batch of neighbour queries, a batch of merges, a page of a
scroll, a partition planned: safe points, where it may also stop), a run that saw writes
during its last step waits for a quiet moment, no write for QUIET seconds. It waits at most
long enough to keep `share` of the time: under writes that never stop, a run still moves at
that share; under a few writes a second, it loses only the moments they take.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from typing import TypeVar

T = TypeVar("T")

# seconds without a write: the writers are done for now (a client's next batch follows
# within milliseconds of the last)
QUIET = 0.05


class WritesFirst:
    """Counts the writes in flight and paces a run's steps around them. `share`: the part of
    the time a run keeps however busy the writers are (1.0: it never waits). `sleep`: how a
    run waits (the consolidator's stop event's wait: a shutdown cuts a wait short)."""

    def __init__(
        self,
        share: float,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], object] = time.sleep,
    ) -> None:
        if not 0.0 < share <= 1.0:
            raise ValueError(f"a run's share of the time must be in (0, 1], not {share}")
        self.share = share
        self._clock, self._sleep = clock, sleep
        self._lock = threading.Lock()
        self._in_flight = 0
        self._last_write = -math.inf
        self._step_started = clock()
        self.paused = 0.0  # seconds waited since `restart`

    @contextmanager
    def writing(self) -> Iterator[None]:
        """Around a write: a run's step that overlaps it is paced."""
        with self._lock:
            self._in_flight += 1
        try:
            yield
        finally:
            with self._lock:
                self._in_flight -= 1
                self._last_write = self._clock()

    def restart(self) -> None:
        """A run begins: its first step starts now, nothing paused yet."""
        self._step_started, self.paused = self._clock(), 0.0

    def pace(self) -> None:
        """Between two steps: if a write ran during the step just done, wait until the
        writes pause for QUIET seconds, or until the step was `share` of the time since it
        started, whichever comes first."""
        started = self._clock()
        worked = started - self._step_started
        if self.share < 1.0 and worked > 0 and (self._in_flight or self._last_write >= self._step_started):
            self._wait_for_quiet(deadline=started + worked * (1.0 - self.share) / self.share)
            self.paused += self._clock() - started
        self._step_started = self._clock()

    def _wait_for_quiet(self, deadline: float) -> None:
        while (now := self._clock()) < deadline:
            quiet_at = now + QUIET if self._in_flight else self._last_write + QUIET
            if quiet_at <= now:
                return
            if self._sleep(min(quiet_at, deadline) - now) is True:  # the stop event was set
                return

    def paced(self, items: Iterable[T], every: int) -> Iterator[T]:
        """`items`, with a pace before every `every` of them: a long scroll in steps."""
        for index, item in enumerate(items):
            if index % every == 0:
                self.pace()
            yield item
