"""Writes take turns in the order they came.

The API lets one write work at a time (daemon/api.py says why). A plain lock does not
queue: the thread that releases it, or any thread that happens to be running, may take it
again before those already waiting, so under 8 clients at batches of 1,000 one write in a
hundred waited three or four times its share (p99 1.8-3.1 s against p50 0.7 s,
bench/write_speed.py). Here the lock passes straight to the longest waiting thread.
"""

from __future__ import annotations

import threading
from collections import deque
from types import TracebackType


class TurnLock:
    """A lock granted in arrival order: release hands it to the first thread waiting."""

    def __init__(self) -> None:
        self._mutex = threading.Lock()
        self._held = False
        self._waiting: deque[threading.Event] = deque()

    @property
    def queued(self) -> int:
        """Threads waiting for their turn."""
        return len(self._waiting)

    def __enter__(self) -> None:
        with self._mutex:
            if not self._held:
                self._held = True
                return
            turn = threading.Event()
            self._waiting.append(turn)
        turn.wait()  # set by the holder's release: the lock is ours, still held

    def take_if_free(self) -> bool:
        """Take the lock if nobody holds it or waits for it; never waits. True: taken (give it
        back with `release`)."""
        with self._mutex:
            if self._held:
                return False
            self._held = True
            return True

    def release(self) -> None:
        """Hand the lock to the first thread waiting, or free it."""
        with self._mutex:
            if self._waiting:
                self._waiting.popleft().set()
            else:
                self._held = False

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None
    ) -> None:
        self.release()
