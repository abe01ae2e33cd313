"""The engine end to end on both real engines, with synthetic near-duplicate vectors."""

import uuid

import numpy as np
import pytest

from reverie.consolidation import engine
from reverie.consolidation.planning import merged_id
from reverie.display import report_lines
from reverie.errors import InvalidInputError, NotFoundError, StorageFullError
from reverie.ledger.lineage import store_lineage_map
from reverie.memory import NewMemory, Reverie
from reverie.storage import Record
from reverie.storage import payload as p
from reverie.storage.detection import detect

from helpers import (
    assert_same_points,
    check_invariants,
    errors_in_threads,
    memories,
    near_duplicates,
    snapshot,
)


def live_clusters(rv: Reverie) -> list[list[int]]:
    lineages = store_lineage_map(rv.store, rv.collection, rv.archive)
    return sorted(sorted(int(i) for i in originals) for originals in lineages.values())


def test_a_write_stamps_state_and_age_and_adoption_adds_kind_and_weight(rv: Reverie) -> None:
    """A fresh memory carries only what finding and ageing it need (each stamped value
    costs the write); the run that adopts it completes the stamp."""
    vectors, _ = near_duplicates(groups=3, per_group=1)
    written = rv.write([NewMemory(vectors[0], {"text": "tea"}), NewMemory(vectors[1], {"agent_id": "a1"})])
    fresh = rv.store.retrieve(rv.collection, written)
    assert [set(p.meta(r.payload)) for r in fresh] == [{"state", "created_at"}] * 2
    assert detect([r.payload for r in fresh], rv.collection) == "reverie"  # a text-less one says nothing
    rv.consolidate()
    for record in rv.store.retrieve(rv.collection, written):
        stamp = p.meta(record.payload)
        assert (stamp["state"], stamp["kind"], stamp["weight"]) == (p.LIVE, p.ORIGINAL, 1.0)
        assert stamp["created_at"] == p.meta(fresh[0].payload)["created_at"] and "adopted_at" in stamp


def test_memories_that_name_no_id_get_distinct_random_uuids(rv: Reverie) -> None:
    vectors = np.random.default_rng(0).normal(size=(2000, 8)).astype(np.float32)
    ids = rv.write([NewMemory(v, {"text": f"m{i}"}) for i, v in enumerate(vectors)])
    parsed = [uuid.UUID(i) for i in ids]
    assert len(set(ids)) == 2000 and [str(u) for u in parsed] == ids
    assert {(u.version, u.variant) for u in parsed} == {(4, uuid.RFC_4122)}
    assert len(rv.store.retrieve(rv.collection, ids, with_vectors=False)) == 2000


def test_merges_groups_and_archives_originals(rv: Reverie) -> None:
    vectors, labels = near_duplicates(groups=5, per_group=3)
    rv.write(memories(vectors, labels))
    report = rv.consolidate()
    assert report.route == "exact"  # everything is new: blocked products beat 15 queries
    assert report.points_before == 15 and report.points_after == 5
    assert live_clusters(rv) == [[3 * g, 3 * g + 1, 3 * g + 2] for g in range(5)]
    assert rv.store.count(rv.archive) == 15
    check_invariants(rv, set(range(15)))
    merged = next(iter(rv.live_records()))
    stamp = p.meta(merged.payload)
    assert stamp["kind"] == p.MERGED and stamp["state"] == p.LIVE and stamp["weight"] == 3
    assert merged.id == merged_id(stamp["merged_from"])
    # the text field holds the label: the member text closest to the merged vector
    assert stamp["text_source"] == "label" and stamp["label"]["id"] in stamp["merged_from"]
    assert merged.payload["text"] == f"memory {stamp['label']['id']} of group {merged.payload['group']}"
    member_vectors = {r.id: r.vector for r in rv.store.retrieve(rv.archive, stamp["merged_from"])}
    cosines = {i: float(v @ merged.vector) for i, v in member_vectors.items()}
    assert stamp["label"]["id"] == max(cosines, key=cosines.get)
    assert stamp["label"]["cosine"] == pytest.approx(max(cosines.values()), abs=1e-3)
    assert merged.payload["group"] == int(stamp["merged_from"][0]) // 3  # shared agent keys kept
    stats = rv.stats()
    assert stats["live"] == 5 and stats["merged"] == 5 and stats["archived"] == 15
    assert stats["labelled_text"] == 5 and stats["pending_text"] == 0
    assert stats["last_run"]["run_id"] == report.run_id and stats["layout"]["layout"] == "reverie"


