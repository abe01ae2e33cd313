"""Use remembered, strength and fading, ranking by memory: on the real engines."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pytest

from reverie.config import MemorySettings, RecallSettings, Settings
from reverie.display import run_detail_lines
from reverie.errors import InvalidInputError, NotFoundError
from reverie.inversion.embedders import Embedder
from reverie.ledger.usage import Use, inherited, use_of
from reverie.lifecycle.ranking import importance, rank_by_memory
from reverie.lifecycle.retention import reinforced, retention
from reverie.memory import NewMemory, Reverie
from reverie.storage import Hit, Record
from reverie.storage import payload as p

from conftest import make_store

T0 = datetime(2026, 1, 1, tzinfo=UTC)
MEMORY = MemorySettings(stability_days=2.0, spacing_hours=1.0, floor=0.05)


def test_retention_fades_with_time_and_never_below_the_floor() -> None:
    use = Use(count=0, last=T0, spaced=0)
    assert retention(use, T0, MEMORY) == 1.0
    assert retention(use, T0 + timedelta(days=2), MEMORY) == pytest.approx(np.exp(-1))
    assert retention(use, T0 + timedelta(days=365), MEMORY) == 0.05


def test_a_clock_that_goes_backwards_counts_as_no_time() -> None:
    use = Use(count=3, last=T0, spaced=1)
    assert retention(use, T0 - timedelta(days=30), MEMORY) == 1.0


def test_only_spaced_accesses_make_a_memory_more_stable() -> None:
    use = Use(count=1, last=T0, spaced=0)
    crammed = reinforced(use, 5, T0 + timedelta(minutes=1), MEMORY)
    assert (crammed.count, crammed.spaced) == (6, 0)
    spaced = reinforced(use, 1, T0 + timedelta(days=1), MEMORY)
    assert (spaced.count, spaced.spaced, spaced.last) == (2, 1, T0 + timedelta(days=1))
    later = T0 + timedelta(days=5)
    assert retention(spaced, later, MEMORY) > retention(crammed, later, MEMORY)


def test_use_is_read_from_the_payload_and_starts_when_written() -> None:
    payload = {p.KEY: {"created_at": T0.isoformat()}}
    assert use_of(payload) == Use(0, T0, 0)
    stored = {p.KEY: {"use": Use(4, T0, 2).as_payload()}}
    assert use_of(stored) == Use(4, T0, 2)
    garbage = {
        p.KEY: {"created_at": T0.isoformat(), "use": {"count": -3, "last": "yesterday", "spaced": True}}
    }
    assert use_of(garbage) == Use(0, T0, 0)


def test_a_merged_memory_inherits_its_members_history() -> None:
    members = [
        {p.KEY: {"use": Use(3, T0, 1).as_payload()}},
        {p.KEY: {"use": Use(2, T0 + timedelta(days=1), 0).as_payload()}},
    ]
    assert inherited(members) == Use(5, T0 + timedelta(days=1), 1)


@pytest.mark.parametrize(("given", "expected"), [(0.3, 0.3), (7, 0.7), (42, 1.0), (-1, 0.0), ("high", None)])
def test_importance_comes_from_the_writers_payload(given: object, expected: float | None) -> None:
    assert importance({"importance": given}) == expected
    assert importance({"metadata": {"importance": given}}) == expected


def _hit(point_id: int, score: float, use: Use, **payload: object) -> Hit:
    return Hit(point_id, None, {**payload, p.KEY: {"use": use.as_payload()}}, score=score)


def test_memory_ranking_lets_a_used_memory_outrank_a_closer_forgotten_one() -> None:
    now = T0 + timedelta(days=60)
    forgotten = _hit(1, 0.82, Use(0, T0, 0))
    used = _hit(2, 0.78, Use(20, now - timedelta(hours=1), 6))
    ranked = rank_by_memory([forgotten, used], 2, RecallSettings(rank="memory"), MEMORY, now)
    assert [h.id for h in ranked] == [2, 1]
    assert set(ranked[0].parts) >= {"relevance", "recency", "importance"}
    assert ranked[0].parts["relevance"] == 0.78
    only_relevance = RecallSettings(rank="memory", recency_weight=0, importance_weight=0)
    assert [h.id for h in rank_by_memory([forgotten, used], 2, only_relevance, MEMORY, now)] == [1, 2]


def test_the_writers_importance_wins_over_strength() -> None:
    now = T0 + timedelta(days=1)
    plain = _hit(1, 0.8, Use(0, T0, 0), importance=2)
    vital = _hit(2, 0.8, Use(0, T0, 0), importance=9)
    settings = RecallSettings(rank="memory", recency_weight=0)
    assert [h.id for h in rank_by_memory([plain, vital], 2, settings, MEMORY, now)] == [2, 1]


# -- through the library, on both engines --------------------------------------------------


@pytest.fixture
def memory(store_kind: str, tmp_path: Path, embedder: Embedder) -> Iterator[Reverie]:
    settings = Settings()
    settings.storage.data_dir = tmp_path / "data"
    settings.inversion.model = "none"
    settings.memory.flush_accesses = 3600.0  # flushed only when a test says so
    r = Reverie(settings, make_store(store_kind, tmp_path), embedder)
    yield r
    r.close()


def _use(rv: Reverie, point_id: object) -> dict[str, object] | None:
    record = rv.store.retrieve(rv.collection, [point_id], with_vectors=False)[0]
    return p.meta(record.payload).get("use")


def test_searches_are_counted_in_memory_and_written_in_one_flush(memory: Reverie) -> None:
    ids = memory.remember(["The user prefers tea over coffee.", "The office is in Lisbon."])
    for _ in range(3):
        assert memory.recall("what does the user drink", k=1)[0].id == ids[0]
    assert _use(memory, ids[0]) is None  # no store write per search
    assert memory.flush_accesses() == 1
    assert _use(memory, ids[0])["count"] == 3
    assert _use(memory, ids[1]) is None
    memory.get(ids[1])  # a direct read is an access too
    memory.flush_accesses()
    assert _use(memory, ids[1])["count"] == 1
    assert memory.accesses.flushed == 4


class CountingLock:
    """The merge lock, counting how often a flush takes it."""

    def __init__(self) -> None:
        self.lock, self.taken = threading.RLock(), 0

    def __enter__(self) -> None:
        self.lock.acquire()
        self.taken += 1

    def __exit__(self, *exc: object) -> None:
        self.lock.release()


def test_a_flush_of_many_points_takes_the_merge_lock_a_batch_at_a_time(memory: Reverie) -> None:
    """A write that names an id waits for one batch of a flush, not the whole of it."""
    from reverie.lifecycle.accesses import FLUSH_BATCH

    ids = memory.write(
        [
            NewMemory(v, {"n": i})
            for i, v in enumerate(np.random.default_rng(0).normal(size=(FLUSH_BATCH * 2 + 1, 16)))
        ]
    )
    memory.accesses.record(ids)
    lock = CountingLock()
    assert memory.accesses.flush(memory.store, memory.collection, lock) == len(ids)  # type: ignore[arg-type]
    assert lock.taken == 3
    assert all(_use(memory, i)["count"] == 1 for i in ids)


def test_stats_read_the_strength_of_memories_at_most_once_a_minute(
    memory: Reverie, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A /metrics scrape every few seconds must not read every payload each time."""
    memory.remember(["The user prefers tea.", "Rome is old."])
    first = memory.stats()["strength"]
    memory.remember(["Ice is cold."])
    assert memory.stats()["strength"] == first and first["memories"] == 2
    monkeypatch.setattr("reverie.lifecycle.strength.STRENGTH_MAX_AGE", 0.0)
    assert memory.stats()["strength"]["memories"] == 3


