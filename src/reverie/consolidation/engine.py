"""One consolidation run, start to finish: adopt, gather, pair, cluster, plan, apply, record.

Incremental runs look only at fresh points and their nearest neighbours (Qdrant's index
does the search), so their cost follows the new work; full passes pair every point of
each partition by exact blocked products.
"""

from __future__ import annotations

import threading
import time
from collections import defaultdict
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field, fields
from typing import Any

import numpy as np
import structlog

from reverie.config import ConsolidationSettings
from reverie.consolidation.adoption import (
    Stamps,
    adopt,
    adoption_stamps,
    find_fresh,
    fresh_filter,
    mark_adopted,
)
from reverie.consolidation.candidates import cell_pairs, exact_pairs
from reverie.consolidation.clustering import ClusterParams, cluster
from reverie.consolidation.gathering import Gathered
from reverie.consolidation.geometry import Geometry
from reverie.consolidation.labels import labelled_merges
from reverie.consolidation.pacing import WritesFirst
from reverie.consolidation.planning import MergePlan, plan_merges
from reverie.consolidation.replica import Replica
from reverie.consolidation.slicing import Slice, SlicePlan, tenant_slices, whole_collection
from reverie.errors import ConfigError, InvalidInputError, StorageFullError
from reverie.ledger.apply import MergeApplier, Outcome
from reverie.ledger.census import searchable_count
from reverie.ledger.release import release_rewritten
from reverie.ledger.runs import RunLog, new_run_id
from reverie.ledger.usage import DAY, use_of
from reverie.storage import Filter, PointId, QueryRequest, Record, Store
from reverie.storage import payload as p
from reverie.storage.detection import CollectionLayout
from reverie.storage.layouts import Layout, PayloadError

log = structlog.get_logger("reverie.consolidation")

QUERY_BATCH = 256
GATHER_PAGE = 2048  # points a page of a scroll: 512 took 12% longer per point (3x for fresh ones)
MERGES_KEPT = 10_000  # merge details a run report holds in memory


@dataclass
class RunReport:
    run_id: str
    mode: str
    dry_run: bool
    params: dict[str, Any]
    route: str = ""
    layout: dict[str, Any] = field(default_factory=dict)
    points_before: int = 0
    points_after: int = 0
    adopted: int = 0
    quarantined: int = 0
    considered: int = 0
    pairs: int = 0
    cell_partitions: int = 0  # partitions too large for exact pairs, paired by k-means cells
    slices: int = 0  # a full pass's slices of whole tenants (slicing.py)
    tenants_counted_by: str = ""  # how they were counted: "index" or "payloads" (slicing.py)
    merge_count: int = 0
    members_merged: int = 0  # memories that went into merges
    # the first MERGES_KEPT merges' details (a pass over millions makes hundreds of thousands:
    # all of them are in the run log, `reverie runs show RUN`)
    merges: list[dict[str, Any]] = field(default_factory=list)
    skipped: list[dict[str, Any]] = field(default_factory=list)
    timings: dict[str, float] = field(default_factory=dict)
    paused: float = 0.0  # seconds the run gave to writes (pacing.py), inside its stages' timings
    stopped: bool = False

    def add_merge(self, detail: dict[str, Any]) -> None:
        self.merge_count += 1
        self.members_merged += detail["size"]
        if len(self.merges) < MERGES_KEPT:
            self.merges.append(detail)

    def summary(self) -> dict[str, Any]:
        data = {f.name: getattr(self, f.name) for f in fields(self)}  # merges: counted, not copied
        data["params"], data["timings"] = dict(self.params), dict(self.timings)
        data["merges"] = data.pop("merge_count")
        data["skipped"] = len(self.skipped)
        return data


