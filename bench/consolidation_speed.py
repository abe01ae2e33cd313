"""Consolidation speed and memory, side by side with what a user would run instead.

    .venv/bin/python bench/consolidation_speed.py --sizes 10000 20000 100000 [--compare-up-to 20000]

For each size N (the full pass in a process of its own, so peak RSS is the pass's), on synthetic
clustered vectors (bench/datagen.py):
- writes into a fresh embedded store (memories/s);
- reverie's full pass (`consolidate --full`): wall time by stage, peak RSS, points in/out;
- the index build the daemon's maintenance job does (`optimize`), then an incremental pass
  of --incremental fresh points (half near-duplicates of stored ones), with the pair recall
  of its neighbour queries against exact pairs;
- up to --compare-up-to: the naive route (scikit-learn AgglomerativeClustering, complete
  linkage, on the dense cosine matrix; and DBSCAN, metric cosine), the SemDeDup / NeMo
  Curator route (k-means, then pairwise cosine inside each cluster) and exact blocked
  all-pairs; ratios against reverie, adjusted Rand index against exact complete linkage,
  pair recall against exact pairs.
Prints a table and writes bench/results/consolidation-speed.json.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
from datagen import generate  # noqa: E402
from report import pyplot, write_section  # noqa: E402

from reverie.config import ConsolidationSettings, Settings  # noqa: E402
from reverie.consolidation.candidates import cell_pairs, exact_pairs  # noqa: E402
from reverie.memory import NewMemory, Reverie  # noqa: E402
from reverie.storage import QueryRequest  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results" / "consolidation-speed.json"
THRESHOLD = 0.80


def peak_rss_mib() -> float:
    """This process's own peak (VmHWM). Not getrusage's ru_maxrss: Linux carries that over
    fork and exec, so a phase started by a parent holding 3 GB (the 20k comparison's dense
    matrix) reported 3 GB before it did anything."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no VmHWM in /proc/self/status (Linux only)")


def timed(work: Any) -> tuple[Any, float]:
    started = time.perf_counter()
    result = work()
    return result, time.perf_counter() - started


def labels_from(merges: list[dict[str, Any]], n: int) -> np.ndarray:
    labels = np.arange(n)
    for merge in merges:
        ids = [int(m["id"]) for m in merge["members"]]
        labels[ids] = n + ids[0]
    return labels


def pair_set(rows: np.ndarray, cols: np.ndarray) -> set[tuple[int, int]]:
    return {(int(a), int(b)) if a < b else (int(b), int(a)) for a, b in zip(rows, cols, strict=True)}


def write_phase(n: int, tmp: Path, args: argparse.Namespace) -> dict[str, Any]:
    """Generate and write N memories (in batches of 10,000, as agents would), and keep the
    fresh vectors (and, for the comparison, the stored ones) beside the store."""
    data = generate(n + args.incremental, args.duplicate_fraction, args.seed)
    stored, fresh = data.vectors[:n], data.vectors[n:]
    np.save(tmp / "fresh.npy", fresh)
    if n <= args.compare_up_to:
        np.save(tmp / "stored.npy", stored)
    seconds = 0.0
    with Reverie.open(settings_for(tmp)) as rv:
        for start in range(0, n, 10_000):
            batch = [NewMemory(v, {}, start + i) for i, v in enumerate(stored[start : start + 10_000])]
            seconds += timed(lambda batch=batch: rv.write(batch))[1]
    out: dict[str, Any] = {"n": n, "write_per_s": round(n / seconds)}
    c = Settings().consolidation
    if n > c.exact_limit:  # the full pass pairs by k-means cells here: how many pairs does it miss?
        out["cell_pair_recall"] = sampled_cell_recall(stored, c, args.seed)
    return out


def sampled_cell_recall(
    vectors: np.ndarray, c: ConsolidationSettings, seed: int, sample: int = 5000
) -> float:
    """Pair recall of the full pass's candidate search (k-means cells, with the engine's
    settings, on the same vectors in the same order) against exact pairs, for the pairs of
    `sample` random rows (all N x N exact products would take most of an hour here)."""
    unit = vectors / np.linalg.norm(vectors, axis=1, keepdims=True)
    rows = np.random.default_rng(seed).choice(len(unit), size=min(sample, len(unit)), replace=False)
    exact: set[tuple[int, int]] = set()
    for start in range(0, len(rows), 512):
        block = rows[start : start + 512]
        r, col = np.nonzero(unit[block] @ unit.T >= THRESHOLD)
        exact |= {(a, b) for a, b in pair_set(block[r], col) if a != b}
    found = cell_pairs(unit, THRESHOLD, c.cell_size, c.probes)
    chosen = set(rows.tolist())
    found_set = {p for p in pair_set(found.rows, found.cols) if p[0] in chosen or p[1] in chosen}
    return round(len(found_set & exact) / max(1, len(exact)), 4)


