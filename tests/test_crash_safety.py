"""A crash at every step boundary of apply (and halfway through each write), then a
restart: no memory is ever lost, and recovery leaves nothing in flight."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import pytest

from reverie.config import Settings
from reverie.memory import Reverie
from reverie.storage import Filter, PointId, Record, Store

from conftest import make_store
from helpers import check_invariants, memories, near_duplicates


class InjectedCrash(RuntimeError):
    pass


class CrashingStore:
    """A real store that dies at its Nth write; `torn` applies half of that write first."""

    def __init__(self, inner: Store, crash_at: int, torn: bool) -> None:
        self._inner = inner
        self._crash_at = crash_at
        self._torn = torn
        self.writes = 0

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)

    def _write(self, method: str, name: str, items: Sequence[Any], *rest: Any) -> None:
        if not items:
            return  # the adapters skip empty writes too
        self.writes += 1
        if self.writes == self._crash_at:
            if self._torn and len(items) > 1:
                getattr(self._inner, method)(name, items[: len(items) // 2], *rest)
            raise InjectedCrash(f"crash at write {self.writes} ({method} {name})")
        getattr(self._inner, method)(name, items, *rest)

    def upsert(self, name: str, records: Sequence[Record]) -> None:
        self._write("upsert", name, records)

    def delete(self, name: str, ids: Sequence[PointId], only: Filter | None = None) -> None:
        self._write("delete", name, ids, only)

    def set_payload(self, name: str, ids: Sequence[PointId], payload: dict, key: str | None = None) -> None:
        self._write("set_payload", name, ids, payload, key)


def expected_clusters(labels: Any) -> list[list[int]]:
    return sorted([[i for i, g in enumerate(labels) if g == k] for k in set(labels.tolist())])


def crash_at_every_write(
    store_kind: str,
    tmp_path: Path,
    prepare: Callable[[Reverie], Any],
    act: Callable[[Reverie, Any], object],
    check: Callable[[Reverie, int], None],
    torn: bool = True,
) -> int:
    """For N = 1, 2, ...: a fresh store set up by `prepare`, then `act` on it through a
    store that dies at its Nth write; then a restart (the edge store reopened from disk),
    recovery, and `check`. Stops at the first N that `act` survives; returns the crashes."""
    crash_at = 1
    while True:
        root = tmp_path / f"{crash_at}"
        settings = Settings()
        settings.storage.data_dir = root / "data"
        store = make_store(store_kind, root)
        context = prepare(Reverie(settings, store))
        try:
            act(Reverie(settings, CrashingStore(store, crash_at, torn)), context)  # type: ignore[arg-type]
        except InjectedCrash:
            pass
        else:
            store.close()
            return crash_at - 1
        if store_kind == "edge":
            store.close()
            store = make_store(store_kind, root)
        with Reverie(settings, store) as rv:
            rv.recover()
            check(rv, crash_at)
        crash_at += 1


@pytest.mark.parametrize("torn", [False, True], ids=["clean", "torn"])
def test_crash_at_every_write_then_restart(store_kind: str, tmp_path: Path, torn: bool) -> None:
    vectors, labels = near_duplicates(groups=3, per_group=3, seed=11)

    def check(rv: Reverie, crash_at: int) -> None:
        check_invariants(rv, set(range(9)))
        rv.consolidate()  # the next run finishes the job
        check_invariants(rv, set(range(9)))
        clusters = sorted(sorted(int(i) for i in rv.lineage(r)) for r in rv.live_records())
        assert clusters == expected_clusters(labels), f"crash at write {crash_at}"

    crashes = crash_at_every_write(
        store_kind,
        tmp_path,
        prepare=lambda rv: rv.write(memories(vectors, labels)),
        act=lambda rv, _: rv.consolidate(),
        check=check,
        torn=torn,
    )
    # six writes, each for the three merges together (write merged, archive, mark the
    # members, mark verified, delete, mark live); every fresh point was merged, so none
    # is left to stamp
    assert crashes == 6


def test_crash_at_every_write_of_undo_then_restart(store_kind: str, tmp_path: Path) -> None:
    vectors, labels = near_duplicates(groups=2, per_group=2, seed=4)
    crash_at = 1
    while True:
        root = tmp_path / f"{crash_at}"
        settings = Settings()
        settings.storage.data_dir = root / "data"
        store = make_store(store_kind, root)
        rv = Reverie(settings, store)
        rv.write(memories(vectors, labels))
        run = rv.consolidate()
        try:
            Reverie(settings, CrashingStore(store, crash_at, torn=False)).undo(run.run_id)  # type: ignore[arg-type]
        except InjectedCrash:
            pass
        else:
            break
        rv.recover()
        check_invariants(rv, set(range(4)))
        rv.close()
        crash_at += 1
    assert crash_at == 9  # four writes for each of the two undone merges
    assert sorted(int(r.id) for r in rv.live_records()) == [0, 1, 2, 3]
    rv.close()