class Consolidator:
    def __init__(
        self,
        store: Store,
        collection: str,
        archive: str,
        settings: ConsolidationSettings,
        run_log: RunLog,
        layouts: CollectionLayout,
        room: Callable[[int], None] = lambda points: None,
    ) -> None:
        """`room(points)`: raises StorageFullError unless the disk has room for a run
        to consider that many points (checked before each slice, not for the whole pass:
        a pass over a store larger than the free space goes ahead while each slice fits)."""
        self.store = store
        self.collection = collection
        self.settings = settings
        self.run_log = run_log
        self.layouts = layouts
        self.room = room
        self.applier = MergeApplier(store, collection, archive, layouts)
        self.replica = Replica.parse(settings.replica)
        # Set by a shutdown: a run stops before its next merge (a safe point) and leaves
        # the rest for the next run.
        self.stopping = threading.Event()
        self.writes_first = WritesFirst(settings.share_while_writing, sleep=self.stopping.wait)

    def check_tenants(self) -> None:
        """Refuse to merge across what may be tenants: a collection in which no sampled
        point carries any partition key (a wrong path, or a store of one tenant: only the
        operator can say which). Memories written through reverie itself carry the tenant
        given per write: none given is the one default tenant."""
        layout = self.layouts.get()
        keys = layout.tenant_keys
        own = layout.name == "reverie" and self.layouts.written_by_reverie
        if own or not keys or self.settings.single_tenant:
            return
        if set(self.layouts.absent_keys) == set(keys):
            raise ConfigError(
                f"no memory in collection {self.collection!r} carries a partition key (looked for "
                f"{', '.join(keys)}): reverie cannot tell its tenants apart and merges nothing. Set "
                "consolidation.partition_keys to the key that separates them, or "
                "consolidation.single_tenant = true if the collection holds one tenant's memories"
            )

    def run(
        self,
        full: bool = False,
        dry_run: bool = False,
        algorithm: str | None = None,
        linkage: str | None = None,
        threshold: float | None = None,
    ) -> RunReport:
        s = self.settings
        threshold = s.threshold if threshold is None else threshold
        if not 0.0 < threshold <= 1.0:
            raise InvalidInputError(f"threshold {threshold} is not a cosine similarity in (0, 1]")
        params = ClusterParams(
            threshold=threshold,
            algorithm=algorithm or s.algorithm,  # type: ignore[arg-type]
            linkage=linkage or s.linkage,  # type: ignore[arg-type]
            max_cluster_size=s.max_cluster_size,
            min_member_similarity=min(s.min_member_similarity, threshold),
        )
        report = RunReport(
            run_id=new_run_id(),
            mode="full" if full else "incremental",
            dry_run=dry_run,
            params=asdict(params),
            layout=self.layouts.get().describe(),
        )
        with structlog.contextvars.bound_contextvars(run_id=report.run_id):
            log.info(
                "run.start",
                mode=report.mode,
                dry_run=dry_run,
                replica=s.replica,
                layout=report.layout["layout"],
                **report.params,
            )
            if not dry_run:
                self.run_log.start(report.run_id, "consolidate", self.collection, p.now())
            try:
                self._run(report, params, full, dry_run)
            except BaseException as exc:
                if not dry_run:
                    self.run_log.finish(report.run_id, "failed", p.now(), report.summary())
                log.error("run.failed", error=str(exc), **report.summary())
                raise
            if not dry_run:
                status = "stopped" if report.stopped else "done"
                self.run_log.finish(report.run_id, status, p.now(), report.summary())
            log.info("run.summary", **report.summary())
        return report

    def _run(self, report: RunReport, params: ClusterParams, full: bool, dry_run: bool) -> None:
        self.writes_first.restart()
        fresh_points = fresh_filter(self.store, self.collection)
        if not dry_run:
            release_rewritten(
                self.applier,
                self.run_log,
                fresh_points,
                self._owns,
                self._owner_keys(),
                self.writes_first.pace,
            )
        report.points_before = searchable_count(self.store, self.collection)
        # Neighbour queries pay off when little is new; when most points are new (a first
        # run, a bulk import), exact blocked products over everything are cheaper.
        fresh = self.store.count(self.collection, fresh_points)
        exact = full or 2 * fresh > report.points_before
        report.route = "exact" if exact else "neighbours"
        geometry = Geometry(self.store.distance(self.collection), self.collection)
        progress = _Progress("run.progress", total=report.points_before)
        plan = self._slices(report) if exact else None
        for piece in plan if plan is not None else [None]:
            self.writes_first.pace()
            if self.stopping.is_set():
                report.stopped = True
                log.warning("run.stopped", applied=report.merge_count)
                break
            if not dry_run:
                self._check_room(piece.points if piece else fresh, report)
            # everything gathered is dropped once planned: the apply stage holds only the plans
            plans, to_stamp = self._gather_and_plan(
                report, params, piece, plan, fresh_points, dry_run, geometry
            )
            consumed = self._apply_plans(plans, report, dry_run)
            if report.stopped:  # its fresh points stay fresh: the next run plans them again
                break
            if not dry_run:
                mark_adopted(
                    self.store, self.collection, to_stamp, consumed, self.writes_first.pace, GATHER_PAGE
                )
            progress.step(piece.points if piece else report.considered, merges=report.merge_count)
        if plan is not None and plan.strays:  # gathered in a slice of their own
            report.slices = len(plan)
        report.points_after = searchable_count(self.store, self.collection)
        report.paused = round(self.writes_first.paused, 2)
        if dry_run:
            report.points_after = report.points_before - report.members_merged + report.merge_count

    def _check_room(self, points: int, report: RunReport) -> None:
        try:
            self.room(points)
        except StorageFullError as exc:
            if report.merge_count:
                applied = f"the {report.merge_count} merges before it stay applied"
                raise StorageFullError(f"{exc}; {applied}") from exc
            raise

    def _slices(self, report: RunReport) -> SlicePlan:
        """A full pass's slices: whole tenants, up to `slice_points` points each (slicing.py)."""
        layout = self.layouts.get()
        if not layout.tenant_keys or self.settings.single_tenant:
            return SlicePlan([whole_collection(report.points_before)], frozenset(), "")
        with _timed(report.timings, "count"):
            budget = self.settings.slice_points
            plan = tenant_slices(self.store, self.collection, layout, self.replica.owns, budget)
        report.slices, report.tenants_counted_by = len(plan), plan.counted_by
        return plan

    def _apply_plans(self, plans: list[MergePlan], report: RunReport, dry_run: bool) -> set[PointId]:
        """Apply in batches, stopping between two when asked; the ids consumed."""
        consumed: set[PointId] = set()
        progress = _Progress("run.apply.progress", total=len(plans))
        with _timed(report.timings, "apply"):
            for start in range(0, len(plans), self.settings.apply_batch):
                self.writes_first.pace()
                if self.stopping.is_set():
                    report.stopped = True
                    log.warning("run.stopped", applied=report.merge_count, left=len(plans) - start)
                    break
                batch = plans[start : start + self.settings.apply_batch]
                consumed.update(self._apply(batch, report, dry_run))
                progress.step(len(batch), merges=report.merge_count)
        return consumed

    def _gather_and_plan(
        self,
        report: RunReport,
        params: ClusterParams,
        piece: Slice | None,
        plan: SlicePlan | None,
        fresh_points: Filter,
        dry_run: bool,
        geometry: Geometry,
    ) -> tuple[list[MergePlan], Stamps]:
        """Adopt the fresh points, gather what to consider (a slice's points, or the fresh
        ones and their neighbours when `piece` is None), plan the merges. Returns the
        plans (their members' vectors copied out of the gathered matrix, so it can go) and
        the stamps the fresh points get once the run has applied its merges."""
        layout = self.layouts.get()
        with _timed(report.timings, "scroll"):
            if piece is not None and plan is not None:  # one pass over the slice: its fresh points too
                scrolled = self.writes_first.paced(
                    self.store.scroll(
                        self.collection, piece.filter, with_vectors=True, batch_size=GATHER_PAGE
                    ),
                    GATHER_PAGE,
                )
                owned = (r for r in scrolled if plan.holds(piece, layout, r) and self._owns(r))
                everything = Gathered.pack(owned, capacity=piece.points)
                fresh_records = [r for r in everything.records if _is_fresh(r)]
                adoption = adopt(
                    self.store,
                    self.collection,
                    fresh_records,
                    report.run_id,
                    dry_run,
                    layout,
                    self.writes_first.pace,
                    GATHER_PAGE,
                )
                quarantined = {point_id for point_id, _ in adoption.quarantined}
                rows = [
                    row
                    for row in p.consolidatable_rows(everything.records, layout.mergeable)
                    if everything.records[row].id not in quarantined
                ]
                gathered = everything.select(np.asarray(rows, dtype=np.int64))
            else:
                adoption = find_fresh(
                    self.store,
                    self.collection,
                    fresh_points,
                    report.run_id,
                    dry_run,
                    self._owns,
                    layout,
                    GATHER_PAGE,
                    self.writes_first.pace,
                )
                near = self._fresh_and_neighbours(
                    adoption.valid, geometry.score_threshold(params.threshold), layout
                )
                gathered = Gathered.pack(near)
        geometry.check(gathered.records)
        report.adopted += len(adoption.valid)
        report.quarantined += len(adoption.quarantined)
        report.considered += len(gathered)
        plans: list[MergePlan] = []
        for rows in _partition_rows(gathered.records, layout):
            self.writes_first.pace()
            plans.extend(self._plan_partition(gathered.select(rows), params, report))
        for plan in plans:  # on Dot, the members' length too
            weights = np.array([p.weight(m.payload) for m in plan.members])
            plan.vector = geometry.scaled(plan.vector, plan.members, weights)
        for plan in plans:
            for member in plan.members:
                member.vector = np.array(member.vector)
        log.debug("run.planned", considered=len(gathered), merges=len(plans))
        return plans, adoption_stamps(adoption.valid)

    def _plan_partition(
        self, partition: Gathered, params: ClusterParams, report: RunReport
    ) -> list[MergePlan]:
        if len(partition) < 2:
            return []
        records, unit = partition.records, partition.unit
        weights = np.array([p.weight(r.payload) for r in records], dtype=np.float64)
        s = self.settings
        lenience = self._lenience(records, params.threshold)
        floor = params.threshold - float(lenience.max()) if lenience is not None else params.threshold
        with _timed(report.timings, "pairs"):
            if len(records) <= s.exact_limit:
                pairs = exact_pairs(unit, floor, s.block_size)
            else:  # n² products would dominate: compare within nearby k-means cells only
                pairs = cell_pairs(unit, floor, s.cell_size, s.probes)
                report.cell_partitions += 1
            if lenience is not None:
                pairs = pairs.lenient(lenience, params.threshold)
        report.pairs += len(pairs)
        with _timed(report.timings, "cluster"):
            groups = cluster(unit, weights, pairs, params, lenience)
            return plan_merges(records, unit, weights, groups)

    def _lenience(self, records: list[Record], threshold: float) -> np.ndarray | None:
        """Gist over time (`consolidation.age_threshold`): how much lower than `threshold`
        each memory may merge, growing with the days since it was last used up to the
        full difference at `age_days`. None when off."""
        s = self.settings
        if s.age_threshold is None or s.age_threshold >= threshold:
            return None
        now = p.utcnow()
        days = np.array([(now - use_of(r.payload).last).total_seconds() / DAY for r in records])
        share = np.clip(days / s.age_days, 0.0, 1.0)
        return ((threshold - s.age_threshold) * share).astype(np.float32)

    def _apply(self, plans: list[MergePlan], report: RunReport, dry_run: bool) -> list[PointId]:
        """Apply a batch of plans; return the ids they consumed (merged away, or set fresh
        again)."""
        details = [plan.describe(self.layouts.get()) for plan in plans]
        if dry_run:
            for detail in details:
                report.add_merge(detail)
                log.info("merge.planned", **detail)
            return []
        # on record before the first store write: a crash leaves them `applying`, and
        # recovery settles the record with the store (see reconcile)
        self.run_log.add_merges(report.run_id, [(d["merge_id"], "applying", d) for d in details])
        # on record as applied before a rewrite or delete can release them (release.py)
        with self.applier.lock:
            merges = labelled_merges(
                self.store, self.applier.archive, self.layouts.get(), plans, report.run_id
            )
            outcomes = self.applier.apply(merges, report.run_id)
            self.run_log.add_merges(report.run_id, self._settled(plans, details, outcomes, report))
        return [i for plan in plans for i in plan.member_ids]

    def _settled(
        self,
        plans: list[MergePlan],
        details: list[dict[str, Any]],
        outcomes: list[Outcome],
        report: RunReport,
    ) -> list[tuple[str, str, dict[str, Any]]]:
        """Each merge's record once applied or voided, logged and added to the report."""
        settled: list[tuple[str, str, dict[str, Any]]] = []
        for plan, detail, outcome in zip(plans, details, outcomes, strict=True):
            if outcome.applied:
                report.add_merge(detail)
                settled.append((plan.merge_id, "applied", detail))
                log.info("merge.applied", **detail)
                continue
            detail = {**detail, "changed": outcome.changed, "vanished": outcome.vanished}
            report.skipped.append(detail)
            settled.append((plan.merge_id, "skipped", detail))
            log.warning(
                "merge.skipped",
                merge_id=plan.merge_id,
                reason="members changed or deleted since planning; the next run retries",
                changed=outcome.changed,
                vanished=outcome.vanished,
            )
        return settled

    # -- gathering ----------------------------------------------------------------------
    def _owns(self, record: Record) -> bool:
        """This replica's point; one whose tenant cannot be read is owned (adoption
        quarantines it)."""
        if self.replica.count == 1:  # the only replica: no need to read the tenant
            return True
        try:
            return self.replica.owns(self.layouts.get().tenant(record.payload))
        except PayloadError:
            return True

    def _owner_keys(self) -> tuple[str, ...]:
        """The payload paths `_owns` reads."""
        return () if self.replica.count == 1 else self.layouts.get().tenant_keys

    def _fresh_and_neighbours(
        self, fresh: list[Record], threshold: float | None, layout: Layout
    ) -> list[Record]:
        seeds = p.consolidatable(fresh, layout.mergeable)
        # one tenant's queries side by side: the engine resolves a filter once for adjacent
        # queries that share it (10,000 over 1,000 tenants at 300k: 7.6 s mixed, 1.2 s grouped)
        seeds = [seeds[row] for rows in _partition_rows(seeds, layout) for row in rows]
        found: dict[PointId, Record] = {r.id: r for r in seeds}
        neighbours: set[PointId] = set()
        for start in range(0, len(seeds), QUERY_BATCH):
            self.writes_first.pace()
            batch = seeds[start : start + QUERY_BATCH]
            requests = [neighbour_query(r, threshold, layout, self.settings) for r in batch]
            results = self.store.query_batch(self.collection, requests)
            for seed, hits in zip(batch, results, strict=True):
                partition = _partition(seed, layout)
                neighbours.update(
                    hit.id for hit in hits if hit.id not in found and _partition(hit, layout) == partition
                )
        # Re-read neighbours: a query may return vectors rounded differently from a
        # retrieve, and apply verifies members against exactly what was read here.
        ids = list(neighbours)
        for start in range(0, len(ids), QUERY_BATCH):
            self.writes_first.pace()
            batch = self.store.retrieve(self.collection, ids[start : start + QUERY_BATCH])
            found.update((r.id, r) for r in p.consolidatable(batch, layout.mergeable))
        return list(found.values())


