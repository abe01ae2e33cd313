"""Soak: a daemon under mixed load for a long while; its memory and open files must stay
flat, no request may fail, and every invariant must hold at the end.

    .venv/bin/python bench/soak.py --minutes 30

`reverie serve` (embedded store, consolidation every 2 s) takes creates, rewrites and
deletes of near-duplicate memories from two agents at a bounded rate (each agent holds at
most `--keep` memories and deletes as often as it creates past that, so the data stops
growing and memory can level off) and searches and reads from a third client as fast as
it goes, over HTTP. Every 10 s its resident memory and open file descriptors are sampled
from /proc. At the end it is stopped with SIGTERM (it must exit 0) and the store is
checked against every acknowledged answer (bench/agents.py). Writes a section of
docs/reliability.md, bench/results/soak.json and a plot.

With history bounds on (`--runs-keep-max`, `--archive-keep-days`) it is the bounded soak
(bench/results/soak-bounded.json, docs/soak-bounded.png): the samples add the archive's
copies (GET /stats) and the run log's rows (read-only from runs.sqlite), and the checker
knows that a memory last written more than `--archive-keep-days` before the end may have
been merged and then dropped from the archive by design (its merged point counts it).
"""

from __future__ import annotations

import argparse
import json
import os
import sqlite3
import sys
import tempfile
import threading
import time
from pathlib import Path

import httpx
import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
from agents import Agent, check_agents, concepts  # noqa: E402
from crash_torture import daemon_env, settings_for, start_daemon, stop_under_load  # noqa: E402
from report import pyplot, write_section  # noqa: E402

from reverie.memory import Reverie  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
DROPPED_HINT = "archive.keep_days"  # in a 404 for an original the archive's bound dropped


def read_and_search(
    url: str,
    agents: list[Agent],
    stop: threading.Event,
    errors: list[str],
    counts: dict,
    keep_seconds: float | None = None,
) -> None:
    """Searches, reads of the agents' memories and stats, as fast as one client goes. A
    read of a memory written more than `keep_seconds` ago (archive.keep_days) may find its
    original dropped by design: counted apart when the answer says so."""
    rng = np.random.default_rng(1)
    with httpx.Client(base_url=url, timeout=30) as client:
        while not stop.is_set():
            agent = agents[rng.integers(0, len(agents))]
            if not agent.versions:
                time.sleep(0.1)
                continue
            query = agent.centres[rng.integers(0, len(agent.centres))].tolist()
            point_id = int(rng.choice(list(agent.versions)))
            for response in (
                client.post("/search", json={"vector": query, "k": 5}),
                client.get(f"/memories/{point_id}"),
                client.get("/stats"),
            ):
                counts["reads"] += 1
                if response.status_code == 404 and point_id not in agent.versions:
                    continue  # deleted by its agent while this read was on its way
                if response.status_code == 404 and _dropped(response, agent, point_id, keep_seconds):
                    counts["dropped_reads"] += 1
                    continue
                if response.status_code != 200:
                    errors.append(
                        f"{response.request.url.path}: {response.status_code} {response.text[:200]}"
                    )


def _dropped(response: httpx.Response, agent: Agent, point_id: int, keep_seconds: float | None) -> bool:
    if keep_seconds is None or DROPPED_HINT not in response.text:
        return False
    return time.time() - agent.written_at.get(point_id, time.time()) > keep_seconds