def test_closing_flushes_what_is_pending(store_kind: str, tmp_path: Path, embedder: Embedder) -> None:
    settings = Settings()
    settings.storage.data_dir = tmp_path / "data"
    settings.inversion.model = "none"
    settings.memory.flush_accesses = 3600.0
    first = Reverie(settings, make_store(store_kind, tmp_path), embedder)
    ids = first.remember(["The user's dog is called Rex."])
    first.recall("dog's name", k=1)
    if store_kind == "edge":  # an in-memory client store does not outlive its process
        first.close()
        again = Reverie(settings, make_store(store_kind, tmp_path), embedder)
        assert _use(again, ids[0])["count"] == 1
        again.close()
    else:
        first.flush_accesses()
        assert _use(first, ids[0])["count"] == 1
        first.close()


def test_an_agent_written_point_gets_its_use_recorded(memory: Reverie, embedder: Embedder) -> None:
    vector = embedder.encode(["The meeting moved to Thursday."])[0]
    memory.ensure_collections(vector.size)
    memory.store.upsert(memory.collection, [Record(7, vector, {"text": "The meeting moved to Thursday."})])
    assert memory.recall("when is the meeting", k=1)[0].id == 7
    memory.flush_accesses()
    record = memory.store.retrieve(memory.collection, [7], with_vectors=False)[0]
    assert record.payload["text"] == "The meeting moved to Thursday."
    assert p.meta(record.payload)["use"]["count"] == 1


