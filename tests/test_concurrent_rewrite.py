"""An agent rewrites or deletes a member between planning and apply: that merge is
skipped, the agent's write stands, and the next run picks the rest up."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from reverie.memory import Reverie
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
