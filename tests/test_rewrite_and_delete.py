"""Agents rewrite and delete memories reverie has already merged: the new version replaces
the old one everywhere, a deleted memory is gone from every merged point, and the rest
of each merge comes back to be merged again. Both engines; a crash at every step."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from reverie.consolidation.planning import merged_id
from reverie.errors import ConflictError, NotFoundError
from reverie.ledger.lineage import store_lineage_map
from reverie.memory import NewMemory, Reverie
from reverie.storage import Record
from reverie.storage import payload as p
from test_crash_safety import crash_at_every_write

from helpers import assert_same_points, check_invariants, memories, near_duplicates, snapshot


def clusters(rv: Reverie) -> list[list[int]]:
    return sorted(
        sorted(int(i) for i in o) for o in store_lineage_map(rv.store, rv.collection, rv.archive).values()
    )


def chained(rv: Reverie) -> tuple[np.ndarray, str]:
    """Memories 0-2 of one group merged twice (0+1, then that with 2) and 3-5 of another
    merged once; returns the vectors and the top merged id of the chain."""
    vectors, labels = near_duplicates(groups=2, per_group=3, seed=3)
    ms = memories(vectors, labels)
    rv.write([ms[0], ms[1], *ms[3:]])
    rv.consolidate()
    rv.write([ms[2]])
    rv.consolidate()
    assert clusters(rv) == [[0, 1, 2], [3, 4, 5]]
    return vectors, merged_id([merged_id([0, 1]), 2])


def far_from(vectors: np.ndarray, seed: int = 9) -> np.ndarray:
    rng = np.random.default_rng(seed)
    v = rng.normal(size=vectors.shape[1]).astype(np.float32)
    return v / np.linalg.norm(v)


def test_rewriting_a_merged_away_memory_replaces_it_everywhere(rv: Reverie) -> None:
    vectors, top = chained(rv)
    new = far_from(vectors)
    rv.write([NewMemory(new, {"text": "rewritten", "version": 2}, id=0)])
    # both merges above 0 are undone, on record in a release run; 0 is the new version
    (run,) = [r for r in rv.run_log.runs() if r.kind == "release"]
    assert run.status == "done" and run.summary == {"reason": "rewritten", "undone": 2}
    assert {m.status for m in rv.run_log.merges(run.run_id)} == {"undone"}
    assert rv.run_log.find_merge(top).status == "undone"
    record, archived = rv.get(0)
    assert not archived and record.payload["version"] == 2
    np.testing.assert_allclose(record.vector, new, atol=1e-6)
    assert not rv.store.retrieve(rv.archive, [0, 1, 2])
    assert {p.state(r.payload) for r in rv.store.retrieve(rv.collection, [1, 2])} == {p.FRESH}
    check_invariants(rv, set(range(6)))
    rv.consolidate()  # the rest of the group merges again, without the rewritten memory
    assert clusters(rv) == [[0], [1, 2], [3, 4, 5]]
    check_invariants(rv, set(range(6)))


def test_forgetting_a_merged_away_memory_takes_it_out_of_its_merges(rv: Reverie) -> None:
    chained(rv)
    released = rv.forget(["1"])
    assert released.ids == [1] and len(released.undone) == 2
    assert not rv.store.retrieve(rv.collection, [1]) and not rv.store.retrieve(rv.archive, [1])
    with pytest.raises(NotFoundError):
        rv.get(1)
    check_invariants(rv, {0, 2, 3, 4, 5})
    rv.consolidate()
    assert clusters(rv) == [[0, 2], [3, 4, 5]]
    check_invariants(rv, {0, 2, 3, 4, 5})


def test_forgetting_a_merged_point_takes_its_originals_with_it(rv: Reverie) -> None:
    _, top = chained(rv)
    released = rv.forget([top])
    assert sorted(int(i) for i in released.ids) == [0, 1, 2] and len(released.undone) == 2
    assert clusters(rv) == [[3, 4, 5]]
    assert rv.store.count(rv.archive) == 3  # only the other group's originals
    check_invariants(rv, {3, 4, 5})


def test_a_merged_point_the_agents_tool_deleted_takes_its_originals_with_it(rv: Reverie) -> None:
    """The agent deletes a merged memory with its own client: maintenance (or the daemon's
    start) sees it vanished and deletes the originals under it, down the chain."""
    _, top = chained(rv)
    rv.store.delete(rv.collection, [top])  # the agent's own Qdrant client
    assert rv.honour_agent_deletes() == {"merges": 1, "copies": 4}  # 0, 1, 2 and the merge between
    assert {m.merge_id for m in rv.run_log.merges_in_status("deleted")} == {top, merged_id([0, 1])}
    assert clusters(rv) == [[3, 4, 5]] and rv.store.count(rv.archive) == 3
    for gone in ("0", "1", "2"):
        with pytest.raises(NotFoundError):
            rv.get(gone)
    check_invariants(rv, {3, 4, 5})
    assert rv.honour_agent_deletes() == {"merges": 0, "copies": 0}


def test_a_release_never_brings_back_what_the_agent_deleted(rv: Reverie) -> None:
    """Before maintenance sees the delete, a rewrite of one member releases the chain: the
    other members are deleted with the vanished merge, not restored."""
    vectors, top = chained(rv)
    rv.store.delete(rv.collection, [top])
    rv.write([NewMemory(far_from(vectors), {"text": "rewritten"}, id=0)])
    assert rv.get(0)[0].payload["text"] == "rewritten"
    for gone in ("1", "2"):
        with pytest.raises(NotFoundError):
            rv.get(gone)
    rv.honour_agent_deletes()  # settles the run log's record of the vanished merge
    check_invariants(rv, {0, 3, 4, 5})


def test_a_live_original_is_simply_deleted(rv: Reverie) -> None:
    vectors, labels = near_duplicates(groups=1, per_group=2)
    rv.write(memories(vectors, labels))
    released = rv.forget([1])
    assert released.ids == [1] and released.run_id is None and released.undone == []
    check_invariants(rv, {0})


def test_unknown_ids_and_merged_ids_are_refused_and_nothing_changes(rv: Reverie) -> None:
    vectors, top = chained(rv)
    before, archive = snapshot(rv), snapshot(rv, rv.archive)
    with pytest.raises(NotFoundError, match="unknown memory id: 77 .nothing was deleted"):
        rv.forget([0, 77])
    with pytest.raises(NotFoundError, match="unknown memory id"):
        rv.forget(["not-an-id"])
    for merged in (top, merged_id([0, 1])):  # live, and archived under the top
        with pytest.raises(ConflictError, match=f"memory {merged} is a merged point"):
            rv.write([NewMemory(vectors[0], {"text": "over a merged point"}, id=merged)])
    assert_same_points(snapshot(rv), before)
    assert_same_points(snapshot(rv, rv.archive), archive)
    assert not [r for r in rv.run_log.runs() if r.kind == "release"]


def test_a_plain_client_rewrite_is_released_by_the_next_run(rv: Reverie) -> None:
    vectors, _ = chained(rv)
    new = far_from(vectors)
    # an agent upserts over memory 4 (merged away) straight into Qdrant: no reverie stamp
    rv.store.upsert(rv.collection, [Record(4, new, {"text": "rewritten by a plain client"})])
    rv.consolidate()
    (run,) = [r for r in rv.run_log.runs() if r.kind == "release"]
    assert run.summary == {"reason": "rewritten", "undone": 1}
    record, archived = rv.get(4)
    assert not archived and record.payload["text"] == "rewritten by a plain client"
    rv.consolidate()
    assert clusters(rv) == [[0, 1, 2], [3, 5], [4]]
    check_invariants(rv, set(range(6)))


@pytest.mark.parametrize("action", ["rewrite", "forget"])
def test_a_crash_at_every_write_of_a_release_loses_nothing(
    store_kind: str, tmp_path: Path, action: str
) -> None:
    def act(rv: Reverie, vectors: np.ndarray) -> None:
        if action == "rewrite":
            rv.write([NewMemory(far_from(vectors), {"text": "new"}, id=0)])
        else:
            rv.forget([0])

    def check(rv: Reverie, crash_at: int) -> None:
        # the write or delete was never acknowledged: 0 may be there or not
        for _ in range(2):  # after recovery, and after the next run
            problems = rv.invariant_problems(must_hold={1, 2, 3, 4, 5}, may_hold=set(range(6)))
            assert not problems, f"crash at write {crash_at}: {problems}"
            rv.consolidate()

    crashes = crash_at_every_write(store_kind, tmp_path, lambda rv: chained(rv)[0], act, check)
    assert crashes >= 8  # two undos, each several writes, before the final write or delete