def test_merged_points_inherit_their_members_use(memory: Reverie) -> None:
    ids = memory.remember(["The user prefers tea over coffee.", "The user likes tea more than coffee."])
    memory.recall("The user prefers tea over coffee.", k=2)
    memory.get(ids[0])
    report = memory.consolidate(full=True)  # flushes first: nothing of the history is lost
    assert len(report.merges) == 1
    merged = memory.recall("tea or coffee", k=1)[0]
    assert p.meta(merged.payload)["kind"] == p.MERGED
    assert p.meta(merged.payload)["use"]["count"] == 3


def test_recall_by_memory_reports_each_part_of_the_score(memory: Reverie) -> None:
    memory.remember(["The user prefers tea over coffee.", "The user drinks water at night."])
    hits = memory.recall("what does the user drink", k=2, rank="memory")
    assert len(hits) == 2
    assert all(set(h.parts) >= {"relevance", "recency", "importance"} for h in hits)
    plain = memory.recall("what does the user drink", k=2)
    assert all(not h.parts for h in plain)
    with pytest.raises(Exception, match="rank"):
        memory.recall("tea", rank="popularity")


def test_the_api_ranks_by_memory_on_request_and_names_a_bad_rank(tmp_path: Path, embedder: Embedder) -> None:
    from reverie.daemon.api import create_app
    from reverie.daemon.service import Service

    from helpers import running

    settings = Settings()
    settings.storage.data_dir = tmp_path / "data"
    settings.inversion.model = "none"
    settings.memory.flush_accesses = 0.001  # every access writes what came before it
    with Reverie.open(settings, embedder) as rv, running(create_app(Service(rv))) as api:
        api.post(
            "/memories", json={"memories": [{"text": "The user prefers tea."}, {"text": "Rome is old."}]}
        )
        hits = api.post("/search", json={"text": "tea", "k": 2, "rank": "memory"}).json()["hits"]
        assert len(hits) == 2 and {"relevance", "recency", "importance"} <= set(hits[0]["score_parts"])
        assert "score_parts" not in api.post("/search", json={"text": "tea", "k": 1}).json()["hits"][0]
        refused = api.post("/search", json={"text": "tea", "rank": "popularity"})
        assert refused.status_code == 422 and "rank" in refused.text
        metrics = api.get("/metrics").text
        assert 'reverie_strength_memories{upper="1.0"} 2.0' in metrics  # both just written
        assert "reverie_accesses_flushed 3.0" in metrics  # each search flushed the one before


def test_the_cli_shows_the_parts_of_a_memory_score_and_a_memorys_use(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], embedder: Embedder
) -> None:
    from reverie.cli import main

    def cli(*args: str) -> str:
        assert main(["--data-dir", str(tmp_path / "data"), *args]) == 0
        return capsys.readouterr().out

    cli("remember", "The user prefers tea over coffee.")
    out = cli("recall", "what does the user drink", "--rank", "memory")
    assert "relevance" in out and "recency" in out and "importance" in out
    point_id = json.loads(cli("recall", "tea", "--json"))[0]["id"]
    assert "use       2 accesses" in cli("show", str(point_id))  # both searches, flushed on close


# -- forgetting that can be undone ---------------------------------------------------------

FADING = 0.000002  # days (0.17 s): memories fade within a test


