"""Soak: a daemon under mixed load for a long while; its memory and open files must stay
flat, no request may fail, and every invariant must hold at the end.

    .venv/bin/python bench/soak.py --minutes 30

`reverie serve` (embedded store, consolidation every 2 s) takes near-duplicate writes from
one writer thread at a bounded rate (so the data stops growing and memory can level off)
and searches and reads from another as fast as it goes, over HTTP. Every 10 s its resident
memory and open file descriptors are sampled from /proc. At the end it is stopped with
SIGTERM (it must exit 0) and the invariants are checked with every acknowledged write as
must-hold. Writes a section of docs/reliability.md, bench/results/soak.json and a plot.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import tempfile
import threading
import time
from pathlib import Path

import httpx
import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
from crash_torture import BATCH, Writer, daemon_env, settings_for, start_daemon  # noqa: E402
from report import write_section  # noqa: E402

from reverie.memory import Reverie  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent


def read_and_search(url: str, writer: Writer, stop: threading.Event, errors: list[str], counts: dict) -> None:
    rng = np.random.default_rng(1)
    with httpx.Client(base_url=url, timeout=30) as client:
        while not stop.is_set():
            if not writer.acknowledged:
                time.sleep(0.1)
                continue
            query = writer.centres[rng.integers(0, len(writer.centres))].tolist()
            for response in (
                client.post("/search", json={"vector": query, "k": 5}),
                client.get(f"/memories/{rng.choice(sorted(writer.acknowledged)[-500:])}"),
                client.get("/stats"),
            ):
                counts["reads"] += 1
                if response.status_code != 200:
                    errors.append(
                        f"{response.request.url.path}: {response.status_code} {response.text[:200]}"
                    )


def sample(pid: int) -> tuple[int, int]:
    status = Path(f"/proc/{pid}/status").read_text()
    rss = next(int(line.split()[1]) // 1024 for line in status.splitlines() if line.startswith("VmRSS"))
    return rss, len(os.listdir(f"/proc/{pid}/fd"))


def soak(minutes: float, write_rate: float, work: Path) -> dict:
    env = {**daemon_env("edge", work), "REVERIE_SCHEDULER__CONSOLIDATE_EVERY": "2"}
    process, url = start_daemon(work, env)
    writer, stop, errors, counts = Writer(0), threading.Event(), [], {"reads": 0}
    threads = [
        threading.Thread(target=writer.write_until, args=(url, stop, BATCH / write_rate)),
        threading.Thread(target=read_and_search, args=(url, writer, stop, errors, counts)),
    ]
    for thread in threads:
        thread.start()
    samples: list[tuple[float, int, int, int]] = []  # seconds, RSS MiB, open files, acknowledged
    started = time.monotonic()
    while time.monotonic() - started < minutes * 60:
        rss, files = sample(process.pid)
        samples.append((round(time.monotonic() - started), rss, files, len(writer.acknowledged)))
        print(
            f"\r{samples[-1][0]:>5} s  RSS {rss} MiB  files {files}  written {samples[-1][3]}",
            end="",
            flush=True,
        )
        time.sleep(10)
    stop.set()
    for thread in threads:
        thread.join()
    os.kill(process.pid, signal.SIGTERM)
    exit_status = process.wait(timeout=120)
    print()
    with Reverie.open(settings_for("edge", work)) as rv:
        problems = rv.invariant_problems(must_hold=writer.acknowledged, may_hold=writer.attempted)
        stats = rv.stats()
        runs = rv.run_log.runs(limit=1_000_000)
    return {
        "minutes": minutes,
        "exit_status": exit_status,
        "acknowledged": len(writer.acknowledged),
        "reads": counts["reads"],
        "failed_requests": errors[:20],
        "failed_request_count": len(errors),
        "runs": len(runs),
        "runs_failed": sum(r.status == "failed" for r in runs),  # "stopped": the SIGTERM at the end
        "live": stats["live"],
        "problems": problems,
        "samples": samples,
    }


def report(result: dict, args: argparse.Namespace) -> None:
    samples = result["samples"]
    half = samples[len(samples) // 2 :]
    rss = f"{samples[0][1]} / {min(s[1] for s in half)}-{max(s[1] for s in half)} / {samples[-1][1]}"
    files = f"{samples[0][2]} / {max(s[2] for s in samples)} / {samples[-1][2]}"
    lines = [
        f"`bench/soak.py --minutes {args.minutes:g} --write-rate {args.write_rate:g}` (embedded store, "
        "consolidation every 2 s, searches and reads as fast as one client goes; 2 cores):",
        "",
        "| minutes | acknowledged writes | reads and searches | failed requests | runs (failed) "
        "| RSS MiB first / second-half min-max / last | open files first / max / last | exit | problems |",
        "|---|---|---|---|---|---|---|---|---|",
        f"| {args.minutes:g} | {result['acknowledged']:,} | {result['reads']:,} "
        f"| {result['failed_request_count']} | {result['runs']} ({result['runs_failed']}) | {rss} | {files} "
        f"| {result['exit_status']} | {len(result['problems'])} |",
        "",
        "![daemon memory and open files during the soak](soak.png)",
    ]
    write_section(ROOT / "docs" / "reliability.md", "soak", lines, "Reliability")
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    seconds, rss, files, written = zip(*samples, strict=True)
    fig, ax = plt.subplots(figsize=(7, 4))
    ax.plot([s / 60 for s in seconds], rss, label="RSS MiB")
    ax.plot([s / 60 for s in seconds], files, label="open files")
    ax.set(xlabel="minutes", title=f"reverie serve under load ({written[-1]:,} memories written)")
    ax.legend()
    fig.tight_layout()
    fig.savefig(ROOT / "docs" / "soak.png", dpi=110)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--minutes", type=float, default=30)
    parser.add_argument(
        "--write-rate", type=float, default=40, help="memories/s: bounded, so the store stops growing"
    )
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        result = soak(args.minutes, args.write_rate, Path(tmp))
    (ROOT / "bench" / "results" / "soak.json").write_text(json.dumps(result, indent=2))
    report(result, args)
    print(json.dumps({k: v for k, v in result.items() if k != "samples"}, indent=2))
    sys.exit(1 if result["problems"] or result["failed_request_count"] or result["exit_status"] else 0)


if __name__ == "__main__":
    main()
