"""An agent rewrites or deletes a member between planning and apply: that merge is
skipped, the agent's write stands, and the next run picks the rest up."""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from typing import Any

from reverie.memory import NewMemory, Reverie
from reverie.storage import Record, Store
from reverie.storage import payload as p

from helpers import check_invariants, memories, near_duplicates


class AgentRacingStore:
    """The real store; just before the first archive write, an agent acts on the live
    collection with plain calls (no reverie bookkeeping), as any Qdrant client would."""

    def __init__(self, inner: Store, agent: Callable[[Store, str], None]) -> None:
        self._inner = inner
        self._agent: Callable[[Store, str], None] | None = agent

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)

    def upsert(self, name: str, records: Sequence[Record]) -> None:
        if name.endswith("__archive") and self._agent is not None:
            self._agent(self._inner, name.removesuffix("__archive"))
            self._agent = None
        self._inner.upsert(name, records)


def test_rewritten_member_is_kept_and_merged_next_run(rv: Reverie) -> None:
    vectors, labels = near_duplicates(groups=2, per_group=3, seed=2)
    rv.write(memories(vectors, labels))
    new_vector = vectors[0] * 0.9 + vectors[1] * 0.1
    rewrite = Record(0, new_vector, {"text": "memory 0, corrected by the agent", "group": 0})
    agent = AgentRacingStore(rv.store, lambda store, live: store.upsert(live, [rewrite]))
    racing = Reverie(rv.settings, agent)  # type: ignore[arg-type]
    report = racing.consolidate()
    assert len(report.skipped) == 1 and report.skipped[0]["changed"] == [0]
    assert len(report.merges) == 1
    kept = rv.store.retrieve(rv.collection, [0])[0]
    assert kept.payload["text"] == "memory 0, corrected by the agent"
    assert p.state(kept.payload) == p.FRESH
    skipped_id = report.skipped[0]["merge_id"]
    assert rv.store.retrieve(rv.collection, [skipped_id]) == []
    assert rv.store.retrieve(rv.archive, [0, 1, 2]) == []  # the voided merge left no copies
    check_invariants(rv, set(range(6)))
    statuses = [m.status for m in rv.run_log.merges(report.run_id)]
    assert sorted(statuses) == ["applied", "skipped"]
    again = rv.consolidate()
    assert len(again.merges) == 1
    assert sorted(m["id"] for m in again.merges[0]["members"]) == [0, 1, 2]
    check_invariants(rv, set(range(6)))


def test_deleted_member_voids_the_merge_and_stays_deleted(rv: Reverie) -> None:
    vectors, labels = near_duplicates(groups=1, per_group=3, seed=2)
    rv.write(memories(vectors, labels))
    agent = AgentRacingStore(rv.store, lambda store, live: store.delete(live, [1]))
    report = Reverie(rv.settings, agent).consolidate()  # type: ignore[arg-type]
    assert report.merges == [] and report.skipped[0]["vanished"] == [1]
    assert sorted(r.id for r in rv.live_records()) == [0, 2]  # the agent's delete stands
    assert rv.store.count(rv.archive) == 0
    check_invariants(rv, {0, 2})
    again = rv.consolidate()
    assert [sorted(m["id"] for m in merge["members"]) for merge in again.merges] == [[0, 2]]


class AgentBeforeDelete:
    """The real store; just before the merge deletes its members from the live collection
    (after it checked them), an agent rewrites one with a plain call."""

    def __init__(self, inner: Store, rewrite: Record) -> None:
        self._inner = inner
        self._rewrite: Record | None = rewrite

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)

    def delete(self, name: str, ids: Sequence[Any], only: Any = None) -> None:
        if self._rewrite is not None and not name.endswith("__archive"):
            self._inner.upsert(name, [self._rewrite])
            self._rewrite = None
        self._inner.delete(name, ids, only)


def test_a_rewrite_between_the_check_and_the_delete_is_kept(rv: Reverie) -> None:
    vectors, labels = near_duplicates(groups=1, per_group=3, seed=4)
    rv.write(memories(vectors, labels))
    rewrite = Record(1, vectors[1], {"text": "memory 1, corrected too late for the check"})
    report = Reverie(rv.settings, AgentBeforeDelete(rv.store, rewrite)).consolidate()  # type: ignore[arg-type]
    assert len(report.merges) == 1  # the check passed before the agent wrote
    kept = rv.store.retrieve(rv.collection, [1])[0]
    assert kept.payload["text"] == "memory 1, corrected too late for the check"
    assert not rv.store.retrieve(rv.collection, [0, 2])  # the unchanged members went
    rv.consolidate()  # the next run releases the merge that still holds the old version
    kept, archived = rv.get(1)
    assert kept.payload["text"] == "memory 1, corrected too late for the check"
    check_invariants(rv, {0, 1, 2})


def test_new_memories_are_written_while_a_merge_is_applied_and_rewrites_wait(rv: Reverie) -> None:
    """A write of new memories cannot touch a merge in flight, so it does not wait for the
    merge lock; a write that names ids may rewrite a member, so it waits for the merge."""
    vectors, labels = near_duplicates(groups=2, per_group=3, seed=5)
    rv.write(memories(vectors, labels))
    threads: dict[str, threading.Thread] = {}

    def agents_write_mid_apply(store: Store, live: str) -> None:
        new = [NewMemory(vectors[0], {"text": "a new memory, written mid-merge"})]
        threads["new"] = threading.Thread(target=racing.write, args=(new,))
        named = [NewMemory(vectors[3], {"text": "memory 100, named by the agent"}, 100)]
        threads["named"] = threading.Thread(target=racing.write, args=(named,))
        for thread in threads.values():
            thread.start()
        threads["new"].join(timeout=60)
        threads["named"].join(timeout=0.5)
        assert not threads["new"].is_alive()  # written while this merge holds the lock
        assert threads["named"].is_alive()  # cannot finish before the merge lets go

    racing = Reverie(rv.settings, AgentRacingStore(rv.store, agents_write_mid_apply))  # type: ignore[arg-type]
    report = racing.consolidate()
    threads["named"].join(timeout=60)
    assert len(report.merges) == 2 and not threads["named"].is_alive()
    written = {r.id: r.payload["text"] for r in rv.store.scroll(rv.collection, p.FRESH_FILTER)}
    assert set(written.values()) == {"a new memory, written mid-merge", "memory 100, named by the agent"}
    check_invariants(rv, set(range(6)) | set(written))