def sample(pid: int) -> tuple[int, int, int]:
    """Resident MiB, of it anonymous (the heap: what a leak grows; the rest is the engine's
    mapped files, which follow the data), and open file descriptors."""
    status = dict(line.split(":", 1) for line in Path(f"/proc/{pid}/status").read_text().splitlines())
    rss, anon = (int(status[key].split()[0]) // 1024 for key in ("VmRSS", "RssAnon"))
    return rss, anon, len(os.listdir(f"/proc/{pid}/fd"))


def disk(work: Path) -> tuple[int, float]:
    """The data directory's size and the run log's (with its write-ahead log), MiB."""
    total = sum(f.stat().st_size for f in work.rglob("*") if f.is_file())
    runs = sum(f.stat().st_size for f in work.glob("data/runs.sqlite*"))
    return total // 2**20, round(runs / 2**20, 1)


def history(client: httpx.Client, work: Path) -> tuple[int, int]:
    """The archive's copies (the daemon's stats) and the run log's rows, runs and merges
    (read beside the daemon: SQLite's write-ahead log lets a reader in)."""
    archived = client.get("/stats").json()["archived"]
    with sqlite3.connect(f"file:{work / 'data' / 'runs.sqlite'}?mode=ro", uri=True, timeout=30) as db:
        rows = sum(db.execute(f"SELECT count(*) FROM {table}").fetchone()[0] for table in ("runs", "merges"))
    return archived, rows


def soak(args: argparse.Namespace, work: Path) -> dict:
    minutes, write_rate, keep = args.minutes, args.write_rate, args.keep
    env = {
        **daemon_env("edge", work),
        "REVERIE_SCHEDULER__CONSOLIDATE_EVERY": "2",
        "REVERIE_SCHEDULER__MAINTAIN_EVERY": str(args.maintain_every),
    }
    if args.runs_keep_max is not None:
        env["REVERIE_RUNS__KEEP_MAX"] = str(args.runs_keep_max)
    if args.archive_keep_days is not None:
        env["REVERIE_ARCHIVE__KEEP_DAYS"] = str(args.archive_keep_days)
    process, url = start_daemon(work, env)
    centres = concepts()
    agents = [Agent(i, centres, keep=keep) for i in range(2)]
    stop, errors, counts = threading.Event(), [], {"reads": 0, "dropped_reads": 0}
    threads = [threading.Thread(target=a.run, args=(url, stop, len(agents) / write_rate)) for a in agents]
    keep_seconds = None if args.archive_keep_days is None else args.archive_keep_days * 86_400
    threads.append(
        threading.Thread(target=read_and_search, args=(url, agents, stop, errors, counts, keep_seconds))
    )
    for thread in threads:
        thread.start()
    # s, RSS, anon MiB, open files, writes+deletes, data dir MiB, run log MiB, archive copies, run log rows
    samples: list[tuple[float, int, int, int, int, int, float, int, int]] = []
    started = time.monotonic()
    with httpx.Client(base_url=url, timeout=60) as client:
        while time.monotonic() - started < minutes * 60:
            rss, anon, files = sample(process.pid)
            requests = sum(len(v) for a in agents for v in a.latencies.values())
            now = round(time.monotonic() - started)
            samples.append((now, rss, anon, files, requests, *disk(work), *history(client, work)))
            print(
                f"\r{now:>5} s  RSS {rss} MiB (anon {anon})  files {files}  requests {requests}  "
                f"disk {samples[-1][5]} MiB (run log {samples[-1][6]} MiB, {samples[-1][8]:,} rows)  "
                f"archive {samples[-1][7]:,}",
                end="",
                flush=True,
            )
            time.sleep(10)
    exit_status = stop_under_load(process, stop, threads)
    print()
    with Reverie.open(settings_for("edge", work)) as rv:
        problems = check_agents(
            rv, agents, dropped_before=None if keep_seconds is None else time.time() - keep_seconds
        )
        stats = rv.stats()
        runs = rv.run_log.runs(limit=1_000_000)
    return {
        "minutes": minutes,
        "exit_status": exit_status,
        "writes_and_deletes": samples[-1][4],
        # a delete of an original archive.keep_days dropped answers 404 saying so: by design
        "failed_writes": [f for a in agents for f in a.failures if DROPPED_HINT not in f][:20],
        "failed_write_count": sum(DROPPED_HINT not in f for a in agents for f in a.failures),
        "deletes_of_dropped_originals": sum(DROPPED_HINT in f for a in agents for f in a.failures),
        "reads": counts["reads"],
        "reads_of_dropped_originals": counts["dropped_reads"],
        "failed_requests": errors[:20],
        "failed_request_count": len(errors),
        "runs": sum(r.kind == "consolidate" for r in runs),
        "release_runs": sum(r.kind == "release" for r in runs),  # a rewrite or delete undid merges
        "runs_failed": sum(r.status == "failed" for r in runs),  # "stopped": the SIGTERM at the end
        "live": stats["live"],
        "problems": problems,
        "samples": samples,
    }


def bounded(args: argparse.Namespace) -> bool:
    return args.runs_keep_max is not None or args.archive_keep_days is not None


def report(result: dict, args: argparse.Namespace) -> None:
    """The table and the plot, into docs/reliability.md (the bounded soak: its own section
    and plot, with the archive and the run log beside memory and disk)."""
    section, plot = ("soak-bounded", "soak-bounded.png") if bounded(args) else ("soak", "soak.png")
    samples = result["samples"]
    half = samples[len(samples) // 2 :]
    rss, anon = (
        f"{samples[0][k]} / {min(s[k] for s in half)}-{max(s[k] for s in half)} / {samples[-1][k]}"
        for k in (1, 2)
    )
    files, data, runs, archived, rows = (
        f"{samples[0][k]:,} / {max(s[k] for s in samples):,} / {samples[-1][k]:,}" for k in (3, 5, 6, 7, 8)
    )
    failed = result["failed_request_count"] + result["failed_write_count"]
    lines = [
        f"`{result['command']}` "
        "(embedded store, creates 50% / updates 30% / deletes 20% from two agents, each holding at most "
        f"{args.keep} memories, "
        f"consolidation every 2 s, maintenance every {args.maintain_every} s, searches and reads as fast "
        "as one client goes; 2 cores):",
        "",
        "| minutes | writes and deletes (deletes of dropped originals) | reads and searches (of dropped "
        "originals) | failed requests "
        "| runs (failed) | releases "
        "| RSS MiB first / second-half min-max / last | of it anonymous (the heap), same | "
        "open files first / max / last | data dir MiB, same | run log MiB, same | run log rows, same "
        "| archive copies, same | exit | problems |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
        f"| {args.minutes:g} | {result['writes_and_deletes']:,} ({result['deletes_of_dropped_originals']}) "
        f"| {result['reads']:,} ({result['reads_of_dropped_originals']:,}) | {failed} "
        f"| {result['runs']} ({result['runs_failed']}) | {result['release_runs']:,} | {rss} | {anon} "
        f"| {files} | {data} | {runs} | {rows} | {archived} | {result['exit_status']} "
        f"| {len(result['problems'])} |",
        "",
        f"![daemon memory, open files, disk, archive and run log during the soak]({plot})",
    ]
    write_section(ROOT / "docs" / "reliability.md", section, lines, "Reliability")
    plt = pyplot()

    seconds, rss, anon, files, written, data, runs, archived, rows = zip(*samples, strict=True)
    minutes = [s / 60 for s in seconds]
    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4))
    left.plot(minutes, rss, label="RSS MiB")
    left.plot(minutes, anon, label="of it anonymous MiB")
    left.plot(minutes, files, label="open files")
    left.plot(minutes, data, label="data dir MiB")
    left.plot(minutes, runs, label="run log MiB")
    left.set(xlabel="minutes", title=f"reverie serve under load ({written[-1]:,} writes and deletes)")
    left.legend()
    right.plot(minutes, archived, label="archive copies")
    right.plot(minutes, rows, label="run log rows (runs and merges)")
    right.set(xlabel="minutes", title="history\n" + (_bounds(args) or "unbounded"))
    right.legend()
    fig.tight_layout()
    fig.savefig(ROOT / "docs" / plot, dpi=110)


