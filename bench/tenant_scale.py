"""Many tenants on one node: the full pass, the incremental pass and scale-out, measured.

    .venv/bin/python bench/tenant_scale.py --sizes 1000000 3000000 --tenants 10000 [--replicas 3]
        [--written DIR]  (each size's store written once into DIR, each run from a copy of it)

The workload agent memory has in production: `--tenants` tenants whose sizes follow a
Zipf-like law (exponent `--zipf`: with 0.8 and 10,000 tenants the largest holds 3.7% of
all memories and the median a few hundred), 30% near-duplicates (bench/datagen.py), each
group of them inside one tenant, and 1% of memories identical copies (same vector, same
text) of a memory of another tenant, which must never merge.

For each size, on the embedded engine (data on disk), each phase in a process of its own:
- writes in batches of 10,000;
- the full pass: wall time by stage, slices, peak resident memory split into anonymous
  (reverie's and the engine's heaps; the share already held once the engine has opened
  the store is the engine's) and mapped files (the engine's pages, which the kernel may
  evict), and the largest tenant beside it;
- in a new process, 10,000 fresh memories over 1,000 tenants (half near-duplicates of
  stored ones), then the incremental pass; the store's files evicted from the page cache
  first (posix_fadvise), as for a daemon restarted on a node whose store is not cached
  (a627b82's 1M and 10M rows emptied the whole page cache instead: drop_caches, as root);
- in another new process, 10,000 more, then the incremental pass again, every file of the
  store read once first (the live collection last): as for a daemon on a node whose memory
  holds its store (at 10M, a second round without that read ran nearly as cold as the
  first: 11.78 s against 12.05, its tenants' pages not read yet);
- in a new process, a full pass again over the consolidated store: what a periodic full
  pass costs once the first one (which adopts and merges everything a bulk import wrote)
  is done;
- every merge of every pass checked against the tenants the memories were written to;
- the pair recall of the pairing the largest tenant gets (k-means cells above
  consolidation.exact_limit; smaller tenants are paired exactly), sampled;
- with `--replicas N`, the same store copied and consolidated by `consolidation.replica`
  "i/N" for each i in turn (one process at a time: the embedded engine can be opened by one
  process only), the pass time of each and the tenants each touched.
Prints a table and writes bench/results/tenant-scale.json and docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import functools
import json
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
from consolidation_speed import RssSampler, peak_rss_mib, resident_mib, sampled_cell_recall, timed  # noqa: E402
from datagen import generate, unit  # noqa: E402
from page_cache import evict, read_in  # noqa: E402
from report import pyplot, write_section  # noqa: E402

from reverie.config import LoggingSettings, Settings  # noqa: E402
from reverie.logs import configure_logging  # noqa: E402
from reverie.memory import NewMemory, Reverie  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results" / "tenant-scale.json"
BLOCK = 100_000
FRESH, FRESH_TENANTS = 10_000, 1_000
WRITTEN = "write.json"  # the write phase's result, beside the store it wrote
FRESH_TENANT_OF = "fresh_tenant_of.npy"  # the incremental phase's memories' tenants


def tenant_name(t: int) -> str:
    return f"user-{t:05d}"


def workload(n: int, args: argparse.Namespace) -> Any:
    """Blocks of (first id, vectors, tenant per row, text per row), generated as written."""
    rng = np.random.default_rng(args.seed)
    weights = 1.0 / np.arange(1, args.tenants + 1) ** args.zipf
    weights /= weights.sum()
    for block, start in enumerate(range(0, n, BLOCK)):
        size = min(BLOCK, n - start)
        data = generate(size, args.duplicate_fraction, args.seed + block)
        groups = data.labels.max() + 1
        group_tenant = rng.choice(args.tenants, size=groups, p=weights)
        tenants = np.where(
            data.labels >= 0, group_tenant[data.labels], rng.choice(args.tenants, size, p=weights)
        )
        texts = [f"memory {start + i}" for i in range(size)]
        singles = np.flatnonzero(data.labels < 0)
        copies = rng.choice(singles, size=min(len(singles), size // 100), replace=False)
        for row in copies:  # an identical memory in another tenant
            source = int(rng.integers(size))
            if tenants[source] != tenants[row]:
                data.vectors[row], texts[row] = data.vectors[source], texts[source]
        yield start, data.vectors, tenants.astype(np.int32), texts


def write_phase(n: int, tmp: Path, args: argparse.Namespace) -> dict[str, Any]:
    """Write the workload; keep each memory's tenant, the largest tenant's vectors and a
    sample of stored memories (the fresh ones are made near them) beside the store."""
    tenant_of = np.empty(n, dtype=np.int32)
    largest: list[np.ndarray] = []
    sample_ids: list[int] = []
    seconds = 0.0
    with Reverie.open(settings_for(tmp / "store")) as rv:
        for start, vectors, tenants, texts in workload(n, args):
            tenant_of[start : start + len(vectors)] = tenants
            largest.append(vectors[tenants == 0])
            sample_ids.extend(start + np.flatnonzero(np.arange(len(vectors)) % 97 == 0))
            for at in range(0, len(vectors), 10_000):
                batch = [
                    NewMemory(
                        vectors[i], {"text": texts[i], "user_id": tenant_name(int(tenants[i]))}, start + i
                    )
                    for i in range(at, min(at + 10_000, len(vectors)))
                ]
                seconds += timed(lambda batch=batch: rv.write(batch))[1]
            print(f"written {start + len(vectors):,} of {n:,}", file=sys.stderr, flush=True)
    np.save(tmp / "tenant_of.npy", tenant_of)
    np.save(tmp / "largest.npy", np.concatenate(largest))
    np.save(tmp / "sample_ids.npy", np.asarray(sample_ids))
    counts = np.bincount(tenant_of, minlength=args.tenants)
    result = {
        "commit": commit(),
        "workload": workload_args(args),
        "n": n,
        "write_per_s": round(n / seconds),
        "tenants_used": int((counts > 0).sum()),
        "largest_tenant": int(counts.max()),
        "median_tenant": int(np.median(counts[counts > 0])),
        "store_gib": round(
            sum(f.stat().st_size for f in (tmp / "store").rglob("*") if f.is_file()) / 2**30, 2
        ),
    }
    (tmp / WRITTEN).write_text(json.dumps(result))  # what a later run starting from a copy reports
    return result


def add_workload_arguments(parser: argparse.ArgumentParser) -> None:
    """The options `workload` reads (bench/tenant_index.py writes the same workload)."""
    parser.add_argument("--tenants", type=int, default=10_000)
    parser.add_argument("--zipf", type=float, default=0.8)
    parser.add_argument("--duplicate-fraction", type=float, default=0.3)
    parser.add_argument("--seed", type=int, default=0)


def workload_args(args: argparse.Namespace) -> dict[str, Any]:
    return {k: getattr(args, k) for k in ("tenants", "zipf", "duplicate_fraction", "seed")}


def applied(rv: Reverie, run_id: str) -> list[dict[str, Any]]:
    """Every merge a run applied, from the run log (a report keeps only the first ones)."""
    return [m.detail for m in rv.run_log.merges(run_id) if m.status == "applied"]


def cross_tenant(merges: list[dict[str, Any]], tenant_of: np.ndarray, rv: Reverie) -> int:
    """Merges whose members were written to more than one tenant. A member that is itself a
    merged memory (an incremental pass merging into it) is read back for its tenant."""
    merged = [m["id"] for merge in merges for m in merge["members"] if isinstance(m["id"], str)]
    found = rv.store.retrieve(rv.archive, merged, with_vectors=False)
    found += rv.store.retrieve(rv.collection, merged, with_vectors=False)
    tenant_of_merged = {r.id: int(r.payload["user_id"].removeprefix("user-")) for r in found}
    bad = 0
    for merge in merges:
        ids = [m["id"] for m in merge["members"]]
        bad += len({tenant_of_merged[i] if isinstance(i, str) else int(tenant_of[i]) for i in ids}) > 1
    return bad


def pass_phase(n: int, tmp: Path, args: argparse.Namespace, key: str = "full") -> dict[str, Any]:
    """The full pass, its peak memory sampled."""
    tenant_of = np.load(tmp / "tenant_of.npy")
    if (tmp / FRESH_TENANT_OF).exists():  # a pass after the incremental one
        tenant_of = np.concatenate([tenant_of, np.load(tmp / FRESH_TENANT_OF)])
    with Reverie.open(settings_for(tmp / "store")) as rv:
        rv.store.count(rv.collection)  # the engine opens the collection
        opened = round(peak_rss_mib())
        opened_anon, _ = resident_mib()  # the engine's own heap: ids, payload index, caches
        sampler = RssSampler()
        sampler.start()
        report, seconds = timed(lambda: rv.consolidate(full=True))
        sampler.stopped.set()
        return {
            key: {
                "commit": commit(),
                "seconds": round(seconds, 1),
                "stages": report.timings,
                "slices": report.slices,
                "points_in": report.points_before,
                "points_out": report.points_after,
                "merges": report.merge_count,
                "cross_tenant_merges": cross_tenant(applied(rv, report.run_id), tenant_of, rv),
                "opened_rss_mib": opened,
                "opened_anon_mib": opened_anon,
                "peak_anon_mib": max(a for _, a, _ in sampler.samples),
                "peak_mapped_mib": max(f for _, _, f in sampler.samples),
                "peak_rss_mib": round(peak_rss_mib()),
            }
        }


def incremental_phase(n: int, tmp: Path, args: argparse.Namespace) -> dict[str, Any]:
    """Fresh memories and the incremental pass, in a process of its own on the store the
    full pass left (right after a full pass in its own process, the engine answers more
    slowly: 11.3 s against 8.9 s at 300,000, measured once). Round 0 is measured as
    `incremental`, later rounds (other memories, other tenants' picks) as
    `incremental_cached`."""
    earlier = [np.load(tmp / "tenant_of.npy")]
    if args.round:
        earlier.append(np.load(tmp / FRESH_TENANT_OF))
    with Reverie.open(settings_for(tmp / "store")) as rv:
        fresh, fresh_tenants = fresh_memories(rv, tmp, args)
        tenant_of = np.concatenate([*earlier, fresh_tenants])
        np.save(tmp / FRESH_TENANT_OF, tenant_of[n:])
        first = n + args.round * FRESH  # after the earlier rounds' memories
        ids = range(first, first + len(fresh))
        rv.write(
            [
                NewMemory(v, {"text": f"memory {i}", "user_id": tenant_name(int(t))}, i)
                for i, v, t in zip(ids, fresh, fresh_tenants, strict=True)
            ]
        )
        report, seconds = timed(rv.consolidate)
        return {
            ("incremental_cached" if args.round else "incremental"): {
                "commit": commit(),  # a later phase of a long run may measure later code
                "fresh": len(fresh),
                "tenants": len(set(fresh_tenants.tolist())),
                "seconds": round(seconds, 2),
                "route": report.route,
                "stages": report.timings,
                "merges": report.merge_count,
                "cross_tenant_merges": cross_tenant(applied(rv, report.run_id), tenant_of, rv),
            }
        }


def fresh_memories(rv: Reverie, tmp: Path, args: argparse.Namespace) -> tuple[np.ndarray, np.ndarray]:
    """10,000 fresh memories over 1,000 tenants: for each, five near-duplicates (cosine about
    0.9) of stored memories of its own and five new ones."""
    rng = np.random.default_rng(args.seed + 1 + 100 * args.round)
    tenant_of = np.load(tmp / "tenant_of.npy")
    sample = np.load(tmp / "sample_ids.npy")
    by_tenant: dict[int, list[int]] = {}
    for i in sample:
        by_tenant.setdefault(int(tenant_of[i]), []).append(int(i))
    chosen = rng.choice(sorted(by_tenant), size=min(FRESH_TENANTS, len(by_tenant)), replace=False)
    stored = stored_vectors(rv, [rng.choice(by_tenant[t]) for t in chosen for _ in range(5)])
    near = unit(stored + 0.45 * unit(rng.normal(size=stored.shape)))
    new = generate(5 * len(chosen), args.duplicate_fraction, args.seed + 7 + 100 * args.round).vectors
    per_tenant = FRESH // len(chosen)
    vectors = np.concatenate([near, new]).astype(np.float32)[: per_tenant * len(chosen)]
    tenants = np.concatenate([np.repeat(chosen, 5), np.repeat(chosen, 5)]).astype(np.int32)
    return vectors, tenants[: len(vectors)]


def stored_vectors(rv: Reverie, ids: list[int]) -> np.ndarray:
    records = {r.id: r.vector for r in rv.store.retrieve(rv.collection, ids)}
    missing = [i for i in set(ids) if i not in records]  # merged away: in the archive
    records |= {r.id: r.vector for r in rv.store.retrieve(rv.archive, missing)}
    return np.stack([records[i] for i in ids])


def replica_phase(n: int, tmp: Path, args: argparse.Namespace) -> dict[str, Any]:
    """One replica's full pass over a copy of the freshly written store: its time and the
    tenants its merges touched."""
    index, count = args.replica_slot
    tenant_of = np.load(tmp / "tenant_of.npy")
    settings = settings_for(tmp / f"store-{count}")
    settings.consolidation.replica = f"{index}/{count}"
    with Reverie.open(settings) as rv:
        report, seconds = timed(lambda: rv.consolidate(full=True))
        merges = applied(rv, report.run_id)
    touched = sorted({int(tenant_of[m["id"]]) for merge in merges for m in merge["members"]})
    return {"seconds": round(seconds, 1), "merges": report.merge_count, "tenants": touched}


def settings_for(store: Path) -> Settings:
    settings = Settings()
    settings.storage.data_dir = store
    return settings


def phase(name: str, n: int, tmp: Path, *extra: str) -> dict[str, Any]:
    command = [sys.executable, __file__, "--phase", name, str(n), str(tmp), *extra, *sys.argv[1:]]
    done = subprocess.run(command, stdout=subprocess.PIPE, text=True, check=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


def measure(n: int, args: argparse.Namespace) -> dict[str, Any]:
    if args.scratch:
        Path(args.scratch).mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=args.scratch) as scratch:
        tmp = Path(scratch)
        result = written_store(n, tmp, args)
        if args.replicas > 1:
            shutil.copytree(tmp / "store", tmp / f"store-{args.replicas}")
        result |= phase("pass", n, tmp)
        evict(tmp / "store")
        result |= phase("incremental", n, tmp)
        read_in(tmp / "store", last=Settings().storage.collection)
        result |= phase("incremental", n, tmp, "--round", "1")
        result |= phase("repass", n, tmp)
        largest = np.load(tmp / "largest.npy")
        c = Settings().consolidation
        exact = len(largest) <= c.exact_limit
        result["largest_pair_recall"] = 1.0 if exact else sampled_cell_recall(largest, c, args.seed)
        result["largest_paired"] = "exact" if exact else "k-means cells"
        if args.replicas > 1:
            result["replicas"] = replicas(n, tmp, args)
    return result


def written_store(n: int, tmp: Path, args: argparse.Namespace) -> dict[str, Any]:
    """The write phase into `tmp`; with `--written DIR`, the store is written once into
    DIR/<n> and each run consolidates a copy (writing 10M takes 40 minutes)."""
    if args.written is None:
        return phase("write", n, tmp)
    kept = Path(args.written) / str(n)
    if not (kept / WRITTEN).exists():
        shutil.rmtree(kept, ignore_errors=True)  # a write that did not finish
        kept.mkdir(parents=True)
        phase("write", n, kept)
    result = json.loads((kept / WRITTEN).read_text())
    if result["workload"] != workload_args(args):
        raise SystemExit(f"{kept} holds a store written with {result['workload']}, not {workload_args(args)}")
    shutil.copytree(kept / "store", tmp / "store")
    for name in ("tenant_of.npy", "largest.npy", "sample_ids.npy"):
        shutil.copy(kept / name, tmp / name)
    return result


def commit() -> str:
    """The code measured (results of several sizes may come from different runs)."""
    done = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True)
    return done.stdout.strip() or "unknown"


def replicas(n: int, tmp: Path, args: argparse.Namespace) -> dict[str, Any]:
    runs = [
        phase("replica", n, tmp, "--replica-slot", str(i), str(args.replicas)) for i in range(args.replicas)
    ]
    tenants = [set(r.pop("tenants")) for r in runs]
    shared = sum(len(a & b) for i, a in enumerate(tenants) for b in tenants[i + 1 :])
    return {"count": args.replicas, "runs": runs, "tenants_touched_by_two": shared}


def row(r: dict[str, Any]) -> str:
    f, i = r["full"], r["incremental"]
    return (
        f"{r['n']:>10,} {r['write_per_s']:>8,} {f['seconds']:>8.1f} {f['slices']:>6} "
        f"{f['peak_anon_mib']:>7,} {f['peak_mapped_mib']:>7,} {r['largest_tenant']:>8,} {f['merges']:>8,} "
        f"{f['cross_tenant_merges']:>5} "
        f"{i['seconds']:>7.2f} {_second_incremental(r)[0]:>7} "
        f"{_incremental_cross(r):>5} {r['largest_pair_recall']:>7.4f} "
        f"{r['full_again']['seconds'] if 'full_again' in r else '':>8}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--sizes", type=int, nargs="+", default=[1_000_000])
    add_workload_arguments(parser)
    parser.add_argument("--replicas", type=int, default=1)
    parser.add_argument("--scratch", default=None, help="where the stores go (default: the system's temp)")
    parser.add_argument("--append", action="store_true", help="keep earlier sizes' results")
    parser.add_argument("--written", help="write each size's store once into this folder; start from copies")
    parser.add_argument("--phase", nargs=3, help=argparse.SUPPRESS)
    parser.add_argument("--replica-slot", type=int, nargs=2, help=argparse.SUPPRESS)
    parser.add_argument("--round", type=int, default=0, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.phase:
        name, n, tmp = args.phase
        again = functools.partial(pass_phase, key="full_again")
        phases = {"write": write_phase, "pass": pass_phase, "incremental": incremental_phase, "repass": again}
        work = {**phases, "replica": replica_phase}[name]
        log = open(Path(tmp) / f"{name}.log", "a")  # noqa: SIM115 (open for the process's life)
        configure_logging(LoggingSettings(level="info", format="json"), stream=log)  # as a daemon logs
        print(json.dumps(work(int(n), Path(tmp), args)))
        return
    earlier = json.loads(RESULTS.read_text())["results"] if args.append and RESULTS.exists() else []
    results = [r for r in earlier if r["n"] not in args.sizes]
    print(
        f"{'N':>10} {'writes/s':>8} {'full s':>8} {'slices':>6} {'anon':>7} {'mapped':>7} {'largest':>8} "
        f"{'merges':>8} {'cross':>5} {'incr s':>7} {'cached':>7} {'cross':>5} {'recall':>7} {'again s':>8}"
    )
    for n in args.sizes:
        result = measure(n, args)
        results.append(result)
        print(row(result), flush=True)
        for r in result.get("replicas", {}).get("runs", []):
            print(f"{'':>10}   replica: {r['seconds']:.1f} s, {r['merges']:,} merges")
        results.sort(key=lambda r: r["n"])
        RESULTS.parent.mkdir(parents=True, exist_ok=True)
        RESULTS.write_text(json.dumps({"args": vars(args), "results": results}, indent=2))
    write_docs(results, args)


def write_docs(results: list[dict[str, Any]], args: argparse.Namespace) -> None:
    lines = [
        f"`bench/tenant_scale.py --sizes {' '.join(str(r['n']) for r in results)} --tenants {args.tenants} "
        f"--zipf {args.zipf}` (30% near-duplicates inside tenants, 1% identical copies across them; "
        "embedded engine, data on disk; 2 cores, 24 GiB):",
        "",
        "| memories | code | tenants (largest, median) | writes/s | full pass s | stages s | slices | "
        "peak MiB: anonymous (of it at open) / mapped | merges | cross-tenant | incremental s (10,000 fresh, "
        "1,000 tenants): page cache emptied first / store read first | "
        "cross-tenant | largest tenant's pair recall | full pass again s (stages; merges) |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in results:
        f = r["full"]
        stages = ", ".join(f"{k} {v:.0f}" for k, v in f["stages"].items())
        lines.append(
            f"| {r['n']:,} | {r.get('commit', 'earlier')} | {r['tenants_used']:,} "
            f"({r['largest_tenant']:,}, {r['median_tenant']:,}) | "
            f"{r['write_per_s']:,} | {f['seconds']:,.0f}{_code_if_other(f, r)} | {stages} | {f['slices']} | "
            f"{f['peak_anon_mib']:,} ({_at_open(f)}) / {f['peak_mapped_mib']:,} | {f['merges']:,} | "
            f"{f['cross_tenant_merges']} | "
            f"{_incremental_cell(r)} | {_incremental_cross(r)} | "
            f"{r['largest_pair_recall']:.4f} "
            f"({r['largest_paired']}) | {_again_cell(r)} |"
        )
    for r in results:
        if "replicas" in r:
            times = ", ".join(f"{x['seconds']:.0f} s" for x in r["replicas"]["runs"])
            lines += [
                "",
                f"Scale-out at {r['n']:,}: `consolidation.replica` i/{r['replicas']['count']} over a copy "
                f"of the same store, one replica at a time: {times} (one daemon alone: "
                f"{r['full']['seconds']:.0f} s); "
                f"tenants touched by two replicas: {r['replicas']['tenants_touched_by_two']}.",
            ]
    lines += ["", "![full pass time and peak memory by size](tenant-scale.png)"]
    _plot(results)
    write_section(ROOT / "docs" / "benchmarks.md", "tenant-scale", lines, "Benchmarks")


def _code_if_other(phase: dict[str, Any], result: dict[str, Any]) -> str:
    """Names the code a phase ran when it is not the code that wrote the store."""
    code = phase.get("commit", result.get("commit"))
    return f" (code {code})" if code != result.get("commit") else ""


def _incremental_cell(result: dict[str, Any]) -> str:
    """Both incremental passes where measured (the first with the store out of the page
    cache); earlier runs measured one, on the page cache the full pass left."""
    first = result["incremental"]
    cell = f"{first['seconds']:.2f}{_code_if_other(first, result)}"
    seconds, how = _second_incremental(result)
    if not seconds:
        return f"{cell} (cache as the full pass left it)"
    return f"{cell} / {seconds}{how}"


def _second_incremental(result: dict[str, Any]) -> tuple[str, str]:
    """The second incremental pass: the store read first, or (a627b82's runs) a second
    10,000 right after the first, nothing read first."""
    if "incremental_cached" in result:
        return f"{result['incremental_cached']['seconds']:.2f}", ""
    if "incremental_warm" in result:
        return (
            f"{result['incremental_warm']['seconds']:.2f}",
            " (a second 10,000 right after, store not read first)",
        )
    return "", ""


def _incremental_cross(result: dict[str, Any]) -> int:
    """Cross-tenant merges over every incremental pass measured."""
    keys = ("incremental", "incremental_warm", "incremental_cached")
    return sum(result[k]["cross_tenant_merges"] for k in keys if k in result)


def _again_cell(result: dict[str, Any]) -> str:
    """The later full pass over the consolidated store, where measured."""
    if "full_again" not in result:
        return "not measured"
    again = result["full_again"]
    stages = ", ".join(f"{k} {v:.0f}" for k, v in again["stages"].items())
    merges = f"{again['merges']:,} merges, {again['cross_tenant_merges']} cross-tenant"
    return f"{again['seconds']:,.0f} ({stages}; {merges})"


def _at_open(full: dict[str, Any]) -> str:
    return f"{full['opened_anon_mib']:,}" if "opened_anon_mib" in full else "not measured"


def _plot(results: list[dict[str, Any]]) -> None:
    plt = pyplot()

    sizes = [r["n"] for r in results]
    fig, (time_ax, memory_ax) = plt.subplots(1, 2, figsize=(10, 4))
    time_ax.plot(sizes, [r["full"]["seconds"] for r in results], "o-", label="full pass")
    again = [(r["n"], r["full_again"]["seconds"]) for r in results if "full_again" in r]
    if again:
        time_ax.plot(*zip(*again, strict=True), "o:", label="full pass again (consolidated store)")
    time_ax.plot(sizes, [r["incremental"]["seconds"] for r in results], "o-", label="incremental (10k fresh)")
    time_ax.set(xscale="log", yscale="log", xlabel="memories", ylabel="seconds", title="Time (2 cores)")
    anonymous = [r["full"]["peak_anon_mib"] for r in results]
    memory_ax.plot(sizes, anonymous, "o-", label="anonymous (reverie and the engine's heap)")
    opened = [(r["n"], r["full"]["opened_anon_mib"]) for r in results if "opened_anon_mib" in r["full"]]
    if opened:
        memory_ax.plot(*zip(*opened, strict=True), "o:", label="anonymous at open (the engine's heap)")
    memory_ax.plot(
        sizes, [r["full"]["peak_mapped_mib"] for r in results], "o-", label="mapped files (engine)"
    )
    memory_ax.plot(
        sizes,
        [r["largest_tenant"] * 384 * 4 / 2**20 for r in results],
        "k--",
        label="largest tenant's vectors",
    )
    memory_ax.set(xscale="log", xlabel="memories", ylabel="MiB", title="Peak resident memory, full pass")
    for ax in (time_ax, memory_ax):
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(ROOT / "docs" / "tenant-scale.png", dpi=110)


if __name__ == "__main__":
    main()