@pytest.fixture
def fading(store_kind: str, tmp_path: Path, embedder: Embedder) -> Iterator[Reverie]:
    settings = Settings()
    settings.storage.data_dir = tmp_path / "data"
    settings.inversion.model = "none"
    settings.memory.stability_days = FADING
    settings.memory.spacing_hours = 0.0  # every access is spaced: each one doubles, triples... S
    settings.forget.after_days = FADING
    r = Reverie(settings, make_store(store_kind, tmp_path), embedder)
    yield r
    r.close()


def _live_ids(rv: Reverie) -> set[str]:
    return {str(r.id) for r in rv.live_records()}


def test_faded_memories_go_dormant_and_come_back(fading: Reverie) -> None:
    used, idle, pinned = fading.remember(["The user prefers tea.", "Rome is old.", "The door code is 4711."])
    fading.store.set_payload(fading.collection, [pinned], {"pinned": True})
    time.sleep(0.6)
    for _ in range(40):  # used again and again: S grows with every access
        fading.get(used)
    fading.flush_accesses()
    assert fading.forget_faded(dry_run=True).considered == 1 and len(_live_ids(fading)) == 3
    report = fading.forget_faded()
    assert [e["id"] for e in report.dormant] == [idle]
    assert _live_ids(fading) == {str(used), str(pinned)}
    assert all(h.id != idle for h in fading.recall("Rome", k=3))
    assert fading.stats()["dormant"] == 1
    assert fading.run_log.get_run(report.run_id).kind == "forget"
    from reverie.display import run_detail_lines

    shown = run_detail_lines(fading.run_log.get_run(report.run_id), fading.run_log.merges(report.run_id))
    assert any(f"[dormant] {idle}: retention" in line and "retention below" in line for line in shown)
    assert fading.invariant_problems(must_hold=[used, idle, pinned]) == []
    copy = fading.store.retrieve(fading.archive, [idle], with_vectors=False)[0]
    assert p.meta(copy.payload)["dormant"]["run_id"] == report.run_id
    assert "retention below" in p.meta(copy.payload)["dormant"]["reason"]
    fading.revive(idle)
    assert str(idle) in _live_ids(fading) and fading.stats()["dormant"] == 0
    assert fading.invariant_problems(must_hold=[used, idle, pinned]) == []
    with pytest.raises(InvalidInputError, match="is live, not dormant"):
        fading.revive(idle)
    with pytest.raises(NotFoundError, match="unknown memory id"):
        fading.revive("12345")


def test_a_forget_run_is_undone_like_any_run_and_a_read_revives(fading: Reverie) -> None:
    ids = fading.remember(["The user prefers tea.", "Rome is old.", "Ice is cold."])
    time.sleep(0.6)
    run = fading.forget_faded().run_id
    assert _live_ids(fading) == set()
    record, archived = fading.get(ids[0])  # a direct read brings it back, as an access
    assert not archived and p.state(record.payload) != p.DORMANT
    assert p.meta(record.payload)["use"]["count"] == 1
    undone = fading.undo(run)
    assert sorted(str(u["revived"]) for u in undone.undone) == sorted(str(i) for i in ids[1:])
    assert _live_ids(fading) == {str(i) for i in ids}
    assert fading.invariant_problems(must_hold=ids) == []
    with pytest.raises(InvalidInputError, match="no dormant memories left"):
        fading.undo(run)


def test_a_forget_run_scans_outside_the_merge_lock_and_spares_what_changed_meanwhile(
    fading: Reverie,
) -> None:
    """Writes that name ids wait for one batch of a forget run, not for its scan; a
    memory read or rewritten between the scan and its batch is no longer faded."""
    read, rewritten, idle = fading.remember(["The user prefers tea.", "Rome is old.", "Ice is cold."])
    time.sleep(0.6)
    free_during_scan = []
    scan, lock = fading.forgetter.due, fading.consolidator.applier.lock

    def api_worker() -> None:
        free_during_scan.append(lock.acquire(blocking=False))
        if free_during_scan[-1]:
            lock.release()

    def due_then_agents_act(at: datetime) -> dict:
        found = scan(at)
        worker = threading.Thread(target=api_worker)  # can another thread take the merge lock now?
        worker.start()
        worker.join()
        fading.get(read)  # an access...
        fading.flush_accesses()  # ...written to the payload
        vector = fading.embedder.encode(["Rome is very old."])[0]
        fading.write([NewMemory(vector, {"text": "Rome is very old."}, rewritten)])
        return found

    fading.forgetter.due = due_then_agents_act  # type: ignore[method-assign]
    report = fading.forget_faded()
    assert free_during_scan == [True]
    assert len(report.dormant) == 1 and str(report.dormant[0]["id"]) == str(idle)
    assert _live_ids(fading) == {str(read), str(rewritten)}
    assert fading.invariant_problems(must_hold=[read, rewritten, idle]) == []


