"""An agent rewrites a member between planning and apply: that merge is skipped, the
member is kept as the agent wrote it, and the next run picks it up."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from reverie.memory import Reverie
from reverie.storage import Record, Store
from reverie.storage import payload as p

from helpers import check_invariants, memories, near_duplicates


class AgentRacingStore:
    """The real store; just before the first archive write, an agent rewrites point 0
    with a plain upsert (no reverie bookkeeping), as any Qdrant client would."""

    def __init__(self, inner: Store, rewrite: Record) -> None:
        self._inner = inner
        self._rewrite: Record | None = rewrite

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)

    def upsert(self, name: str, records: Sequence[Record]) -> None:
        if name.endswith("__archive") and self._rewrite is not None:
            self._inner.upsert(name.removesuffix("__archive"), [self._rewrite])
            self._rewrite = None
        self._inner.upsert(name, records)


def test_rewritten_member_is_kept_and_merged_next_run(rv: Reverie) -> None:
    vectors, labels = near_duplicates(groups=2, per_group=3, seed=2)
    rv.write(memories(vectors, labels))
    new_vector = vectors[0] * 0.9 + vectors[1] * 0.1
    rewrite = Record(0, new_vector, {"text": "memory 0, corrected by the agent", "group": 0})
    racing = Reverie(rv.settings, AgentRacingStore(rv.store, rewrite))  # type: ignore[arg-type]
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