def test_a_report_keeps_the_first_merges_and_counts_them_all(rv: Reverie, monkeypatch) -> None:
    """A pass over millions makes hundreds of thousands of merges: the report holds the
    first few in memory and counts the rest; the run log has every one."""
    monkeypatch.setattr(engine, "MERGES_KEPT", 2)
    vectors, labels = near_duplicates(groups=5, per_group=3)
    rv.write(memories(vectors, labels))
    report = rv.consolidate()
    assert len(report.merges) == 2 and report.merge_count == 5
    assert report.summary()["merges"] == 5 and report.summary()["members_merged"] == 15
    assert len(rv.run_log.merges(report.run_id)) == 5
    assert report_lines(report)[-1] == f"  ... and 3 more merges: reverie runs show {report.run_id}"


def test_second_run_changes_nothing(rv: Reverie) -> None:
    vectors, labels = near_duplicates(groups=4, per_group=3)
    rv.write(memories(vectors, labels))
    rv.consolidate()
    before, archive = snapshot(rv), snapshot(rv, rv.archive)
    for full in (False, True):
        again = rv.consolidate(full=full)
        assert again.merges == [] and again.adopted == 0
    assert_same_points(snapshot(rv), before)
    assert_same_points(snapshot(rv, rv.archive), archive)


def test_dry_run_changes_nothing(rv: Reverie) -> None:
    vectors, labels = near_duplicates(groups=3, per_group=2)
    rv.write(memories(vectors, labels))
    before = snapshot(rv)
    report = rv.consolidate(dry_run=True)
    assert len(report.merges) == 3 and report.points_after == 3
    assert_same_points(snapshot(rv), before)
    assert rv.run_log.runs() == []


def test_incremental_run_merges_new_points_into_existing_merges(rv: Reverie) -> None:
    vectors, labels = near_duplicates(groups=3, per_group=4, seed=5)
    first = [m for m in memories(vectors, labels) if int(m.id) % 4 != 3]
    later = [m for m in memories(vectors, labels) if int(m.id) % 4 == 3]
    rv.write(first)
    rv.consolidate()
    assert len(live_clusters(rv)) == 3
    report = rv.consolidate  # incremental: only the 3 new points and their neighbours
    rv.write(later)
    result = report()
    assert result.adopted == 3 and result.considered == 6 and result.route == "neighbours"
    assert live_clusters(rv) == [[4 * g + k for k in range(4)] for g in range(3)]
    assert all(p.weight(r.payload) == 4 for r in rv.live_records())
    check_invariants(rv, set(range(12)))


def test_partitions_are_never_mixed(rv: Reverie) -> None:
    vectors, labels = near_duplicates(groups=2, per_group=2)
    ms = memories(vectors, labels)
    for m, user in zip(ms, ["a", "b", "a", "a"], strict=True):
        m.payload["user_id"] = user
    rv.write(ms)
    rv.consolidate(full=True)
    assert live_clusters(rv) == [[0], [1], [2, 3]]
    assert {r.payload["user_id"] for r in rv.live_records() if p.weight(r.payload) == 2} == {"a"}


