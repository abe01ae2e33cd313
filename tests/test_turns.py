"""The API's write lock takes writes in the order they came (daemon/turns.py)."""

from __future__ import annotations

import threading
import time

from reverie.daemon.turns import TurnLock


def _queue_behind(lock: TurnLock, name: str, order: list[str]) -> threading.Thread:
    """A thread that waits for the lock, then notes its turn; returned once it waits."""

    def take_turn() -> None:
        with lock:
            order.append(name)

    waiting = lock.queued
    thread = threading.Thread(target=take_turn)
    thread.start()
    deadline = time.monotonic() + 10
    while lock.queued == waiting and time.monotonic() < deadline:
        time.sleep(0.001)
    assert lock.queued == waiting + 1
    return thread


def test_the_lock_goes_to_those_waiting_in_the_order_they_came() -> None:
    lock, order = TurnLock(), []
    with lock:
        threads = [_queue_behind(lock, name, order) for name in ("first", "second", "third")]
    # the holder comes back at once: a plain lock would usually let it in before them
    with lock:
        order.append("holder again")
    for thread in threads:
        thread.join(10)
    assert order == ["first", "second", "third", "holder again"]
    assert lock.queued == 0


def test_a_lock_nobody_waits_for_is_free_again_after_an_error() -> None:
    lock = TurnLock()
    try:
        with lock:
            raise ValueError("a write that failed")
    except ValueError:
        pass
    taken = threading.Event()

    def take() -> None:
        with lock:
            taken.set()

    thread = threading.Thread(target=take)
    thread.start()
    thread.join(10)
    assert taken.is_set()


def test_taking_the_lock_if_free_never_waits_and_never_jumps_the_queue() -> None:
    lock, order = TurnLock(), []
    assert lock.take_if_free()
    assert not lock.take_if_free()  # held
    waiter = _queue_behind(lock, "waiter", order)
    lock.release()  # straight to the waiter: it holds the lock now
    waiter.join(10)
    assert order == ["waiter"]
    assert lock.take_if_free()  # the waiter is done: free again
    lock.release()