def resident_mib() -> tuple[int, int]:
    """This process's resident memory now: anonymous (heaps) and file-backed (mapped files)."""
    status = dict(line.split(":", 1) for line in Path("/proc/self/status").read_text().splitlines())
    anon, mapped = (int(status[k].split()[0]) // 1024 for k in ("RssAnon", "RssFile"))
    return anon, mapped


class RssSampler(threading.Thread):
    """Resident memory every 0.1 s, anonymous (ours) and file-backed (the engine's mapped
    segments) apart: where in a pass the memory goes."""

    def __init__(self) -> None:
        super().__init__(daemon=True)
        self.samples: list[tuple[float, int, int]] = []  # seconds, anon MiB, file MiB
        self.stopped = threading.Event()
        self.started_at = time.perf_counter()

    def run(self) -> None:
        while not self.stopped.wait(0.1):
            anon, mapped = resident_mib()
            self.samples.append((round(time.perf_counter() - self.started_at, 2), anon, mapped))

    def peaks_by_stage(self, stages: dict[str, float]) -> dict[str, int]:
        """Peak RSS within each stage (one partition: the stages run one after another)."""
        peaks, start = {}, 0.0
        for stage, seconds in stages.items():
            inside = [a + f for t, a, f in self.samples if start <= t <= start + seconds]
            peaks[stage] = max(inside, default=0)
            start += seconds
        return peaks


def pass_phase(n: int, tmp: Path, args: argparse.Namespace) -> dict[str, Any]:
    """The full pass in a process of its own (its peak RSS is the pass's), then the index
    build and the incremental pass."""
    out: dict[str, Any] = {}
    settings = settings_for(tmp)
    with Reverie.open(settings) as rv:
        rv.store.count(rv.collection)  # the engine opens the collection
        opened_mib = round(peak_rss_mib())
        sampler = RssSampler()
        sampler.start()
        report, seconds = timed(lambda: rv.consolidate(full=True))
        sampler.stopped.set()
        out["full"] = {
            "seconds": round(seconds, 2),
            "stages": report.timings,
            "points_in": report.points_before,
            "points_out": report.points_after,
            "merges": report.merge_count,
            "peak_rss_mib": round(peak_rss_mib()),
            "opened_rss_mib": opened_mib,
            "rss_by_stage_mib": sampler.peaks_by_stage(report.timings),
            "rss_samples": sampler.samples,
        }
        _, out["optimize_seconds"] = timed(lambda: rv.store.optimize(rv.collection))
        fresh = np.load(tmp / "fresh.npy")
        ids = range(n, n + len(fresh))
        rv.write([NewMemory(v, {}, i) for i, v in zip(ids, fresh, strict=True)])
        recall = neighbour_recall(rv, fresh, set(ids), settings.consolidation)
        report, seconds = timed(rv.consolidate)
        out["incremental"] = {
            "fresh": len(fresh),
            "seconds": round(seconds, 2),
            "route": report.route,
            "stages": report.timings,
            "merges": report.merge_count,
            "pair_recall": recall,
        }
    return out


def settings_for(tmp: Path) -> Settings:
    settings = Settings()
    settings.storage.data_dir = tmp
    return settings


def phase(name: str, n: int, tmp: str) -> dict[str, Any]:
    command = [sys.executable, __file__, "--phase", name, str(n), tmp, *sys.argv[1:]]
    done = subprocess.run(command, capture_output=True, text=True, check=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


def measure(n: int, args: argparse.Namespace) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as tmp:
        result = {**phase("write", n, tmp), **phase("pass", n, tmp)}
        if n <= args.compare_up_to:
            result["compare"] = compare(np.load(Path(tmp) / "stored.npy"), args, rv_merges(tmp))
    return result


def rv_merges(tmp: str) -> list[dict[str, Any]]:
    """The full pass's merges, from its run record."""
    from reverie.ledger.runs import RunLog

    log = RunLog(Path(tmp) / "runs.sqlite")
    try:
        first = log.runs(limit=10)[-1]
        return [m.detail for m in log.merges(first.run_id) if m.status == "applied"]
    finally:
        log.close()


def neighbour_recall(rv: Reverie, fresh: np.ndarray, fresh_ids: set[int], c: ConsolidationSettings) -> float:
    """Of the pairs (fresh point, live point) above the threshold, the share the index's
    neighbour queries find (what the incremental route sees), before the run changes them."""
    live = [r for r in rv.live_records() if r.id not in fresh_ids]
    matrix = np.stack([r.vector for r in live])
    matrix /= np.linalg.norm(matrix, axis=1, keepdims=True)
    rows, cols = np.nonzero(fresh @ matrix.T >= THRESHOLD)
    exact = {(int(r), live[c].id) for r, c in zip(rows, cols, strict=True)}
    if not exact:
        return 1.0
    requests = [
        QueryRequest(v, c.neighbors + 1, score_threshold=THRESHOLD, hnsw_ef=c.search_ef) for v in fresh
    ]
    found = set()
    for row, hits in enumerate(rv.store.query_batch(rv.collection, requests)):
        found.update((row, h.id) for h in hits if h.id not in fresh_ids)
    return round(len(found & exact) / len(exact), 4)


def compare(vectors: np.ndarray, args: argparse.Namespace, merges: list[dict[str, Any]]) -> dict[str, Any]:
    from sklearn.cluster import DBSCAN, AgglomerativeClustering, MiniBatchKMeans
    from sklearn.metrics import adjusted_rand_score

    n = len(vectors)
    reverie_labels = labels_from(merges, n)
    result: dict[str, Any] = {}
    exact, seconds = timed(lambda: exact_pairs(vectors, THRESHOLD))
    result["exact_pairs"] = {"seconds": round(seconds, 2), "pairs": len(exact)}
    exact_set = pair_set(exact.rows, exact.cols)

    naive = AgglomerativeClustering(
        n_clusters=None, metric="cosine", linkage="complete", distance_threshold=1 - THRESHOLD
    )
    labels, seconds = timed(lambda: naive.fit_predict(vectors))
    result["sklearn_agglomerative"] = {
        "seconds": round(seconds, 2),
        "ari_reverie_vs_exact_complete": round(adjusted_rand_score(labels, reverie_labels), 4),
    }
    dbscan = DBSCAN(eps=1 - THRESHOLD, min_samples=2, metric="cosine")
    _, seconds = timed(lambda: dbscan.fit_predict(vectors))
    result["sklearn_dbscan"] = {"seconds": round(seconds, 2)}

    def semdedup() -> set[tuple[int, int]]:
        k = max(1, n // 1000)
        assign = MiniBatchKMeans(k, random_state=args.seed, n_init=1, batch_size=4096).fit_predict(vectors)
        found: set[tuple[int, int]] = set()
        for c in range(k):
            members = np.flatnonzero(assign == c)
            part = exact_pairs(vectors[members], THRESHOLD)
            found |= pair_set(members[part.rows], members[part.cols])
        return found

    found, seconds = timed(semdedup)
    result["semdedup_kmeans"] = {
        "seconds": round(seconds, 2),
        "pair_recall": round(len(found & exact_set) / max(1, len(exact_set)), 4),
    }
    return result


def row(r: dict[str, Any]) -> str:
    f, i = r["full"], r["incremental"]
    line = (
        f"{r['n']:>9,} {r['write_per_s']:>9,} {f['seconds']:>8.1f} {f['peak_rss_mib']:>7,} "
        f"{f['points_in']:>9,} {f['points_out']:>9,} {r['optimize_seconds']:>7.1f} {i['seconds']:>7.2f} "
        f"{i['pair_recall']:>6.3f}  full-pass pair recall {full_recall(r)}"
    )
    return line + "  stages " + ", ".join(f"{k} {v:.1f}" for k, v in f["stages"].items())


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--sizes", type=int, nargs="+", default=[10_000, 20_000, 100_000])
    parser.add_argument("--duplicate-fraction", type=float, default=0.3)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--incremental", type=int, default=1000)
    parser.add_argument("--compare-up-to", type=int, default=20_000)
    parser.add_argument("--phase", nargs=3, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.phase:
        name, n, tmp = args.phase
        work = write_phase if name == "write" else pass_phase
        print(json.dumps(work(int(n), Path(tmp), args)))
        return
    results = []
    print(
        f"{'N':>9} {'writes/s':>9} {'full s':>8} {'RSS MiB':>7} {'in':>9} {'out':>9} {'index s':>7} "
        f"{'incr s':>7} {'recall':>6}"
    )
    for n in args.sizes:
        result = measure(n, args)
        results.append(result)
        print(row(result), flush=True)
        for name, c in result.get("compare", {}).items():
            ratio = c["seconds"] / result["full"]["seconds"]
            extra = {k: v for k, v in c.items() if k != "seconds"}
            print(f"{'':>9}   {name:<24} {c['seconds']:>8.1f} s  ({ratio:.1f}x reverie's full pass)  {extra}")
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps({"args": vars(args), "results": results}, indent=2))
    write_docs(results, args)


def full_recall(result: dict[str, Any]) -> str:
    """The full pass's pair recall: exact products up to consolidation.exact_limit."""
    recall = result.get("cell_pair_recall")
    return "1 (exact)" if recall is None else f"{recall:.4f} (k-means cells; 5,000 rows sampled)"


def write_docs(results: list[dict[str, Any]], args: argparse.Namespace) -> None:
    """The table and a time-versus-size plot in docs/benchmarks.md."""
    lines = [
        f"`bench/consolidation_speed.py --sizes {' '.join(map(str, args.sizes))}` "
        f"(duplicate fraction {args.duplicate_fraction}, seed {args.seed}; 2 cores):",
        "",
        "| N | writes/s | full pass s | peak RSS MiB | points in -> out | merges | stages (s) "
        "| its pair recall | index build s | incremental s (fresh) | its pair recall |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in results:
        f, i = r["full"], r["incremental"]
        stages = ", ".join(f"{k} {v:.1f}" for k, v in f["stages"].items())
        lines.append(
            f"| {r['n']:,} | {r['write_per_s']:,} | {f['seconds']:.1f} | {f['peak_rss_mib']:,} | "
            f"{f['points_in']:,} -> {f['points_out']:,} | {f['merges']:,} | {stages} | {full_recall(r)} | "
            f"{r['optimize_seconds']:.1f} | {i['seconds']:.2f} ({i['fresh']:,}) | {i['pair_recall']:.3f} |"
        )
    compared = [r for r in results if "compare" in r]
    if compared:
        lines += ["", "| N | route | seconds | x reverie's full pass | quality |", "|---|---|---|---|---|"]
        for r in compared:
            for name, c in r["compare"].items():
                quality = ", ".join(f"{k} {v}" for k, v in c.items() if k != "seconds")
                ratio = c["seconds"] / r["full"]["seconds"]
                lines.append(f"| {r['n']:,} | {name} | {c['seconds']:.1f} | {ratio:.2f} | {quality} |")
    lines += ["", "![full pass time by size](consolidation-speed.png)"]
    _plot(results)
    largest = max(results, key=lambda r: r["n"])
    if largest["full"].get("rss_samples"):
        peaks = ", ".join(f"{k} {v:,}" for k, v in largest["full"]["rss_by_stage_mib"].items())
        lines += [
            "",
            f"Memory during the full pass at {largest['n']:,} (peak RSS MiB by stage: {peaks}; "
            f"{largest['full']['opened_rss_mib']:,} MiB with the store open, before the pass):",
            "",
            "![resident memory during the largest full pass](consolidation-memory.png)",
        ]
        _plot_memory(largest)
    write_section(ROOT / "docs" / "benchmarks.md", "consolidation-speed", lines, "Benchmarks")


def _plot(results: list[dict[str, Any]]) -> None:
    plt = pyplot()

    fig, ax = plt.subplots(figsize=(7, 4.5))
    sizes = [r["n"] for r in results]
    ax.plot(sizes, [r["full"]["seconds"] for r in results], "o-", label="reverie full pass")
    ax.plot(
        sizes, [r["incremental"]["seconds"] for r in results], "o-", label="reverie incremental (1k fresh)"
    )
    for name in ("sklearn_agglomerative", "sklearn_dbscan", "semdedup_kmeans", "exact_pairs"):
        points = [(r["n"], r["compare"][name]["seconds"]) for r in results if name in r.get("compare", {})]
        if points:
            ax.plot(*zip(*points, strict=True), "s--", label=name.replace("_", " "))
    ax.set(
        xscale="log", yscale="log", xlabel="memories", ylabel="seconds", title="Consolidation time (2 cores)"
    )
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(ROOT / "docs" / "consolidation-speed.png", dpi=110)


def _plot_memory(result: dict[str, Any]) -> None:
    """Resident memory over the pass, ours (anonymous) and the engine's mapped files, with
    the stages marked."""
    plt = pyplot()

    seconds, anon, mapped = zip(*result["full"]["rss_samples"], strict=True)
    fig, ax = plt.subplots(figsize=(7, 4))
    ax.stackplot(seconds, anon, mapped, labels=["anonymous (reverie)", "mapped files (engine)"], alpha=0.7)
    start = 0.0
    for stage, duration in result["full"]["stages"].items():
        ax.axvline(start, color="grey", lw=0.8)
        ax.text(start + duration / 2, ax.get_ylim()[1] * 0.95, stage, ha="center", fontsize=8)
        start += duration
    ax.set(xlabel="seconds", ylabel="MiB", title=f"Resident memory, full pass of {result['n']:,} memories")
    ax.legend(loc="lower right", fontsize=8)
    fig.tight_layout()
    fig.savefig(ROOT / "docs" / "consolidation-memory.png", dpi=110)


if __name__ == "__main__":
    main()