def test_a_dormant_merged_memory_keeps_its_lineage(fading: Reverie) -> None:
    ids = fading.remember(["The user prefers tea over coffee.", "The user likes tea more than coffee."])
    merged = fading.consolidate(full=True).merges[0]["merge_id"]
    time.sleep(0.6)
    fading.forget_faded()
    assert _live_ids(fading) == set()
    assert fading.invariant_problems(must_hold=ids) == []
    with pytest.raises(InvalidInputError, match="is dormant"):
        fading.undo(merged)  # the merged point sleeps: revive it first
    fading.revive(merged)
    fading.undo(merged)
    assert _live_ids(fading) == {str(i) for i in ids}
    assert fading.invariant_problems(must_hold=ids) == []


def _everywhere(rv: Reverie, point_id: object) -> list[object]:
    """Where a memory still is: live, or in the archive (dormant or merged away)."""
    return [name for name in (rv.collection, rv.archive) if rv.store.retrieve(name, [point_id])]


def test_a_delete_reaches_a_dormant_memory_and_nothing_brings_it_back(fading: Reverie) -> None:
    """A user's delete: of a dormant memory, of an original whose merged point sleeps, of a
    sleeping merged point (with its originals). Each leaves nothing for revive or undo."""
    alone, tea, tea2, rome, rome2 = fading.remember(
        [
            "The door code is 4711.",
            "The user prefers tea over coffee.",
            "The user likes tea more than coffee.",
            "Rome is a very old city.",
            "Rome is a really old city.",
        ]
    )
    merges = {m["merge_id"] for m in fading.consolidate(full=True).merges}
    assert len(merges) == 2
    tea_merge, rome_merge = (p.meta(fading.get(i)[0].payload)["archived"]["merged_into"] for i in (tea, rome))
    time.sleep(0.6)
    run = fading.forget_faded().run_id
    assert _live_ids(fading) == set() and fading.stats()["dormant"] == 3
    fading.forget([alone])  # dormant itself
    fading.forget([tea])  # an original of a dormant merge
    fading.forget([rome_merge])  # a dormant merged point: its originals go with it
    for gone in (alone, tea, tea_merge, rome_merge, rome, rome2):
        assert _everywhere(fading, gone) == [], gone
    assert _live_ids(fading) == {str(tea2)}  # the other member of the released merge
    with pytest.raises(InvalidInputError, match="no dormant memories left"):
        fading.undo(run)
    with pytest.raises(NotFoundError):
        fading.revive(alone)
    assert fading.invariant_problems(must_hold=[tea2], may_hold=[tea2]) == []


@pytest.mark.parametrize("dormant_merge", [False, True])
def test_a_rewrite_reaches_a_dormant_memory(fading: Reverie, dormant_merge: bool) -> None:
    ids = fading.remember(["The user prefers tea over coffee.", "The user likes tea more than coffee."])
    if dormant_merge:
        fading.consolidate(full=True)
    time.sleep(0.6)
    fading.forget_faded()
    assert _live_ids(fading) == set()
    vector = fading.embedder.encode(["The user now prefers coffee."])[0]
    fading.write([NewMemory(vector, {"text": "The user now prefers coffee."}, ids[0])])
    record, archived = fading.get(ids[0])
    assert not archived and record.payload["text"] == "The user now prefers coffee."
    assert fading.stats()["dormant"] == (0 if dormant_merge else 1)
    assert fading.invariant_problems(must_hold=ids, may_hold=ids) == []


