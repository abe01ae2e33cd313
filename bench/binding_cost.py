"""What the embedded engine's Python binding costs per point and per payload value.

    .venv/bin/python bench/binding_cost.py [--n 20000]

Applying a merge writes its merged point and an archive copy of each member through
qdrant-edge's binding, which turns every payload value into the engine's JSON. This writes
`--n` memories (30% near-duplicates, 100 tenants), consolidates them, and times on the
payloads reverie really wrote: building a point (with its payload, and with its vector
alone), the engine's upsert and set_payload per point, and the conversion of one value of
each JSON type. Prints a table and writes bench/results/binding-cost.json and a section of
docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from collections.abc import Callable
from importlib.metadata import version
from pathlib import Path
from typing import Any

import numpy as np
import qdrant_edge as qe

sys.path.insert(0, str(Path(__file__).parent))
from datagen import generate  # noqa: E402
from report import write_section  # noqa: E402

from reverie.config import LoggingSettings, Settings  # noqa: E402
from reverie.logs import configure_logging  # noqa: E402
from reverie.memory import NewMemory, Reverie  # noqa: E402
from reverie.storage import Record  # noqa: E402
from reverie.storage import payload as p  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results" / "binding-cost.json"
SAMPLE = 500  # points of each kind timed
VALUES = {
    "true": True,
    "integer": 7,
    "float": 1.5,
    "string": "user-00042",
    "object holding one string": {"run_id": "r-1"},
    "list of 3 integers": [1, 2, 3],
}


def per_call_us(work: Callable[[], Any], calls: int, repeat: int = 5) -> float:
    best = float("inf")
    for _ in range(repeat):
        start = time.perf_counter()
        work()
        best = min(best, time.perf_counter() - start)
    return best / calls * 1e6


def points_us(records: list[Record], with_payload: bool) -> float:
    vectors = [np.asarray(r.vector).tolist() for r in records]
    payloads = [r.payload if with_payload else None for r in records]
    return per_call_us(
        lambda: [qe.Point(r.id, v, x) for r, v, x in zip(records, vectors, payloads, strict=True)],
        len(records),
    )


def value_us(value: Any) -> float:
    calls = 20_000
    empty = per_call_us(lambda: [qe.Point(1, [0.0], {}) for _ in range(calls)], calls)
    one = per_call_us(lambda: [qe.Point(1, [0.0], {"k": value}) for _ in range(calls)], calls)
    return one - empty


def engine_us(rv: Reverie, records: list[Record]) -> dict[str, float]:
    """The engine's own write per point, the binding's conversion of its arguments included."""
    store, name = rv.store, "binding-cost"
    store.ensure_collection(name, store.schema(rv.collection))
    upsert = per_call_us(lambda: store.upsert(name, records), len(records))
    ids = [r.id for r in records]
    stamp = {"state": p.LIVE}
    set_payload = per_call_us(lambda: store.set_payload(name, ids, stamp, key=p.KEY), len(records))
    return {
        "upsert of a merged point (its conversion included)": upsert,
        "set_payload of one value": set_payload,
    }


def measure(n: int) -> dict[str, Any]:
    data = generate(n, 0.3, seed=0)
    tenants = np.where(data.labels >= 0, data.labels, np.arange(n))  # a group inside one tenant
    with tempfile.TemporaryDirectory() as tmp:
        settings = Settings()
        settings.storage.data_dir = Path(tmp)
        with Reverie.open(settings) as rv:
            rv.write(
                [
                    NewMemory(v, {"text": f"memory {i}", "user_id": f"user-{tenant % 100:03d}"}, i)
                    for i, (v, tenant) in enumerate(zip(data.vectors, tenants, strict=True))
                ]
            )
            rv.consolidate(full=True)
            live = list(rv.store.scroll(rv.collection, None, with_vectors=True, batch_size=4096))
            merged = [r for r in live if p.meta(r.payload).get("kind") == p.MERGED][:SAMPLE]
            originals = [r for r in live if p.meta(r.payload).get("kind") == p.ORIGINAL][:SAMPLE]
            archived = list(rv.store.scroll(rv.archive, None, with_vectors=True, batch_size=SAMPLE))[:SAMPLE]
            kinds = {"merged point": merged, "archive copy": archived, "live original": originals}
            return {
                "n": n,
                "points": {
                    kind: {
                        "values": round(float(np.mean([count_values(r.payload) for r in records])), 1),
                        "with_payload_us": round(points_us(records, True), 1),
                        "vector_only_us": round(points_us(records, False), 1),
                    }
                    for kind, records in kinds.items()
                },
                "values_us": {name: round(value_us(v), 2) for name, v in VALUES.items()},
                "engine_us": {k: round(v, 1) for k, v in engine_us(rv, merged).items()},
            }


def count_values(value: Any) -> int:
    """JSON values in a payload, objects and lists counted themselves too."""
    if isinstance(value, dict):
        return len(value) + sum(count_values(v) for v in value.values())
    if isinstance(value, list):
        return len(value) + sum(count_values(v) for v in value)
    return 0


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--n", type=int, default=20_000)
    configure_logging(LoggingSettings(level="warning"))
    result = measure(parser.parse_args().n)
    lines = [
        f"`bench/binding_cost.py --n {result['n']}` (qdrant-edge-py {version('qdrant-edge-py')}; "
        "the payloads a full pass wrote; µs a point, the best of 5):",
        "",
        "| point | payload values | built with its payload µs | with its vector alone µs |",
        "|---|---|---|---|",
        *(
            f"| {kind} | {x['values']} | {x['with_payload_us']} | {x['vector_only_us']} |"
            for kind, x in result["points"].items()
        ),
        "",
        "| one payload value | µs |",
        "|---|---|",
        *(f"| {name} | {us} |" for name, us in result["values_us"].items()),
        "",
        "| engine write, a point | µs |",
        "|---|---|",
        *(f"| {name} | {us} |" for name, us in result["engine_us"].items()),
    ]
    print("\n".join(lines))
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(result, indent=2))
    write_section(ROOT / "docs" / "benchmarks.md", "binding-cost", lines, "Benchmarks")


if __name__ == "__main__":
    main()