def test_a_full_pass_gathers_whole_tenants_a_slice_at_a_time(rv: Reverie) -> None:
    """Slices of whole tenants (at most 7 points here, a larger tenant alone) merge what one
    gathering of everything would, and never across tenants."""
    rv.settings.consolidation.slice_points = 7
    vectors, labels = near_duplicates(groups=6, per_group=3)
    ms = memories(vectors, labels)
    tenants = ["u0"] * 3 + ["u1"] * 3 + ["u2"] * 3 + ["u0"] * 3 + ["u1"] * 3 + ["u2", "u2", "u3"]
    for m, user in zip(ms, tenants, strict=True):
        m.payload["user_id"] = user
    rv.write(ms)
    report = rv.consolidate(full=True)
    assert report.tenants_counted_by == "index"  # one text value a point: the key's index counts them
    assert report.slices == 3  # u0 (6 points), u1 (6), then u2 and u3 together (3 + 2 + 1)
    assert report.considered == 18 and report.adopted == 18
    expected = [[3 * g, 3 * g + 1, 3 * g + 2] for g in range(5)] + [[15, 16], [17]]
    assert live_clusters(rv) == expected
    check_invariants(rv, set(range(18)))


def test_a_full_pass_needs_room_for_one_slice_at_a_time(rv: Reverie) -> None:
    """The disk is checked before each slice, for that slice: a pass over a store larger
    than the free space goes ahead while each slice fits (a 10M store was refused whole for
    48 GiB it would never hold at once). Out of room partway, the pass stops with an error
    that says the merges before it stay applied, and the next pass finishes the rest."""
    rv.settings.consolidation.slice_points = 6
    vectors, labels = near_duplicates(groups=6, per_group=3)
    ms = memories(vectors, labels)
    for i, m in enumerate(ms):
        m.payload["user_id"] = f"u{i // 6}"  # three tenants, two groups of three each
    rv.write(ms)
    asked: list[int] = []

    def room_for_two_slices(points: int) -> None:
        asked.append(points)
        if len(asked) == 3:
            raise StorageFullError("data: 10 MiB free, under storage.min_free_mb")

    real_room, rv.consolidator.room = rv.consolidator.room, room_for_two_slices
    with pytest.raises(StorageFullError, match="the 4 merges before it stay applied"):
        rv.consolidate(full=True)
    assert asked == [6, 6, 6]
    unmerged = [[i] for i in range(12, 18)]
    assert live_clusters(rv) == [[0, 1, 2], [3, 4, 5], [6, 7, 8], [9, 10, 11], *unmerged]
    check_invariants(rv, set(range(18)))
    rv.consolidator.room = real_room
    rv.consolidate(full=True)
    assert live_clusters(rv) == [[3 * g, 3 * g + 1, 3 * g + 2] for g in range(6)]
    check_invariants(rv, set(range(18)))


def test_tenants_the_index_cannot_tell_apart_are_gathered_last_and_kept_apart(rv: Reverie) -> None:
    """Counted from the index, ["u0"] and "u0" beside an empty agent_id are "u0" (the index
    sees the same value): met in u0's slice, their points are gathered in a last slice, and
    each of the three tenants merges only within itself."""
    rv.settings.consolidation.slice_points = 4
    vectors, _ = near_duplicates(groups=1, per_group=9)
    others, _ = near_duplicates(groups=1, per_group=3, seed=1)
    tenants = [{"user_id": "u0"}] * 3 + [{"user_id": ["u0"]}] * 3 + [{"user_id": "u0", "agent_id": []}] * 3
    tenants += [{"user_id": "u1"}] * 3
    written = [
        NewMemory(v, {"text": f"memory {i}", **tenant}, i)
        for i, (v, tenant) in enumerate(zip([*vectors, *others], tenants, strict=True))
    ]
    rv.write(written)
    report = rv.consolidate(full=True)
    assert report.tenants_counted_by == "index"
    assert report.slices == 3  # "u0" as counted (9 points: alone), u1, then the six it could not tell
    assert live_clusters(rv) == [[0, 1, 2], [3, 4, 5], [6, 7, 8], [9, 10, 11]]
    check_invariants(rv, set(range(12)))


