"""What the background `invert` job sustains while the daemon is under load.

    .venv/bin/python bench/invert_throughput.py [--minutes 8] [--write-rate 4] [--search-rate 10] \
        [--read-rate 0.2]

`reverie serve` (embedded store, the default MiniLM embedder and builtin inverter,
consolidation every 10 s, the invert job every 5 s with no settle time) takes text writes
from one agent (the three wordings of each OT verse in turn, so merges keep coming, each
with a label to read back) and searches from another, over HTTP; a third reads a merged
memory that still shows its label (found by a search), as an agent reading it the first
time would: that read inverts it, and its latency is the first-read time. Every 15 s: merged points
inverted so far (`reverie_inverted_points_total`), the backlog the job has not tried yet, and
the agents' latencies. Reports vectors inverted per minute over the second half (after
warm-up), with the search latency meanwhile. Writes the section `invert-throughput` of
docs/inversion.md, bench/results/invert-throughput.json and docs/invert-throughput.png.
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path

import httpx
import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
from crash_torture import start_daemon, stop_under_load  # noqa: E402
from report import pyplot, write_section  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
DATA = ROOT.parent / "shared/data/bible-ot-paraphrases.jsonl.gz"
WORDINGS = ("web", "kjv", "asv")


def wordings() -> list[str]:
    """Verse after verse, each in three translations: near-duplicates arrive in threes."""
    texts = []
    with gzip.open(DATA, "rt") as f:
        for line in f:
            row = json.loads(line)["texts"]
            if all(row.get(w, "").strip() for w in WORDINGS) and len(row["web"].split()) <= 30:
                texts += [row[w] for w in WORDINGS]
    return texts


def paced(stop: threading.Event, rate: float, step: Callable[[], None]) -> None:
    pause = 1.0 / rate
    while not stop.is_set():
        started = time.monotonic()
        step()
        stop.wait(max(0.0, pause - (time.monotonic() - started)))


def inverted(client: httpx.Client) -> float:
    for line in client.get("/metrics").text.splitlines():
        if line.startswith("reverie_inverted_points_total "):
            return float(line.split()[1])
    return 0.0


def run(minutes: float, write_rate: float, search_rate: float, read_rate: float, work: Path) -> dict:
    env = {
        **os.environ,
        "HF_HUB_OFFLINE": "1",
        "REVERIE_SCHEDULER__CONSOLIDATE_EVERY": "10",
        "REVERIE_SCHEDULER__INVERT_EVERY": "5",
        "REVERIE_INVERSION__SETTLE_SECONDS": "0",
    }
    process, url = start_daemon(work, env)
    texts = iter(wordings())
    latencies: dict[str, list[float]] = {"write": [], "search": [], "first read": []}
    stop = threading.Event()

    def call(kind: str, path: str, body: dict) -> None:
        started = time.perf_counter()
        client.post(path, json=body).raise_for_status()
        latencies[kind].append(time.perf_counter() - started)

    def first_read() -> None:
        hits = client.post("/search", json={"text": next(texts), "k": 10}).json()["hits"]
        labelled = [h["id"] for h in hits if h["text_source"] == "label"]
        if labelled:
            started = time.perf_counter()
            client.get(f"/memories/{labelled[0]}").raise_for_status()
            latencies["first read"].append(time.perf_counter() - started)

    samples: list[tuple[float, float, int, int]] = []  # s, inverted, not yet tried, merged
    with httpx.Client(base_url=url, timeout=120) as client:
        deadline = time.monotonic() + 300
        while client.get("/readyz").json()["models"].get("inverter", "").startswith(("not", "loading")):
            if time.monotonic() > deadline:
                raise RuntimeError("the inverter did not load within 5 minutes")
            time.sleep(1)
        state = client.get("/readyz").json()["models"]["inverter"]
        if not state.startswith("loaded"):
            raise RuntimeError(f"inverter {state}")
        threads = [
            threading.Thread(
                target=paced,
                args=(
                    stop,
                    write_rate,
                    lambda: call("write", "/memories", {"memories": [{"text": next(texts)}]}),
                ),
            ),
            threading.Thread(
                target=paced,
                args=(
                    stop,
                    search_rate,
                    lambda: call("search", "/search", {"text": "the LORD spoke", "k": 5}),
                ),
            ),
            threading.Thread(target=paced, args=(stop, read_rate, first_read)),
        ]
        for thread in threads:
            thread.start()
        started = time.monotonic()
        while time.monotonic() - started < minutes * 60:
            stats = client.get("/stats").json()
            samples.append(
                (round(time.monotonic() - started), inverted(client), stats["text_backlog"], stats["merged"])
            )
            print(
                f"\r{samples[-1][0]:>5} s  inverted {samples[-1][1]:.0f}  backlog {samples[-1][2]}",
                end="",
                flush=True,
            )
            time.sleep(15)
        stop_under_load(process, stop, threads)
    print()
    half = [s for s in samples if s[0] >= samples[-1][0] / 2]
    per_minute = (half[-1][1] - half[0][1]) / max((half[-1][0] - half[0][0]) / 60, 1e-9)
    search = np.array(latencies["search"]) * 1000
    reads = np.array(latencies["first read"] or [np.nan])
    return {
        "minutes": minutes,
        "write_rate": write_rate,
        "search_rate": search_rate,
        "writes": len(latencies["write"]),
        "searches": len(search),
        "inverted_per_minute": round(per_minute, 1),
        "inverted": samples[-1][1],
        "merged_last": samples[-1][3],
        "backlog_last": samples[-1][2],
        "search_p50_ms": round(float(np.percentile(search, 50)), 1),
        "search_p99_ms": round(float(np.percentile(search, 99)), 1),
        "first_reads": len(latencies["first read"]),
        "first_read_p50_s": round(float(np.percentile(reads, 50)), 2),
        "first_read_p90_s": round(float(np.percentile(reads, 90)), 2),
        "samples": samples,
    }


def report(result: dict, args: argparse.Namespace) -> None:
    lines = [
        f"`bench/invert_throughput.py --minutes {args.minutes:g} --write-rate {args.write_rate:g} "
        f"--search-rate {args.search_rate:g} --read-rate {args.read_rate:g}` (2 cores; text writes embedded "
        "by the daemon, three wordings of each verse in turn; consolidation every 10 s; the invert job every "
        "5 s, no settle time; first reads of merged memories that still showed their labels):",
        "",
        "| minutes | writes | searches | search p50 / p99 ms | first reads | first read p50 / p90 s | "
        "merged points at the end | inverted | inverted per minute (second half) "
        "| not yet tried at the end |",
        "|---|---|---|---|---|---|---|---|---|---|",
        f"| {args.minutes:g} | {result['writes']:,} | {result['searches']:,} | {result['search_p50_ms']} / "
        f"{result['search_p99_ms']} | {result['first_reads']} | {result['first_read_p50_s']} / "
        f"{result['first_read_p90_s']} | {result['merged_last']} | {result['inverted']:.0f} | "
        f"{result['inverted_per_minute']} | {result['backlog_last']} |",
        "",
        "![inverted points and backlog under load](invert-throughput.png)",
    ]
    write_section(ROOT / "docs" / "inversion.md", "invert-throughput", lines, "Inversion")
    plt = pyplot()

    seconds, done, backlog, merged = zip(*result["samples"], strict=True)
    fig, ax = plt.subplots(figsize=(7, 4))
    minutes = [s / 60 for s in seconds]
    ax.plot(minutes, done, label="merged points inverted")
    ax.plot(minutes, backlog, label="not yet tried by the job")
    ax.plot(minutes, merged, label="merged points")
    ax.set(xlabel="minutes", title="the invert job under write and search load")
    ax.legend()
    fig.tight_layout()
    fig.savefig(ROOT / "docs" / "invert-throughput.png", dpi=110)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--minutes", type=float, default=8)
    parser.add_argument("--write-rate", type=float, default=4, help="text writes per second")
    parser.add_argument("--search-rate", type=float, default=10, help="searches per second")
    parser.add_argument(
        "--read-rate", type=float, default=0.2, help="first reads of merged memories a second"
    )
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        result = run(args.minutes, args.write_rate, args.search_rate, args.read_rate, Path(tmp))
    (ROOT / "bench" / "results" / "invert-throughput.json").write_text(json.dumps(result, indent=1) + "\n")
    report(result, args)
    print(json.dumps({k: v for k, v in result.items() if k != "samples"}, indent=1))


if __name__ == "__main__":
    main()
