"""The tenant index, measured: an incremental pass's neighbour searches from a cold page cache.

    .venv/bin/python bench/tenant_index.py --n 1000000 [--tenants 10000] [--scratch DIR]

Every incremental pass searches, for each fresh memory, its neighbours within its tenant
(10,000 searches over 1,000 tenants in bench/tenant_scale.py), then re-reads what they
found. At 10M memories the store (19 GB) outgrows the page cache and these reads go to
disk: the pass took 54 s there against 10 s at 3M. This writes bench/tenant_scale.py's
workload twice on the embedded engine, the tenant keys indexed plainly (as reverie did
before) and as tenant indexes (Qdrant's is_tenant: the engine stores each tenant's points
together), lets the engine build its segments, then in a new process evicts the store's
files from the page cache (posix_fadvise) and times the searches and re-reads cold, then
again warm. Prints a table; writes bench/results/tenant-index.json (results of other sizes kept) and a
section of docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
from consolidation_speed import timed  # noqa: E402
from datagen import unit  # noqa: E402
from page_cache import evict  # noqa: E402
from report import write_section  # noqa: E402
from tenant_scale import add_workload_arguments, commit, tenant_name, workload  # noqa: E402

from reverie.config import Settings  # noqa: E402
from reverie.consolidation.engine import QUERY_BATCH, neighbour_query  # noqa: E402
from reverie.storage import QueryRequest, Record  # noqa: E402
from reverie.storage import payload as p  # noqa: E402
from reverie.storage.base import VectorSchema  # noqa: E402
from reverie.storage.edge import EdgeStore  # noqa: E402
from reverie.storage.layouts import Layout  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results" / "tenant-index.json"
COLLECTION = "memories"
LAYOUT = Layout("reverie", text="text")
QUERY_TENANTS, PER_TENANT = 1_000, 10  # as bench/tenant_scale.py's incremental pass
LAYOUTS = {"plain": False, "tenant": True}  # the tenant keys' index: is_tenant


def write(store_dir: Path, tenant_index: bool, args: argparse.Namespace) -> dict[str, Any]:
    """The workload as reverie writes it (text, tenant, its stamp), then the engine's
    segment build (`reverie maintain`); keeps a sample of stored vectors for the queries."""
    store = EdgeStore(store_dir)
    store.ensure_collection(COLLECTION, VectorSchema.single(384))
    for key in (f"{p.KEY}.state", f"{p.KEY}.kind"):
        store.create_payload_index(COLLECTION, key)
    for key in LAYOUT.tenant_keys:
        store.create_payload_index(COLLECTION, key, tenant=tenant_index)
    stamp = p.fresh_meta()
    sample_vectors, sample_tenants, seconds = [], [], 0.0
    for start, vectors, tenants, texts in workload(args.n, args):
        for at in range(0, len(vectors), 10_000):
            rows = range(at, min(at + 10_000, len(vectors)))
            records = [
                Record(
                    start + i,
                    vectors[i],
                    {"text": texts[i], "user_id": tenant_name(int(tenants[i])), p.KEY: stamp},
                )
                for i in rows
            ]
            seconds += timed(lambda records=records: store.upsert(COLLECTION, records))[1]
        sample_vectors.append(vectors[::97])
        sample_tenants.append(tenants[::97])
        print(f"{'tenant' if tenant_index else 'plain'}: written {start + len(vectors):,}", file=sys.stderr)
    _, built = timed(lambda: store.optimize(COLLECTION))
    store.close()
    np.save(store_dir / "sample_vectors.npy", np.concatenate(sample_vectors))
    np.save(store_dir / "sample_tenants.npy", np.concatenate(sample_tenants))
    size = sum(f.stat().st_size for f in store_dir.rglob("*") if f.is_file())
    return {
        "write_per_s": round(args.n / seconds),
        "build_s": round(built, 1),
        "store_gib": round(size / 2**30, 2),
    }


def queries(store_dir: Path, seed: int) -> list[QueryRequest]:
    """10 fresh memories in each of 1,000 tenants: 5 near-duplicates (cosine about 0.9) of
    the tenant's stored memories and 5 new ones, each searched within its tenant as the
    incremental pass does (consolidation/engine.py `neighbour_query`)."""
    rng = np.random.default_rng(seed + 1)
    vectors, tenants = np.load(store_dir / "sample_vectors.npy"), np.load(store_dir / "sample_tenants.npy")
    present = np.unique(tenants)
    chosen = rng.choice(present, size=min(QUERY_TENANTS, len(present)), replace=False)
    c = Settings().consolidation
    requests = []
    for t in chosen:
        own = vectors[rng.choice(np.flatnonzero(tenants == t), size=PER_TENANT // 2)]
        near = unit(own + 0.45 * unit(rng.normal(size=own.shape)))
        new = unit(rng.normal(size=own.shape))
        payload = {"user_id": tenant_name(int(t))}
        requests += [
            # a cosine collection: the threshold is the cosine (geometry.score_threshold)
            neighbour_query(Record(0, v.astype(np.float32), payload), c.threshold, LAYOUT, c)
            for v in np.concatenate([near, new])
        ]
    return requests


def search(store_dir: Path, seed: int) -> dict[str, Any]:
    """The searches and the re-read of what they found, cold, then warm."""
    requests = queries(store_dir, seed)
    evict(store_dir)
    store = EdgeStore(store_dir)
    result: dict[str, Any] = {}
    for cache in ("cold", "warm"):
        found, seconds = timed(lambda: searched(store, requests))
        result[cache] = {"seconds": round(seconds, 2), "found": found}
    store.close()
    return result


def searched(store: EdgeStore, requests: list[QueryRequest]) -> int:
    """The searches in the pass's batches, then the re-read of the points found."""
    found: set[Any] = set()
    for start in range(0, len(requests), QUERY_BATCH):
        for hits in store.query_batch(COLLECTION, requests[start : start + QUERY_BATCH]):
            found.update(hit.id for hit in hits)
    ids = list(found)
    for start in range(0, len(ids), QUERY_BATCH):
        store.retrieve(COLLECTION, ids[start : start + QUERY_BATCH])
    return len(found)