@pytest.mark.parametrize("full", [False, True])
def test_a_tenant_is_its_json_value_with_its_type(rv: Reverie, full: bool) -> None:
    """1, "1", true and 1.0 are four tenants (Python's == once made three of them one: 18 of
    33 merges joined them); two points of each merge, never across."""
    tenants = [1, "1", True, 1.0, None, [1], ["1"]]
    vectors, _ = near_duplicates(groups=1, per_group=2 * len(tenants))
    written = [
        NewMemory(v, {"text": f"memory {i}", "user_id": tenants[i // 2]}, i) for i, v in enumerate(vectors)
    ]
    if full:
        rv.write(written)
    else:  # incremental: the neighbours found by the index, then compared by typed value
        rv.write(written[::2])
        rv.consolidate()
        rv.write(written[1::2])
    report = rv.consolidate(full=full)
    assert report.tenants_counted_by == ("payloads" if full else "")  # not all text: read from payloads
    assert live_clusters(rv) == [[2 * t, 2 * t + 1] for t in range(len(tenants))]
    merged = {repr(r.payload["user_id"]) for r in rv.live_records()}
    assert merged == {repr(t) for t in tenants}
    check_invariants(rv, set(range(len(written))))


def test_pinned_points_are_never_merged(rv: Reverie) -> None:
    vectors, labels = near_duplicates(groups=1, per_group=3)
    ms = memories(vectors, labels)
    ms[0].payload["pinned"] = True
    rv.write(ms)
    rv.consolidate()
    assert live_clusters(rv) == [[0], [1, 2]]


def test_points_written_by_plain_clients_are_adopted_or_quarantined(rv: Reverie) -> None:
    vectors, labels = near_duplicates(groups=1, per_group=2)
    rv.write(memories(vectors, labels))
    # An agent writes straight to the collection: no reverie bookkeeping at all.
    bad = np.zeros(32, dtype=np.float32)
    rv.store.upsert(rv.collection, [Record(10, vectors[0] * 0.5 + vectors[1] * 0.5, {"text": "agent"})])
    rv.store.upsert(rv.collection, [Record(11, bad, {"text": "zero"})])
    report = rv.consolidate()
    assert report.adopted == 3 and report.quarantined == 1
    assert live_clusters(rv) == [[0, 1, 10]]
    quarantined = rv.store.retrieve(rv.collection, [11])[0]
    assert p.state(quarantined.payload) == p.QUARANTINED
    assert p.meta(quarantined.payload)["reason"] == "zero vector"
    assert rv.stats()["quarantined"] == 1
    assert rv.consolidate(full=True).merges == []


def test_a_plain_clients_point_is_found_after_runs_that_saw_only_stamped_ones(rv: Reverie) -> None:
    """Runs look for points without a state only when some exist (the look reads every
    point's entry): one written later by a plain client is still adopted and merged."""
    vectors, labels = near_duplicates(groups=2, per_group=2)
    rv.write(memories(vectors[:3], labels[:3]))
    assert rv.consolidate().adopted == 3
    assert rv.consolidate().adopted == 0
    rv.store.upsert(rv.collection, [Record(3, vectors[3], {"text": "agent"})])
    report = rv.consolidate()
    assert report.adopted == 1
    assert live_clusters(rv) == [[0, 1], [2, 3]]


def test_undo_merge_restores_exact_vectors_and_payloads(rv: Reverie) -> None:
    vectors, labels = near_duplicates(groups=2, per_group=3)
    rv.write(memories(vectors, labels))
    written = snapshot(rv)
    first_run = rv.consolidate()
    merges = rv.run_log.merges(first_run.run_id)
    undo = rv.undo(merges[0].merge_id)
    assert len(undo.undone) == 1
    members = {m["id"] for m in merges[0].detail["members"]}
    restored = {k: v for k, v in snapshot(rv).items() if k in members}
    assert len(restored) == 3
    # exactly as written, but for reverie's adoption stamp
    for point_id, (vector, payload) in restored.items():
        np.testing.assert_allclose(vector, written[point_id][0], rtol=0, atol=1e-7)
        assert p.agent_payload(payload) == p.agent_payload(written[point_id][1])
        assert p.state(payload) == p.LIVE and p.weight(payload) == 1
    assert rv.store.retrieve(rv.collection, [merges[0].merge_id]) == []
    check_invariants(rv, set(range(6)))
    with pytest.raises(InvalidInputError, match="already undone"):
        rv.undo(merges[0].merge_id)
    # the whole run: what is left of it
    rv.undo(first_run.run_id)
    assert live_clusters(rv) == [[i] for i in range(6)]
    assert rv.consolidate().merges == []  # undone originals are not fresh: no re-merge
    assert rv.store.count(rv.archive) == 0
    kinds = [r.kind for r in rv.run_log.runs()]
    assert kinds.count("undo") == 2


def test_undo_refuses_merges_merged_again(rv: Reverie) -> None:
    vectors, labels = near_duplicates(groups=1, per_group=3)
    ms = memories(vectors, labels)
    rv.write(ms[:2])
    first = rv.consolidate()
    rv.write(ms[2:])
    second = rv.consolidate()
    assert len(second.merges) == 1
    with pytest.raises(InvalidInputError, match=f"undo that first|{second.run_id}"):
        rv.undo(first.run_id)
    rv.undo(second.run_id)
    rv.undo(first.run_id)
    assert live_clusters(rv) == [[0], [1], [2]]
    check_invariants(rv, {0, 1, 2})


def test_unknown_ids_are_clear_errors(rv: Reverie) -> None:
    with pytest.raises(NotFoundError, match="unknown run id"):
        rv.undo("r-20990101T000000-abcdef")
    with pytest.raises(NotFoundError, match="unknown run or merge id"):
        rv.undo("not-an-id")
    with pytest.raises(NotFoundError, match="unknown run or merge id"):
        rv.undo("6f1c2a8e-3b7d-5e90-a4c1-2d8f0b9e7a13")
    with pytest.raises(NotFoundError, match="unknown memory id"):
        rv.get("12345")
    with pytest.raises(NotFoundError, match="empty"):
        rv.consolidate()


def test_weighted_centroid_of_merged_points(rv: Reverie) -> None:
    vectors, labels = near_duplicates(groups=1, per_group=3)
    ms = memories(vectors, labels)
    rv.write(ms[:2])
    rv.consolidate()
    rv.write(ms[2:])
    rv.consolidate()
    (merged,) = list(rv.live_records())
    first = vectors[0] + vectors[1]
    first /= np.linalg.norm(first)
    expected = 2 * first + vectors[2]  # normalize(sum of weight_i * v_i)
    expected /= np.linalg.norm(expected)
    np.testing.assert_allclose(merged.vector, expected, atol=1e-5)
    assert p.weight(merged.payload) == 3
    assert sorted(int(i) for i in rv.lineage(merged)) == [0, 1, 2]
    # the second merge wrote only its own members: the first merged point and the new one
    first_merged = merged_id([0, 1])
    assert sorted(map(str, p.meta(merged.payload)["merged_from"])) == sorted([first_merged, "2"])
    assert "originals" not in p.meta(merged.payload)


def test_writes_check_every_memory_before_writing_any(rv: Reverie) -> None:
    vectors, labels = near_duplicates(groups=1, per_group=3)
    ms = memories(vectors, labels)
    rv.write(ms[:1])
    cases = [
        (NewMemory(np.ones(31, dtype=np.float32), {}), "wrong dimension: expected 32, got 31"),
        (NewMemory(np.full(32, np.nan, dtype=np.float32), {}), "NaN"),
        (NewMemory(np.full(32, np.inf, dtype=np.float32), {}), "infinite"),
        (NewMemory(np.zeros(32, dtype=np.float32), {}), "zero vector"),
        (NewMemory(vectors[1], {"text": "  "}), "empty text"),
        (NewMemory(vectors[1], {}, id="not-a-uuid"), "neither an unsigned integer nor a UUID"),
        (NewMemory(vectors[1], {}, id=-4), "id -4 is neither an unsigned integer"),
        (NewMemory(vectors[1], {}, id=2**64), "neither an unsigned integer"),
        (NewMemory(vectors[1], {"_reverie": {}}), "reserved"),
    ]
    for bad, message in cases:
        with pytest.raises(InvalidInputError, match=message):
            rv.write([ms[1], bad])
        assert rv.store.count(rv.collection) == 1
    with pytest.raises(InvalidInputError, match="not a partition key"):
        rv.partition_payload({"team": "x"})


@pytest.mark.parametrize("threshold", [0.0, -0.5, 1.5])
def test_threshold_outside_cosine_range_is_refused(rv: Reverie, threshold: float) -> None:
    vectors, labels = near_duplicates(groups=1, per_group=2)
    rv.write(memories(vectors, labels))
    with pytest.raises(InvalidInputError, match="not a cosine similarity"):
        rv.consolidate(threshold=threshold)
    assert rv.stats()["fresh"] == 2 and rv.run_log.runs() == []


def test_a_stop_ends_the_run_at_a_merge_boundary_and_the_next_run_finishes(rv: Reverie) -> None:
    vectors, labels = near_duplicates(groups=4, per_group=3)
    rv.write(memories(vectors, labels))
    real_apply = rv.consolidator.applier.apply

    def apply_then_signal(*args, **kwargs):  # SIGTERM arrives while the first batch applies
        outcomes = real_apply(*args, **kwargs)
        rv.consolidator.stopping.set()
        return outcomes

    rv.consolidator.applier.apply = apply_then_signal
    rv.settings.consolidation.apply_batch = 1
    report = rv.consolidate()
    assert report.stopped and len(report.merges) == 1
    assert rv.run_log.get_run(report.run_id).status == "stopped"
    check_invariants(rv, set(range(12)))
    assert rv.stats()["fresh"] == 9, "points of unapplied merges stay fresh for the next run"
    rv.consolidator.applier.apply = real_apply
    rv.consolidator.stopping.clear()
    assert len(rv.consolidate().merges) == 3
    check_invariants(rv, set(range(12)))


def test_concurrent_first_writes_create_the_collections_once(rv: Reverie) -> None:
    vectors, labels = near_duplicates(groups=8, per_group=4)
    errors = errors_in_threads(lambda part: rv.write(memories(vectors, labels)[part::8]), 8)
    assert errors == [] and rv.stats()["live"] == 32  # the API answered 503 for what failed


def test_a_partition_over_the_exact_limit_is_paired_by_cells_with_the_same_result(rv: Reverie) -> None:
    rv.settings.consolidation.exact_limit = 20
    rv.settings.consolidation.cell_size = 16
    vectors, labels = near_duplicates(groups=40, per_group=3)
    rv.write(memories(vectors, labels))
    report = rv.consolidate(full=True)
    assert report.cell_partitions == 1
    assert live_clusters(rv) == [[3 * g, 3 * g + 1, 3 * g + 2] for g in range(40)]
    check_invariants(rv, set(range(120)))


def test_writers_and_consolidation_at_once_lose_nothing(rv: Reverie) -> None:
    """Agents keep writing while consolidation runs back to back, as in a daemon (API
    threads and the scheduler share one store). qdrant-client's local mode raised
    IndexError from inside its arrays here until its calls were serialised."""
    import threading

    vectors, labels = near_duplicates(groups=40, per_group=6, seed=9)
    batches = [memories(vectors, labels)[i::20] for i in range(20)]
    errors: list[Exception] = []
    writing = threading.Event()
    writing.set()

    def write(part: list) -> None:
        try:
            for start in range(0, len(part), 3):
                rv.write(part[start : start + 3])
        except Exception as exc:
            errors.append(exc)

    def consolidate() -> None:
        while writing.is_set():
            try:
                rv.consolidate()
            except Exception as exc:
                errors.append(exc)
                return

    consolidator = threading.Thread(target=consolidate)
    rv.write(batches[0][:1])  # the collection exists before the consolidator starts
    consolidator.start()
    writers = [threading.Thread(target=write, args=(b if i else b[1:],)) for i, b in enumerate(batches)]
    for t in writers:
        t.start()
    for t in writers:
        t.join()
    writing.clear()
    consolidator.join()
    assert errors == []
    rv.consolidate()
    check_invariants(rv, set(range(240)))
    assert rv.stats()["live"] == 40