def _bounds(args: argparse.Namespace) -> str:
    bounds = []
    if args.runs_keep_max is not None:
        bounds.append(f"runs.keep_max = {args.runs_keep_max}")
    if args.archive_keep_days is not None:
        bounds.append(
            f"archive.keep_days = {args.archive_keep_days:g} ({args.archive_keep_days * 86_400:.0f} s)"
        )
    return ", ".join(bounds)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--minutes", type=float, default=30)
    parser.add_argument(
        "--write-rate", type=float, default=40, help="writes and deletes per second, all agents together"
    )
    parser.add_argument("--keep", type=int, default=1_000, help="memories each agent holds at most")
    parser.add_argument(
        "--maintain-every",
        type=int,
        default=300,
        help="seconds between storage maintenance (scheduler.maintain_every, whose default it is)",
    )
    parser.add_argument("--runs-keep-max", type=int, help="runs.keep_max for the daemon (bounds the run log)")
    parser.add_argument(
        "--archive-keep-days", type=float, help="archive.keep_days for the daemon (bounds the archive)"
    )
    args = parser.parse_args()
    flags = [f"--{k.replace('_', '-')} {v:g}" for k, v in vars(args).items() if v is not None]
    with tempfile.TemporaryDirectory() as tmp:
        result = soak(args, Path(tmp))
    result["command"] = "bench/soak.py " + " ".join(flags)
    name = "soak-bounded.json" if bounded(args) else "soak.json"
    (ROOT / "bench" / "results" / name).write_text(json.dumps(result, indent=2))
    report(result, args)
    print(json.dumps({k: v for k, v in result.items() if k != "samples"}, indent=2))
    failed = result["failed_request_count"] + result["failed_write_count"]
    sys.exit(1 if result["problems"] or failed or result["exit_status"] else 0)


if __name__ == "__main__":
    main()