def measure(layout: str, args: argparse.Namespace, scratch: Path) -> dict[str, Any]:
    store_dir = scratch / layout
    shutil.rmtree(store_dir, ignore_errors=True)
    store_dir.mkdir(parents=True)
    result = {"layout": layout, "n": args.n, "tenants": args.tenants, "commit": commit()}
    result |= write(store_dir, LAYOUTS[layout], args)
    done = subprocess.run(  # a new process: nothing of the store in its memory
        [sys.executable, __file__, "--search", str(store_dir), *sys.argv[1:]],
        stdout=subprocess.PIPE,
        text=True,
        check=True,
    )
    result |= json.loads(done.stdout.strip().splitlines()[-1])
    shutil.rmtree(store_dir)
    return result


def report(results: list[dict[str, Any]]) -> None:
    header = (
        "| tenant keys indexed | memories | tenants | writes/s | segment build s | store GiB "
        "| searches + re-reads, cold s | warm s | found |"
    )
    lines = [
        "`bench/tenant_index.py --n N --tenants T` (2 cores; "
        f"{QUERY_TENANTS * PER_TENANT:,} tenant-filtered neighbour searches over {QUERY_TENANTS:,} "
        "tenants, as an incremental pass makes them, then a re-read of what they found; cold: the "
        "store's files evicted from the page cache first):",
        "",
        header,
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in results:
        name = "as tenant indexes (is_tenant)" if r["layout"] == "tenant" else "plainly (before)"
        lines.append(
            f"| {name} | {r['n']:,} | {r['tenants']:,} | {r['write_per_s']:,} | {r['build_s']} | "
            f"{r['store_gib']} | {r['cold']['seconds']} | {r['warm']['seconds']} | {r['cold']['found']:,} |"
        )
    print("\n".join(lines[2:]))
    write_section(ROOT / "docs" / "benchmarks.md", "tenant-index", lines, "Benchmarks")


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--n", type=int, default=1_000_000)
    add_workload_arguments(parser)
    parser.add_argument("--layouts", nargs="+", choices=list(LAYOUTS), default=list(LAYOUTS))
    parser.add_argument("--scratch", default=None, help="where the stores go (default: the system's temp)")
    parser.add_argument("--search", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.search:
        print(json.dumps(search(Path(args.search), args.seed)))
        return
    earlier = json.loads(RESULTS.read_text())["results"] if RESULTS.exists() else []
    results = [r for r in earlier if r["n"] != args.n or r["layout"] not in args.layouts]
    with tempfile.TemporaryDirectory(dir=args.scratch) as scratch:
        results += [measure(layout, args, Path(scratch)) for layout in args.layouts]
    results.sort(key=lambda r: (r["n"], r["layout"]))
    RESULTS.write_text(json.dumps({"results": results}, indent=2))
    report(results)


if __name__ == "__main__":
    main()