@pytest.mark.parametrize("id_kind", ["uuid", "int"])
def test_recovery_settles_a_forget_a_crash_interrupted(fading: Reverie, id_kind: str) -> None:
    """The steps of a forget, stopped where a crash could stop them, settled by the
    recovery a restart runs; forgetting works after it, for integer ids as for UUIDs (a
    str() of an integer id once made every later forget fail)."""
    forgetter = fading.forgetter
    texts = ["The user prefers tea.", "Rome is old.", "The door code is 4711."]
    if id_kind == "uuid":
        kept, gone, later = fading.remember(texts)
    else:
        vectors = fading.embedder.encode(texts)
        kept, gone, later = fading.write(
            [NewMemory(v, {"text": t}, 2305 + i) for i, (v, t) in enumerate(zip(vectors, texts, strict=True))]
        )
    fading.ensure_collections(384)
    fading.run_log.start("r-crashed", "forget", fading.collection, p.now())
    for point_id, deleted in ((kept, False), (gone, True)):
        record = fading.store.retrieve(fading.collection, [point_id])[0]
        detail = forgetter._detail(record, "crash test", datetime.now(UTC))
        fading.run_log.add_merges("r-crashed", [(str(point_id), "forgetting", detail)])
        fading.store.upsert(fading.archive, [fading.dormancy._dormant_copy(record, detail, "r-crashed")])
        if deleted:
            fading.store.delete(fading.collection, [point_id])
    assert "2 merges left forgetting in the run log" in fading.invariant_problems()
    assert fading.recover()["forgets_settled"] == 2  # what `reverie serve` runs as it starts
    status = {m.merge_id: m.status for m in fading.run_log.merges("r-crashed")}
    assert status == {str(kept): "void", str(gone): "dormant"}
    assert fading.run_log.get_run("r-crashed").status == "interrupted"
    assert _live_ids(fading) == {str(kept), str(later)}
    assert fading.stats()["dormant"] == 1
    assert fading.invariant_problems() == []
    time.sleep(0.6)
    assert {str(d["id"]) for d in fading.forget_faded().dormant} == {str(kept), str(later)}
    fading.revive(gone)
    assert _live_ids(fading) == {str(gone)}
    assert fading.invariant_problems() == []


# -- bounded growth ------------------------------------------------------------------------

TEA = ["The user prefers tea over coffee.", "The user likes tea more than coffee.", "Rome is old."]


def test_the_run_log_keeps_its_bounds_and_what_undo_still_needs(memory: Reverie) -> None:
    memory.settings.runs.keep_max = 1
    memory.remember(TEA)
    first = memory.consolidate(full=True)
    merge_id = first.merges[0]["merge_id"]
    memory.undo(first.run_id)
    again = memory.consolidate(full=True)
    assert again.merges[0]["merge_id"] == merge_id
    pruned = memory.prune_history()["run_log"]
    assert pruned["runs"] == 2  # the first run (its merge undone) and the undo
    assert [r.run_id for r in memory.run_log.runs()] == [again.run_id]
    assert memory.invariant_problems() == []
    memory.undo(merge_id)  # what undo needs was kept
    assert memory.stats()["merged"] == 0


def test_runs_keep_max_is_a_bound_that_keeps_what_undo_and_revive_need(fading: Reverie) -> None:
    """Every run holding an applied merge was once kept, so the bound did not hold (139
    runs under keep_max = 20). Pruned runs now leave only the rows undo and revive read."""
    fading.settings.runs.keep_max = 2
    runs = []
    pairs = [
        ("The user prefers tea over coffee.", "The user likes tea more than coffee."),
        ("The office is in Lisbon.", "Our office is located in Lisbon."),
        ("The dog is called Rex.", "The dog's name is Rex."),
        ("The deploy key is in the vault.", "The deploy key lives in the vault."),
    ]
    for pair in pairs:
        fading.remember(list(pair))
        runs.append(fading.consolidate())
    (merge_id,) = [m["merge_id"] for m in runs[0].merges]
    time.sleep(0.6)
    forget_run = fading.forget_faded().run_id
    dormant = fading.stats()["dormant"]
    fading.revive(merge_id)  # awake again; its run is still needed for undo
    blend = fading.blend(["tea", "coffee"], save=True)
    fading.prune_history()
    kept = [r.run_id for r in fading.run_log.runs(limit=100)]
    assert len(kept) == 2 and kept[0] == blend.run_id
    assert fading.run_log.get_run(runs[0].run_id).status == "pruned"
    assert "pruned" in "\n".join(
        run_detail_lines(fading.run_log.get_run(runs[0].run_id), fading.run_log.merges(runs[0].run_id))
    )
    assert fading.invariant_problems() == []
    fading.undo(runs[0].run_id)  # a pruned run's merges undo as before
    assert len(fading.undo(forget_run).undone) == dormant - 1  # and a pruned forget run's sleepers wake
    fading.undo(blend.run_id)
    fading.prune_history()
    assert fading.invariant_problems() == []
    with pytest.raises(NotFoundError, match="unknown run id"):  # nothing of it is needed any more
        fading.undo(runs[0].run_id)


