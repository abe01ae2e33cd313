"""The library's one entry: one store, one collection with its archive, and the run log.

from reverie.config import load_settings
from reverie.memory import Reverie

with Reverie.open(load_settings()) as rv:
    rv.remember(["the user prefers tea"], partition={"user_id": "u1"})
    report = rv.consolidate()

Each method says what it does and hands the work to the package that owns it: writes are
checked by storage/intake.py, merges decided by consolidation/ and recorded by ledger/,
strength and forgetting decided by lifecycle/, text read back by inversion/.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING, Any, get_args

import numpy as np
import structlog
from tqdm import tqdm

from reverie.config import Settings
from reverie.config.settings import Ranking
from reverie.consolidation.engine import Consolidator, RunReport
from reverie.errors import (
    ConflictError,
    InvalidInputError,
    NotFoundError,
    reason,
)
from reverie.inversion.embedders import Embedder, embedder_id
from reverie.inversion.lazy import (
    LazyInversion,
    MemoryText,
    cached_text,
    text_counts,
)
from reverie.ledger.archive_retention import dropped_hint, prune_history
from reverie.ledger.blends import save_blend
from reverie.ledger.census import census
from reverie.ledger.dormancy import Dormancy
from reverie.ledger.invariants import find_problems
from reverie.ledger.lineage import original_ids
from reverie.ledger.reconcile import recover
from reverie.ledger.release import Release, release
from reverie.ledger.runs import RunLog, new_run_id
from reverie.ledger.undo import UndoReport, undo, undo_forget
from reverie.ledger.vanished import MERGED_INTO, honour_agent_deletes
from reverie.lifecycle.accesses import AccessLog
from reverie.lifecycle.forgetting import ForgetReport, Forgetter
from reverie.lifecycle.ranking import rank_by_memory
from reverie.lifecycle.strength import StrengthGauge

if TYPE_CHECKING:
    from reverie.inversion.blending import Blend, Parent
    from reverie.inversion.inverter import Inverter
from reverie.storage import (
    Filter,
    Hit,
    Match,
    PointId,
    QueryRequest,
    Record,
    Store,
    archive_name,
    intake,
    open_store,
)
from reverie.storage import payload as p
from reverie.storage.base import normalize_id, parse_point_id
from reverie.storage.detection import CollectionLayout
from reverie.storage.intake import NewMemory
from reverie.storage.layouts import Layout, PayloadError

WRITE_BATCH = 256
RANKINGS: tuple[str, ...] = get_args(Ranking)

log = structlog.get_logger("reverie.memory")

__all__ = ["NewMemory", "Reverie"]


class Reverie:
    """Memories in one collection: write, read, merge, fade, undo, and read merged ones back."""

    def __init__(
        self,
        settings: Settings,
        store: Store,
        embedder: Embedder | None = None,
        inverter: Inverter | None = None,
    ) -> None:
        """`embedder` and `inverter`: models already loaded (else loaded on first use, from
        the settings)."""
        self.settings = settings
        self.collection = settings.storage.collection
        self.archive = archive_name(self.collection)
        self._embedder = embedder
        self._ensured_size: int | None = None
        self._ensuring = threading.Lock()
        self.run_log = RunLog(settings.storage.data_dir / "runs.sqlite")
        self.accesses = AccessLog(settings.memory)
        self.layouts = CollectionLayout.of(store, settings)
        self.store = self.layouts.bound(store)
        self.strength = StrengthGauge(self.store, self.collection, settings.memory)
        self.consolidator = Consolidator(
            self.store,
            self.collection,
            self.archive,
            settings.consolidation,
            self.run_log,
            self.layouts,
            room=self._room_for_run,
        )
        self.dormancy = Dormancy(self.consolidator.applier, self.run_log)
        self.forgetter = Forgetter(self.dormancy, settings.memory, settings.forget)
        self._inverter = inverter
        self._loading = threading.Lock()
        # "not loaded", "loading", "loaded: ID", "off" (inversion.model "none"), "failed: why"
        self.inverter_status = "not loaded" if inverter is None else f"loaded: {inverter.id}"
        self.inversion = LazyInversion(
            self.store,
            self.collection,
            self.archive,
            settings.inversion,
            self.layouts,
            self.inverter,
            lambda: self.inverter_status,
        )

    @classmethod
    def open(
        cls, settings: Settings, embedder: Embedder | None = None, inverter: Inverter | None = None
    ) -> Reverie:
        return cls(settings, open_store(settings.storage), embedder, inverter)

    def __enter__(self) -> Reverie:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self.flush_accesses()
        self.store.close()
        self.run_log.close()

    @property
    def embedder(self) -> Embedder:
        if self._embedder is None:
            e = self.settings.embedder
            self._embedder = Embedder(e.model, e.device, e.batch_size)
        return self._embedder

    def inverter(self) -> Inverter | None:
        """The configured inverter, loaded on first use; None when inversion is off or the
        model cannot load (then merged memories show their labels, and `inverter_status`
        says why)."""
        i = self.settings.inversion
        with self._loading:
            if self._inverter is None and self.inverter_status == "not loaded":
                from reverie.inversion.inverter import configured_inverter

                self.inverter_status = "loading"
                try:
                    self._inverter = configured_inverter(i, self.embedder)
                except Exception as exc:  # whatever stops it loading: labels, and the reason
                    self.inverter_status = f"failed: {reason(exc)}"
                    log.error("inverter.failed", model=i.model, error=reason(exc), fallback="labels")
                    return None
                self.inverter_status = "off" if self._inverter is None else f"loaded: {self._inverter.id}"
        return self._inverter

    def text(self, record: Record) -> MemoryText:
        """A memory's text; a merged point's is inverted on first read and cached."""
        return self.inversion.text(record)

    @property
    def layout(self) -> Layout:
        """The collection's layout (configured, or read off the collection), bound to the store."""
        return self.layouts.get()

    @property
    def exists(self) -> bool:
        return self.store.collection_exists(self.collection)

    def ensure_collections(self, vector_size: int) -> None:
        """Both collections and the payload indexes, once per instance: every write calls
        this, and against a server each step is a round trip."""
        if self._ensured_size == vector_size:
            return
        with self._ensuring:  # concurrent first writes (API threads) create them once
            if self._ensured_size == vector_size:
                return
            # an agent's tool may have made the collection: the archive mirrors its vectors
            schema = self.store.schema(self.collection) or self.layouts.new_schema(vector_size)
            self.store.ensure_collection(self.collection, schema)
            self.store.ensure_collection(self.archive, schema, on_disk=True)
            for key in (f"{p.KEY}.state", f"{p.KEY}.kind"):
                self.store.create_payload_index(self.collection, key)
            for key in self.layout.tenant_keys:  # each tenant's points stored together
                self.store.create_payload_index(self.collection, key, tenant=True)
            # the archive is found by state (dormant copies, at every run's recovery) and by
            # merge (the originals under one): without indexes each is a scan of all of it
            for key in (f"{p.KEY}.state", MERGED_INTO):
                self.store.create_payload_index(self.archive, key)
            self._ensured_size = vector_size

    # -- writing ------------------------------------------------------------------------
    def remember(
        self,
        texts: Sequence[str],
        partition: dict[str, Any] | None = None,
        payload: dict[str, Any] | None = None,
        progress: bool = False,
    ) -> list[PointId]:
        """Embed and store texts as fresh memories; returns their new ids."""
        if not texts:
            raise InvalidInputError("no text to remember")
        for index, text in enumerate(texts):
            self.check_text(text, f"memory {index}")
        vectors = self.embedder.encode(list(texts), progress=progress)
        tenant = self.partition_payload(partition)
        model = embedder_id(self.settings.embedder.model)
        memories = [
            NewMemory(vector, self.new_payload(text, payload or {}, tenant), embedder=model)
            for text, vector in zip(texts, vectors, strict=True)
        ]
        return self.write(memories, progress=progress)

    def new_payload(
        self, text: str | None, metadata: dict[str, Any], tenant: dict[str, Any]
    ) -> dict[str, Any]:
        """A memory's payload in the collection's layout (LangChain's page_content and
        metadata, mem0's data and hash, ...), so the agents' own tools read it too."""
        try:
            return self.layout.new_payload(text, metadata, tenant)
        except PayloadError as exc:
            raise InvalidInputError(f"payload: {exc}") from None

    def write(self, memories: Sequence[NewMemory], progress: bool = False) -> list[PointId]:
        """Check every memory first (storage/intake.py), then write in batches: all or nothing
        is checked. A consolidation run meanwhile gives way (consolidation/pacing.py)."""
        with self.consolidator.writes_first.writing():
            return self._write(memories, progress)

    def _write(self, memories: Sequence[NewMemory], progress: bool) -> list[PointId]:
        if not memories:
            raise InvalidInputError("no memories to write")
        layout = self.layout  # an agent's first write may have just given the collection its layout
        dimension = self.store.vector_size(self.collection) or int(memories[0].vector.size)
        vectors = intake.checked_vectors(memories, dimension)
        intake.check_sparse_names(self.store.schema(self.collection), layout, memories)
        created_at, limits = p.now(), self.settings.daemon
        ids = intake.new_ids(len(memories))  # for those that name none
        records = [
            intake.new_record(i, m, v, layout, created_at, limits, new_id)
            for i, (m, v, new_id) in enumerate(zip(memories, vectors, ids, strict=True))
        ]
        self._check_writable(needed=intake.bytes_to_write(records))
        self.ensure_collections(dimension)
        named = [r.id for r, m in zip(records, memories, strict=True) if m.id is not None]
        if not named:  # new ids: no merge can hold them, so no need to wait for one
            self._upsert(records, progress)
            return [r.id for r in records]
        # under the merge lock: a memory rewritten between a merge's check and its delete
        # would be deleted with the old version
        with self.consolidator.applier.lock:
            self._make_way(named)
            self._upsert(records, progress)
        return [r.id for r in records]

    def _upsert(self, records: list[Record], progress: bool) -> None:
        with _progress(len(records), "writing", progress) as bar:
            for start in range(0, len(records), WRITE_BATCH):
                batch = records[start : start + WRITE_BATCH]
                self.store.upsert(self.collection, batch)
                bar.update(len(batch))

    def check_text(self, text: str | None, what: str) -> None:
        intake.check_text(text, what, self.settings.daemon)

    def _check_writable(self, needed: int) -> None:
        intake.check_writable(self.store, self.settings.storage, needed)

    def _room_for_run(self, points: int) -> None:
        """Before a run considers `points` points (a slice, or the fresh ones and their
        neighbours): it stamps them and writes merged points and archive copies before it
        deletes anything, so room for two copies of each."""
        dimension: int = self.store.vector_size(self.collection)  # type: ignore[assignment]
        self._check_writable(needed=2 * points * (4 * dimension + 1024))

    def _make_way(self, ids: list[PointId]) -> None:
        """Before memories are rewritten: one merged away is brought back (the merges above
        it undone, release.py), so its new version replaces the old one everywhere instead
        of sitting beside it in a merged point. A merged point is reverie's: not rewritable."""
        existing = self.store.retrieve(self.collection, ids, with_vectors=False)
        existing += self.store.retrieve(self.archive, ids, with_vectors=False)
        merged = [r.id for r in existing if p.meta(r.payload).get("kind") == p.MERGED]
        if merged:
            raise ConflictError(
                f"memory {merged[0]} is a merged point reverie made and cannot be written over; "
                "write a new memory, or delete this one (it takes its originals with it)"
            )
        release(self.consolidator.applier, self.run_log, ids, reason="rewritten")

    def forget(self, ids: Sequence[PointId | str]) -> Release:
        """Delete memories for good, wherever they are. A live original is deleted; one
        merged away is brought back first (the merges above it undone, the rest of their
        members fresh, to be merged again without it); a merged point is dissolved down to
        its originals, and they are all deleted. Unknown ids: nothing is deleted."""
        if not ids:
            raise InvalidInputError("no memory ids to forget")
        wanted = [self._parse_id(i) for i in ids]
        with self.consolidator.applier.lock:
            known = {
                str(r.id) for name in (self.collection, self.archive) for r in self._retrieve(name, wanted)
            }
            unknown = [i for i in wanted if str(i) not in known]
            if unknown:
                hint = dropped_hint(self.settings.archive)
                raise NotFoundError(f"unknown memory id: {unknown[0]!r} (nothing was deleted){hint}")
            released = release(self.consolidator.applier, self.run_log, wanted, "deleted", dissolve=True)
            self.store.delete(self.collection, released.ids)
        log.info("memory.forgotten", asked=len(wanted), deleted=len(released.ids), run_id=released.run_id)
        return released

    def partition_payload(self, partition: dict[str, Any] | None) -> dict[str, Any]:
        """Tenant values by their payload path (`user_id` is `metadata.user_id` where the
        layout keeps metadata in an object); an unknown key is an error naming the keys."""
        layout = self.layout
        paths: dict[str, Any] = {}
        for key, value in (partition or {}).items():
            try:
                paths[layout.tenant_path(key)] = value
            except KeyError:
                keys = ", ".join(layout.tenant_keys) or "none"
                raise InvalidInputError(f"{key!r} is not a partition key (configured: {keys})") from None
        return paths

    # -- reading ------------------------------------------------------------------------
    def recall(
        self,
        query: str | np.ndarray,
        k: int = 5,
        partition: dict[str, Any] | None = None,
        rank: str | None = None,
    ) -> list[Hit]:
        """The k memories closest to the query; `rank` "memory" (default: `recall.rank`)
        re-ranks the nearest by relevance, recency and importance (lifecycle/ranking.py).
        Every hit counts as an access."""
        if k < 1:
            raise InvalidInputError("k must be at least 1")
        rank = rank or self.settings.recall.rank
        if rank not in RANKINGS:
            raise InvalidInputError(f"unknown rank {rank!r}: one of {', '.join(RANKINGS)}")
        if not self.exists:
            return []
        conditions = tuple(Match(k_, v) for k_, v in self.partition_payload(partition).items())
        if isinstance(query, str):
            self.check_text(query, "query")
        vector = self.embedder.encode([query])[0] if isinstance(query, str) else query
        vector = np.asarray(vector, dtype=np.float32).reshape(-1)
        problem = p.vector_problem(vector, self.store.vector_size(self.collection))
        if problem:
            raise InvalidInputError(f"query vector: {problem}")
        wanted = k * self.settings.recall.candidates if rank == "memory" else k
        request = QueryRequest(vector, wanted, filter=p.searchable_filter(Filter(must=conditions)))
        hits = self.store.query(self.collection, request)
        if rank == "memory":
            hits = rank_by_memory(hits, k, self.settings.recall, self.settings.memory, p.utcnow())
        self.used([h.id for h in hits])
        return hits

    def used(self, ids: Sequence[PointId]) -> None:
        """Count an access to each; the counts are written together once
        `memory.flush_accesses` seconds have passed since the last write."""
        self.accesses.record(ids)
        if self.accesses.due:
            self.flush_accesses()

    def flush_accesses(self) -> int:
        """Write the buffered accesses now (the scheduler, a run, and close do); returns
        the points written."""
        return self.accesses.flush(self.store, self.collection, self.consolidator.applier.lock)

    def get(self, point_id: str | int) -> tuple[Record, bool]:
        """A memory by id (an int, or text as typed: digits or a UUID) and whether it is
        archived (retired into a merged point). A dormant memory read directly comes back
        to life: the read is an access."""
        pid = self._parse_id(point_id)
        if self.exists:
            for name, archived in ((self.collection, False), (self.archive, True)):
                found = self.store.retrieve(name, [pid])
                if found and p.state(found[0].payload) == p.DORMANT:
                    return self.forgetter.revive(pid), False
                if found:
                    if not archived:
                        self.used([pid])
                    return found[0], archived
        raise NotFoundError(f"unknown memory id: {point_id!r}{dropped_hint(self.settings.archive)}")

    def _retrieve(self, name: str, ids: list[PointId]) -> list[Record]:
        return self.store.retrieve(name, ids, with_vectors=False) if self.exists else []

    @staticmethod
    def _parse_id(point_id: PointId | str) -> PointId:
        """An id as given: an int, or text as typed (digits or a UUID)."""
        try:
            return parse_point_id(point_id) if isinstance(point_id, str) else normalize_id(point_id)
        except (TypeError, ValueError):
            raise NotFoundError(f"unknown memory id: {point_id!r}") from None

    # -- consolidation ------------------------------------------------------------------
    def consolidate(self, **options: Any) -> RunReport:
        if not self.exists:
            raise NotFoundError(
                f"collection {self.collection!r} is empty: write memories first "
                "(`reverie remember` or `reverie import`)"
            )
        # An agent may have created the collection with a plain Qdrant client: the
        # archive and the payload indexes are reverie's to add.
        self.ensure_collections(self.store.vector_size(self.collection))  # type: ignore[arg-type]
        self.consolidator.check_tenants()
        # recovery and the access flush write before the run checks room for its first slice
        self._check_writable(needed=0)
        self.recover()
        self.flush_accesses()  # merged points inherit their members' use as written
        return self.consolidator.run(**options)

    def recover(self) -> dict[str, int]:
        """Settle whatever a crash left in flight (forgets, merges, undos), then bring the
        run log in line with the store: before any run, and when `reverie serve` starts."""
        return recover(self.consolidator.applier, self.dormancy, self.run_log)

    def honour_agent_deletes(self) -> dict[str, int]:
        """Merged points an agent's own tool deleted take their originals with them
        (ledger/vanished.py): maintenance and `reverie serve`'s start run this."""
        return honour_agent_deletes(self.consolidator.applier, self.run_log)

    def undo(self, target: str) -> UndoReport:
        if self.exists:
            self.recover()
        if target.startswith("r-") and self.run_log.get_run(target).kind == "forget":
            return undo_forget(self.dormancy, target)
        return undo(self.consolidator.applier, self.run_log, target)

    def prune_history(self) -> dict[str, Any]:
        """Bounded growth: old runs leave the run log, old originals the archive (maintenance)."""
        s = self.settings
        return prune_history(self.consolidator.applier, self.run_log, s.runs, s.archive)

    # -- fading and forgetting ------------------------------------------------------------
    def forget_faded(self, dry_run: bool = False) -> ForgetReport:
        """Memories faded below `forget.below` for `forget.after_days` go dormant (a run)."""
        if not self.exists:
            raise NotFoundError(f"collection {self.collection!r} is empty: nothing to forget")
        self.ensure_collections(self.store.vector_size(self.collection))  # type: ignore[arg-type]
        self.flush_accesses()  # what was used since the last flush is not faded
        if self.settings.forget.max_memories is not None and not dry_run:
            self.consolidate()  # a tenant over its cap merges first: fewer go dormant
        return self.forgetter.run(dry_run)

    def revive(self, point_id: PointId | str) -> Record:
        """A dormant memory back into the live collection (an access)."""
        pid = self._parse_id(point_id)
        if not self.exists:
            raise NotFoundError(f"unknown memory id: {point_id!r}")
        return self.forgetter.revive(pid)

    def invariant_problems(
        self, must_hold: Iterable[PointId] = (), may_hold: Iterable[PointId] | None = None
    ) -> list[str]:
        """Every broken store invariant, as a sentence (ledger/invariants.py);
        run recovery first. `must_hold`: originals that must be covered (acknowledged
        writes); `may_hold`: all that may be (every write attempted)."""
        return find_problems(self.store, self.collection, self.archive, self.run_log, must_hold, may_hold)

    def stats(self) -> dict[str, Any]:
        runs = self.run_log.runs(limit=1)
        last = runs[0] if runs else None
        return {
            "collection": self.collection,
            "embedder": self.embedder.status,
            "inverter": self.inverter_status,
            "layout": self.layout.describe() | {"absent_keys": self.layouts.absent_keys},
            **census(self.store, self.collection, self.archive),
            **text_counts(self.store, self.collection),
            "forget_runs": self.run_log.count("forget"),
            "accesses_flushed": self.accesses.flushed,
            "strength": self.strength.read() if self.exists else None,
            "last_run": None
            if last is None
            else {
                "run_id": last.run_id,
                "kind": last.kind,
                "status": last.status,
                "started_at": last.started_at,
            },
        }

    # -- blends --------------------------------------------------------------------------
    def blend(
        self,
        parents: Sequence[str],
        weights: Sequence[float] | None = None,
        save: bool = False,
        partition: dict[str, Any] | None = None,
    ) -> Blend:
        """The normalised weighted mean of the parents (memory ids or texts), read back as
        text: inverted with the parents' texts as candidates, or, without an inverter, the
        parent text closest to it (a label). `save` stores it as a memory of kind `blend`,
        its parents as lineage and the parents left as they are; `undo` removes it."""
        from reverie.inversion.blending import blend, read_back

        result = blend([self._parent(item) for item in parents], None if weights is None else list(weights))
        read_back(result, self.inverter())
        if save:
            payload = self.new_payload(result.text, {}, self.partition_payload(partition))
            self.ensure_collections(int(result.vector.size))
            model = embedder_id(self.settings.embedder.model)
            record = result.record(intake.new_id(), new_run_id(), payload, model)
            save_blend(self.consolidator.applier, self.run_log, record)
            result.saved_id, result.run_id = str(record.id), p.meta(record.payload)["run_id"]
        return result

    def _parent(self, item: str) -> Parent:
        """A memory when `item` is an id (digits or a UUID: it must exist), else a text."""
        from reverie.inversion.blending import Parent

        try:
            point_id = parse_point_id(item.strip())
        except (TypeError, ValueError):
            if not item.strip():
                raise InvalidInputError("a blend parent is empty: give a memory id or some text") from None
            self.check_text(item, "blend parent")
            return Parent(item, self.embedder.encode([item])[0], item)
        record, _ = self.get(point_id)
        if record.vector is None:
            raise InvalidInputError(f"memory {point_id} has no vector in use to blend")
        return Parent(item, record.vector, cached_text(record, self.layout).text, str(record.id))

    def lineage(self, record: Record) -> list[PointId]:
        """The original memories a point stands for: itself, or a merged point's lineage."""
        return original_ids(self.store, self.archive, record)

    def live_records(self) -> Iterable[Record]:
        return self.store.scroll(self.collection, p.searchable_filter(), with_vectors=True)


def _progress(total: int, desc: str, enabled: bool) -> tqdm:
    """A progress bar on a terminal, for writes long enough to wait for."""
    return tqdm(total=total, desc=desc, unit="mem", disable=not enabled or total < 2 * WRITE_BATCH)
