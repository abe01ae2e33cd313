"""Writes first: while agents write, a consolidation run takes only a share of the time.

A run is Python work in the process that takes the writes, and the engine's binding holds
the GIL while it works, so the two take turns. Side by side with a run every 5 seconds, 8
clients wrote 2,900 memories a second over HTTP, against 8,900 in a burst with one run
inside it (bench/write_speed.py). A write is an agent waiting; a run is background work
that the next run finishes. So between two steps of a run (a batch of neighbour queries, a
batch of merges, a slice: safe points, where it may also stop), a run that saw writes
during its last step sleeps long enough to keep to its share of the time. With no writes,
it never sleeps.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from typing import TypeVar

T = TypeVar("T")


class WritesFirst:
    """Counts the writes in flight and paces a run's steps around them. `share`: the part of
    the time a run keeps while writes come in (1.0: it never pauses). `sleep`: how a run
    pauses (the consolidator's stop event's wait, so a shutdown cuts a pause short)."""

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
        self.paused = 0.0  # seconds slept since `restart`

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
        """Between two steps: if a write ran during the step just done, sleep so the step
        was `share` of the time since it started."""
        worked = self._clock() - self._step_started
        if self.share < 1.0 and worked > 0 and (self._in_flight or self._last_write >= self._step_started):
            pause = worked * (1.0 - self.share) / self.share
            self._sleep(pause)
            self.paused += pause
        self._step_started = self._clock()

    def paced(self, items: Iterable[T], every: int) -> Iterator[T]:
        """`items`, with a pace before every `every` of them: a long scroll in steps."""
        for index, item in enumerate(items):
            if index % every == 0:
                self.pace()
            yield item