def test_old_originals_leave_the_archive_and_their_undo_says_why(memory: Reverie) -> None:
    ids = memory.remember(TEA)
    merge_id = memory.consolidate(full=True).merges[0]["merge_id"]
    memory.settings.archive.keep_days = FADING
    time.sleep(0.3)
    assert memory.prune_history()["archive"] == {"merged": 1, "copies": 2}
    stats = memory.stats()
    assert (stats["archived"], stats["merged"], stats["live"]) == (0, 1, 2)
    assert memory.invariant_problems(must_hold=[ids[2]]) == []
    with pytest.raises(NotFoundError, match="merged more than archive.keep_days"):
        memory.get(ids[0])  # a read of a dropped original says where it may have gone
    assert memory.prune_history()["archive"] == {"merged": 0, "copies": 0}  # done once
    with pytest.raises(InvalidInputError, match="were dropped from the archive"):
        memory.undo(merge_id)
    merged, _ = memory.get(merge_id)
    assert p.meta(merged.payload)["weight"] == 2  # the lineage stays, as counts
    assert memory.forget([merge_id]).ids == [merge_id]  # deleting it needs no originals
    assert memory.stats()["live"] == 1


def test_the_archive_stays_bounded_when_a_concept_is_merged_again_and_again(memory: Reverie) -> None:
    """Merging a merged point again keeps the top merge young: its old layers were kept for
    ever (the archive grew from 317 to 7,088 copies in 4 minutes with 43 s retention) and
    broke the invariants. Old layers drop now too; the young merge on top still undoes."""
    first, second = memory.remember(TEA[:2])
    old_merge = memory.consolidate().merges[0]["merge_id"]
    memory.settings.archive.keep_days = FADING
    time.sleep(0.3)
    (third,) = memory.remember(["Tea, not coffee, is what the user likes."])
    top = memory.consolidate().merges[0]["merge_id"]  # the old merge and the new memory
    assert memory.prune_history()["archive"] == {"merged": 1, "copies": 2}  # the old layer only
    assert not memory.store.retrieve(memory.archive, [first, second])
    assert memory.invariant_problems(must_hold=[third]) == []
    memory.undo(top)  # the young merge undoes: the old merged point comes back, as counts
    back, _ = memory.get(old_merge)
    assert p.weight(back.payload) == 2
    with pytest.raises(InvalidInputError, match="were dropped from the archive"):
        memory.undo(old_merge)
    assert memory.invariant_problems(must_hold=[third]) == []


def test_a_layer_deleted_below_an_old_layer_is_on_record_as_dropped(memory: Reverie) -> None:
    """Three layers, the two lower ones old: the merged copy deleted below the old middle
    layer is on record as `dropped`, not as applied and there (the bounded soak found
    "merges on record as applied but gone")."""
    memory.remember(TEA[:2])
    bottom = memory.consolidate().merges[0]["merge_id"]
    memory.remember(["Tea, not coffee, is what the user likes."])
    middle = memory.consolidate().merges[0]["merge_id"]
    memory.settings.archive.keep_days = FADING
    time.sleep(0.3)
    (last,) = memory.remember(["The user would rather drink tea than coffee."])
    top = memory.consolidate().merges[0]["merge_id"]
    memory.prune_history()
    assert not memory.store.retrieve(memory.archive, [bottom])
    statuses = {m.merge_id: m.status for r in memory.run_log.runs() for m in memory.run_log.merges(r.run_id)}
    assert (statuses[str(bottom)], statuses[str(middle)], statuses[str(top)]) == (
        "dropped",
        "applied",
        "applied",
    )
    assert memory.invariant_problems(must_hold=[last]) == []
    assert memory.get(top)[0].payload


