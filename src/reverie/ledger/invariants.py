"""The invariants a store must keep whatever happened to the process that wrote it.

Checked (through `Reverie.invariant_problems`) by the crash, concurrency, fuzzing and
disk-full tests and by bench/crash_torture.py and bench/soak.py; recovery must have run
first (a crash legitimately leaves merges in flight until then).
- every original memory is live or dormant, or archived with a live or dormant merged
  point holding it in its lineage (exactly once: their weights sum to the originals covered;
  a merged point whose originals archive.keep_days dropped counts them as its weight, and
  those originals are no longer anyone's to hold);
- no memory is live and dormant at once;
- nothing is left in flight (`committing`, `verified`, `undoing`);
- every archive copy points to a merged point that exists (live, or archived itself);
- the run log agrees: no run left `running`, no merge left `applying`/`undoing`, no
  forget left `forgetting`, every
  live merged point on record as applied, every merge on record as applied still there.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable

from reverie.ledger.lineage import dropped, lineage_map
from reverie.ledger.runs import RunLog
from reverie.storage import PointId, Store
from reverie.storage import payload as p


def find_problems(
    store: Store,
    collection: str,
    archive: str,
    run_log: RunLog,
    must_hold: Iterable[PointId] = (),
    may_hold: Iterable[PointId] | None = None,
) -> list[str]:
    """Every broken invariant, as a sentence. `must_hold`: originals that must be covered
    (acknowledged writes); `may_hold`: all that may be (every write attempted)."""
    problems: list[str] = []
    live = list(store.scroll(collection))
    in_flight = sorted({p.state(r.payload) for r in live} & set(p.IN_FLIGHT))
    if in_flight:
        problems.append(f"points left in flight: {in_flight}")
    archived = list(store.scroll(archive)) if store.collection_exists(archive) else []
    # a dormant memory (forgotten, revivable) stands for its originals as a live one does
    dormant = [r for r in archived if p.state(r.payload) == p.DORMANT]
    copies = [r for r in archived if p.state(r.payload) != p.DORMANT]
    both = {str(r.id) for r in live} & {str(r.id) for r in dormant}
    if both:
        problems.append(f"memories both live and dormant: {sorted(both)[:10]}")
    standing = [*live, *dormant]
    lineages = lineage_map(standing, copies)
    covered = Counter(str(i) for originals in lineages.values() for i in originals)
    twice = [i for i, n in covered.items() if n > 1]
    if twice:
        problems.append(f"originals in more than one live lineage: {twice[:10]}")
    # a merged point whose originals archive.keep_days dropped stands for them as its weight
    counted = {str(r.id): p.weight(r.payload) for r in [*standing, *copies] if dropped(r)}
    weights = sum(p.weight(r.payload) for r in standing)
    originals = sum(counted.get(i, 1) for i in covered)
    if weights != originals:
        problems.append(f"live weights sum to {weights}, but {originals} originals are covered")
    lost = {str(i) for i in must_hold} - covered.keys()
    if lost:
        problems.append(f"acknowledged memories lost: {sorted(lost)[:10]} ({len(lost)} in all)")
    if may_hold is not None:
        unknown = covered.keys() - {str(i) for i in may_hold} - counted.keys()
        if unknown:
            problems.append(f"originals nobody wrote: {sorted(unknown)[:10]}")
    live_ids = {str(r.id) for r in live}
    archived_ids = {str(r.id) for r in archived}
    for copy in copies:
        into = str(p.meta(copy.payload).get("archived", {}).get("merged_into"))
        if into not in live_ids and into not in archived_ids:
            problems.append(f"archived {copy.id} points to {into}, which exists nowhere")
    live_ids |= archived_ids
    problems += _run_log_problems(run_log, live, live_ids)
    return problems


def _run_log_problems(run_log: RunLog, live: list, existing: set[str]) -> list[str]:
    problems = [
        f"run {r.run_id} still marked running" for r in run_log.runs(limit=1_000_000) if r.status == "running"
    ]
    for status in ("applying", "undoing", "forgetting"):
        left = run_log.merges_in_status(status)
        if left:
            problems.append(f"{len(left)} merges left {status} in the run log")
    merged = [
        (str(r.id), p.meta(r.payload)["run_id"]) for r in live if p.meta(r.payload).get("kind") == p.MERGED
    ]
    on_record = {
        run: {m.merge_id: m.status for m in run_log.merges(run)} for run in {run for _, run in merged}
    }
    problems += [
        f"live merged point {merge_id} is not on record as applied"
        for merge_id, run in merged
        if on_record[run].get(merge_id) != "applied"
    ]
    gone = {m.merge_id for m in run_log.merges_in_status("applied")} - existing
    if gone:
        problems.append(f"merges on record as applied but gone: {sorted(gone)[:10]}")
    return problems