def neighbour_query(
    record: Record, threshold: float | None, layout: Layout, settings: ConsolidationSettings
) -> QueryRequest:
    """An incremental pass's search for a fresh memory's neighbours, within its tenant."""
    return QueryRequest(
        vector=record.vector,  # type: ignore[arg-type]
        limit=settings.neighbors + 1,
        score_threshold=threshold,
        filter=p.searchable_filter(p.partition_filter(layout.tenant(record.payload), layout.tenant_keys)),
        hnsw_ef=settings.search_ef,
        payload_keys=layout.tenant_keys,  # all `_partition` reads: the rest is re-read for the found
    )


def _partition(record: Record, layout: Layout) -> tuple[Any, ...]:
    """Memories that may merge share this: their tenant, and the names of their other dense
    vectors (points whose vectors differ are never merged together). The records here
    were checked by the layout already."""
    dense = tuple(sorted(n for n, v in record.others.items() if isinstance(v, np.ndarray)))
    return (*layout.tenant(record.payload), dense)


def _partition_rows(records: list[Record], layout: Layout) -> list[np.ndarray]:
    groups: dict[tuple[Any, ...], list[int]] = defaultdict(list)
    for row, record in enumerate(records):
        groups[_partition(record, layout)].append(row)
    return [np.asarray(rows, dtype=np.int64) for rows in groups.values()]


class _Progress:
    """A progress event in the logs every few seconds of a long stage."""

    def __init__(self, event: str, total: int, every: float = 5.0) -> None:
        self.event, self.total, self.every = event, total, every
        self.done = 0
        self.last = time.monotonic()

    def step(self, count: int = 1, **fields: Any) -> None:
        self.done += count
        if time.monotonic() - self.last >= self.every:
            self.last = time.monotonic()
            log.info(self.event, done=self.done, total=self.total, **fields)


@contextmanager
def _timed(timings: dict[str, float], stage: str) -> Iterator[None]:
    """Add the block's wall time to `timings[stage]` (a stage may run once per partition)."""
    start = time.perf_counter()
    try:
        yield
    finally:
        timings[stage] = round(timings.get(stage, 0.0) + time.perf_counter() - start, 4)


def _is_fresh(record: Record) -> bool:
    return p.state(record.payload) == p.FRESH