def test_a_tenant_over_its_cap_consolidates_first_then_its_weakest_sleep(memory: Reverie) -> None:
    memory.settings.forget.max_memories = 2
    u1 = memory.remember([*TEA, "Lisbon is by the sea."], partition={"user_id": "u1"})
    u2 = memory.remember(["Rome is old.", "Ice is cold.", "Snow is white."], partition={"user_id": "u2"})
    memory.store.set_payload(memory.collection, [u2[2]], {"pinned": True})
    memory.get(u1[3])  # used: the strongest of u1's
    memory.get(u2[1])
    report = memory.forget_faded()
    gone = {str(e["id"]) for e in report.dormant}
    assert len(gone) == 2 and all("forget.max_memories = 2" in e["reason"] for e in report.dormant)
    assert str(u1[3]) not in gone and str(u2[1]) not in gone and str(u2[2]) not in gone
    assert str(u2[0]) in gone  # u2: the pinned one and the used one stay
    per_tenant = {"u1": 0, "u2": 0}
    for record in memory.live_records():
        per_tenant[record.payload["user_id"]] += 1
    assert per_tenant == {"u1": 2, "u2": 2}  # u1's two tea memories merged before any went
    assert memory.invariant_problems(must_hold=[*u1, *u2]) == []


def test_fade_and_revive_over_http(tmp_path: Path, embedder: Embedder) -> None:
    from reverie.daemon.api import create_app
    from reverie.daemon.service import Service

    from helpers import running

    settings = Settings()
    settings.storage.data_dir = tmp_path / "data"
    settings.inversion.model = "none"
    settings.memory.stability_days = FADING
    settings.forget.after_days = FADING
    with Reverie.open(settings, embedder) as rv, running(create_app(Service(rv))) as api:
        ids = api.post("/memories", json={"memories": [{"text": "Rome is old."}]}).json()["ids"]
        time.sleep(0.6)
        assert api.post("/fade", json={"dry_run": True}).json()["due"] == 1
        faded = api.post("/fade", json={}).json()
        assert [e["id"] for e in faded["dormant"]] == ids
        assert api.post("/search", json={"text": "Rome", "k": 1}).json()["hits"] == []
        assert api.get("/stats").json()["dormant"] == 1
        revived = api.post(f"/memories/{ids[0]}/revive")
        assert revived.status_code == 200 and revived.json()["text"] == "Rome is old."
        again = api.post(f"/memories/{ids[0]}/revive")
        assert again.status_code == 400 and "is live, not dormant" in again.json()["error"]
        assert api.get("/runs").json()["runs"][0]["kind"] == "forget"
        assert api.get("/stats").json()["forget_runs"] == 1
        assert "reverie_forget_runs 1.0" in api.get("/metrics").text


# -- gist over time ------------------------------------------------------------------------


@pytest.fixture
def later() -> Iterator[list[datetime]]:
    """The simulation clock (payload.set_clock), restored after the test."""
    clock = [datetime.now(UTC)]
    p.set_clock(lambda: clock[0])
    yield clock
    p.set_clock(None)


def test_old_unused_memories_merge_at_the_lower_age_threshold(
    store_kind: str, tmp_path: Path, later: list[datetime]
) -> None:
    from reverie.memory import NewMemory

    near = np.array([[1.0, 0.0, 0.0, 0.0], [0.76, np.sqrt(1 - 0.76**2), 0.0, 0.0]], dtype=np.float32)
    settings = Settings()
    settings.storage.data_dir = tmp_path / "data"
    settings.consolidation.age_threshold = 0.72
    settings.consolidation.min_member_similarity = 0.7
    with Reverie(settings, make_store(store_kind, tmp_path)) as rv:
        ids = rv.write([NewMemory(v, {"text": f"memory {i}"}) for i, v in enumerate(near)])
        assert rv.consolidate(full=True).merges == []  # fresh: 0.76 is below 0.80
        later[0] += timedelta(days=60)
        rv.get(ids[1])  # one of them was used: the pair goes by its fresher memory
        rv.flush_accesses()
        later[0] += timedelta(days=1)
        assert rv.consolidate(full=True).merges == []
        later[0] += timedelta(days=120)  # both unused for long: gist
        assert len(rv.consolidate(full=True).merges) == 1
        rv.settings.consolidation.age_threshold = None
        assert rv.invariant_problems(must_hold=ids) == []
