"""Write paths: the embedded store, the HTTP API under concurrent clients, text embedding.

    .venv/bin/python bench/write_speed.py [--n 50000] [--clients 1 4 8] [--batch 100 1000]
        [--formats json packed] [--consolidate-every 5] [--name write-speed]

- embedded store: memories/s through `Reverie.write` (validation included) into a fresh store;
- HTTP API: a real `reverie serve` on loopback, once it has loaded its models; each client
  thread posts batches of vectors until --n are written, as JSON floats (`POST /memories`)
  or packed float32 (`POST /memories/packed`, daemon/packed.py); memories/s overall and
  p50/p99 request latency.
  Each memory carries a short text and one of 100 tenants, as agents write them. With
  --consolidate-every S the daemon's scheduler consolidates every S seconds meanwhile (the
  runs it made are counted, with the memories not yet consolidated when the writes end and
  the seconds until they are: runs give way to writes, consolidation/pacing.py);
- embedding: texts/s of the default embedder on real short sentences
  (../shared/data/wordnet-sentences.txt.gz when present, else synthetic ones).
Prints a table and writes bench/results/NAME.json and docs/benchmarks.md's NAME section.
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
from datagen import generate  # noqa: E402
from report import write_section  # noqa: E402

from reverie.config import Settings  # noqa: E402
from reverie.daemon import packed  # noqa: E402
from reverie.daemon.registration import running_daemon  # noqa: E402
from reverie.inversion.embedders import Embedder  # noqa: E402
from reverie.memory import NewMemory, Reverie  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results"
SENTENCES = ROOT.parent / "shared" / "data" / "wordnet-sentences.txt.gz"
SHARE = "REVERIE_CONSOLIDATION__SHARE_WHILE_WRITING"  # set, the daemon's runs keep this share


def embedded(vectors: np.ndarray) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as tmp:
        settings = Settings()
        settings.storage.data_dir = Path(tmp)
        with Reverie.open(settings) as rv:
            started = time.perf_counter()
            rv.write([NewMemory(v, {"agent_id": "a1"}) for v in vectors])
            seconds = time.perf_counter() - started
    return {"memories": len(vectors), "per_s": round(len(vectors) / seconds)}


def over_http(
    vectors: np.ndarray, clients: int, batch: int, body_format: str, consolidate_every: int | None
) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as tmp:
        command = [sys.executable, "-m", "reverie.cli", "--data-dir", tmp, "serve", "--port", "0"]
        env = {
            **os.environ,
            "REVERIE_SCHEDULER__ENABLED": "true" if consolidate_every else "false",
            "REVERIE_SCHEDULER__CONSOLIDATE_EVERY": str(consolidate_every or 300),
            "REVERIE_SCHEDULER__MAINTAIN_EVERY": "3600",  # the index build is not what is measured
            "REVERIE_INVERSION__MODEL": "none",
            "REVERIE_LOGGING__LEVEL": "warning",
        }
        server = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            url = _wait_for(Path(tmp))
            _wait_for_models(url)
            batches = [(i, vectors[i : i + batch]) for i in range(0, len(vectors), batch)]
            latencies: list[float] = []
            lock = threading.Lock()

            def post(http: httpx.Client, start: int, rows: np.ndarray) -> httpx.Response:
                fields = [{"text": f"memory {start + i}"} for i in range(len(rows))]
                partition = {"user_id": f"user-{start // batch % 100}"}
                if body_format == "packed":
                    body = packed.pack(rows, fields, partition)
                    headers = {"content-type": packed.MEDIA_TYPE}
                    return http.post("/memories/packed", content=body, headers=headers)
                memories = [{**f, "vector": v} for f, v in zip(fields, rows.tolist(), strict=True)]
                return http.post("/memories", json={"memories": memories, "partition": partition})

            def client(mine: list[tuple[int, np.ndarray]]) -> None:
                with httpx.Client(base_url=url, timeout=120) as http:
                    for start, rows in mine:
                        started = time.perf_counter()
                        post(http, start, rows).raise_for_status()
                        with lock:
                            latencies.append(time.perf_counter() - started)

            threads = [threading.Thread(target=client, args=(batches[i::clients],)) for i in range(clients)]
            started = time.perf_counter()
            for t in threads:
                t.start()
            for t in threads:
                t.join()
            seconds = time.perf_counter() - started
            with httpx.Client(base_url=url, timeout=120) as http:
                runs = [r for r in http.get("/runs").json()["runs"] if r["kind"] == "consolidate"]
                backlog = http.get("/stats").json()["fresh"]
                caught_up = _caught_up(http) if consolidate_every else None
        finally:
            server.send_signal(signal.SIGTERM)
            server.wait(30)
    ms = np.array(latencies) * 1000
    return {
        "format": body_format,
        "clients": clients,
        "batch": batch,
        "per_s": round(len(vectors) / seconds),
        "p50_ms": round(float(np.percentile(ms, 50)), 1),
        "p99_ms": round(float(np.percentile(ms, 99)), 1),
        "consolidate_every": consolidate_every,
        "consolidations": len(runs),
        "fresh_at_end": backlog,
        "caught_up_s": caught_up,
    }


def _caught_up(http: httpx.Client, limit: float = 900.0) -> float | None:
    """Seconds after the last write until consolidation has adopted every memory written
    (runs give way to writes, consolidation/pacing.py, so they fall behind meanwhile);
    None if it has not within `limit`."""
    started = time.perf_counter()
    while time.perf_counter() - started < limit:
        if http.get("/stats").json()["fresh"] == 0:
            return round(time.perf_counter() - started, 1)
        time.sleep(0.5)
    return None


def _wait_for(data_dir: Path) -> str:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        daemon = running_daemon(data_dir)
        if daemon is not None:
            return daemon.url
        time.sleep(0.1)
    raise RuntimeError("reverie serve did not start")


def _wait_for_models(url: str) -> None:
    """The daemon loads its embedder in the background as it starts (torch's import and the
    model: seconds of both cores); writes measured meanwhile measure the load too."""
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        states = httpx.get(f"{url}/readyz").json()["models"].values()
        if not any(state in ("not loaded", "loading") for state in states):
            return
        time.sleep(0.2)
    raise RuntimeError("reverie serve did not load its models in 5 minutes")


def embedding(count: int) -> dict[str, Any]:
    if SENTENCES.exists():
        with gzip.open(SENTENCES, "rt", encoding="utf-8") as f:
            texts = [line.strip() for _, line in zip(range(count), f, strict=False)]
    else:
        texts = [f"memory number {i} about topic {i % 97}" for i in range(count)]
    embedder = Embedder("sentence-transformers/all-MiniLM-L6-v2")
    embedder.encode(texts[:64])  # load and warm up
    started = time.perf_counter()
    embedder.encode(texts)
    return {"texts": len(texts), "per_s": round(len(texts) / (time.perf_counter() - started))}


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--n", type=int, default=50_000)
    parser.add_argument("--clients", type=int, nargs="+", default=[1, 4, 8])
    parser.add_argument("--batch", type=int, nargs="+", default=[100])
    parser.add_argument("--texts", type=int, default=5000)
    parser.add_argument("--formats", nargs="+", choices=["json", "packed"], default=["json", "packed"])
    parser.add_argument("--consolidate-every", type=int, default=None, help="seconds; off by default")
    parser.add_argument(
        "--name",
        default="write-speed",
        help="results go to bench/results/NAME.json and docs/benchmarks.md's NAME section "
        "(the sustained run: write-speed-sustained)",
    )
    args = parser.parse_args()
    vectors = generate(args.n).vectors
    result: dict[str, Any] = {"embedded": embedded(vectors)}
    print(f"embedded store: {result['embedded']['per_s']:,} memories/s ({args.n:,} written)")
    result["http"] = []
    for body_format in args.formats:
        for batch in args.batch:
            for clients in args.clients:
                row = over_http(vectors, clients, batch, body_format, args.consolidate_every)
                result["http"].append(row)
                print(
                    f"HTTP API, {body_format}, {clients} client(s), batches of {batch}: {row['per_s']:,} "
                    f"memories/s, p50 {row['p50_ms']} ms, p99 {row['p99_ms']} ms per request, "
                    f"{row['consolidations']} consolidation runs meanwhile, {row['fresh_at_end']:,} not yet "
                    f"consolidated at the end (caught up {row['caught_up_s']} s later)"
                )
    result["embedding"] = embedding(args.texts)
    print(f"embedding (all-MiniLM-L6-v2, CPU): {result['embedding']['per_s']:,} texts/s")
    share = float(os.environ.get(SHARE, Settings().consolidation.share_while_writing))
    result["share_while_writing"] = share
    lines = [
        (f"`{SHARE}={os.environ[SHARE]} " if SHARE in os.environ else "`")
        + f"bench/write_speed.py --n {args.n} --clients {' '.join(map(str, args.clients))} --batch "
        f"{' '.join(map(str, args.batch))}"
        + (f" --formats {' '.join(args.formats)}" if args.formats != ["json", "packed"] else "")
        + (f" --consolidate-every {args.consolidate_every}" if args.consolidate_every else "")
        + (f" --name {args.name}`" if args.name != "write-speed" else "`")
        + " (2 cores; over HTTP each memory a vector, a short text and one of 100 tenants"
        + (f"; runs keep at least {share} of the time while agents write" if args.consolidate_every else "")
        + "):",
        "",
        "| path | memories or texts / s | p50 ms | p99 ms | consolidation runs meanwhile "
        "| not consolidated at the end | caught up s later |",
        "|---|---|---|---|---|---|---|",
        f"| embedded store, `Reverie.write` | {result['embedded']['per_s']:,} | | | | | |",
        *(
            f"| HTTP API, {r['format']}, {r['clients']} client(s), batches of {r['batch']} | "
            f"{r['per_s']:,} | {r['p50_ms']} | {r['p99_ms']} | {r['consolidations']} | "
            f"{r['fresh_at_end']:,} | {r['caught_up_s'] if r['caught_up_s'] is not None else ''} |"
            for r in result["http"]
        ),
        f"| text embedding, all-MiniLM-L6-v2 on CPU | {result['embedding']['per_s']:,} | | | | | |",
    ]
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / f"{args.name}.json").write_text(json.dumps(result, indent=2))
    write_section(ROOT / "docs" / "benchmarks.md", args.name, lines, "Benchmarks")


if __name__ == "__main__":
    main()
