"""Concurrency: agents create, rewrite and delete memories over HTTP while consolidation
runs every second; nothing acknowledged may be lost, left in an old version or merged
away after a rewrite, and nothing deleted may come back.

    .venv/bin/python bench/concurrency.py --agents 4 --seconds 60

Two phases against a fresh `reverie serve` each (embedded store): consolidation off,
then every second (merges applied in batches of one, so rewrites and deletes keep
landing on merges). Each agent owns a range of ids and sends one memory per request
(create 50%, rewrite 30%, delete 20%). Afterwards the daemon gets SIGTERM and the store
is checked against every acknowledged answer (bench/agents.py). Prints a table of
throughput and latency percentiles per operation, writes a section of
docs/reliability.md, bench/results/concurrency.json and docs/concurrency-latency.png.
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

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
from agents import OPS, Agent, check_agents, concepts  # noqa: E402
from crash_torture import daemon_env, settings_for, start_daemon  # noqa: E402
from report import pyplot, write_section  # noqa: E402

from reverie.memory import Reverie  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
PHASES = {"consolidation off": "86400", "consolidation every 1 s": "1"}


def phase(name: str, every: str, agents_n: int, seconds: float, work: Path) -> dict:
    env = {**daemon_env("edge", work), "REVERIE_SCHEDULER__CONSOLIDATE_EVERY": every}
    process, url = start_daemon(work, env)
    centres = concepts()
    agents = [Agent(i, centres) for i in range(agents_n)]
    stop = threading.Event()
    threads = [threading.Thread(target=a.run, args=(url, stop)) for a in agents]
    started = time.monotonic()
    for thread in threads:
        thread.start()
    while time.monotonic() - started < seconds:
        done = sum(len(v) for a in agents for v in a.latencies.values())
        print(f"\r{name}: {time.monotonic() - started:5.0f} s  {done} requests", end="", flush=True)
        time.sleep(1)
    stop.set()
    for thread in threads:
        thread.join()
    elapsed = time.monotonic() - started
    os.kill(process.pid, signal.SIGTERM)
    exit_status = process.wait(timeout=120)
    print()
    with Reverie.open(settings_for("edge", work)) as rv:
        problems = check_agents(rv, agents)
        runs = rv.run_log.runs(limit=1_000_000)
        merges = sum(r.summary.get("merges", 0) for r in runs if r.kind == "consolidate")
        releases = [r for r in runs if r.kind == "release"]
        stats = rv.stats()
    latencies = {op: [s for a in agents for s in a.latencies[op]] for op in OPS}
    return {
        "phase": name,
        "agents": agents_n,
        "seconds": round(elapsed, 1),
        "requests": sum(len(v) for v in latencies.values()),
        "per_op": {op: _percentiles(v) for op, v in latencies.items()},
        "latencies": {op: sorted(v) for op, v in latencies.items()},
        "failures": [f for a in agents for f in a.failures][:20],
        "failure_count": sum(len(a.failures) for a in agents),
        "consolidation_runs": sum(r.kind == "consolidate" for r in runs),
        "merges": merges,
        "release_runs": len(releases),
        "merges_undone_by_releases": sum(r.summary.get("undone", 0) for r in releases),
        "live_at_end": stats["live"],
        "exit_status": exit_status,
        "problems": problems,
    }


def _percentiles(seconds: list[float]) -> dict[str, float]:
    if not seconds:
        return {"count": 0}
    ms = np.asarray(seconds) * 1000
    return {
        "count": len(ms),
        "p50_ms": round(float(np.percentile(ms, 50)), 1),
        "p99_ms": round(float(np.percentile(ms, 99)), 1),
        "max_ms": round(float(ms.max()), 1),
    }


def report(results: list[dict], args: argparse.Namespace) -> None:
    lines = [
        f"`bench/concurrency.py --agents {args.agents} --seconds {args.seconds:g}` (embedded store, one "
        "memory per request, create 50% / update 30% / delete 20%; 2 cores shared by agents and daemon):",
        "",
        "| phase | requests/s | create p50 / p99 ms | update p50 / p99 ms | delete p50 / p99 ms "
        "| failed requests | runs | merges | merges undone by updates and deletes | problems |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in results:
        cells = [f"{r['per_op'][op].get('p50_ms', '-')} / {r['per_op'][op].get('p99_ms', '-')}" for op in OPS]
        lines.append(
            f"| {r['phase']} | {r['requests'] / r['seconds']:,.0f} | {' | '.join(cells)} "
            f"| {r['failure_count']} | {r['consolidation_runs']} | {r['merges']:,} "
            f"| {r['merges_undone_by_releases']:,} | {len(r['problems'])} |"
        )
    lines += ["", "![latency of each operation, with and without consolidation](concurrency-latency.png)"]
    write_section(ROOT / "docs" / "reliability.md", "concurrency", lines, "Reliability")
    print("\n".join(lines))
    plt = pyplot()

    fig, axes = plt.subplots(1, len(OPS), figsize=(11, 3.6), sharey=True)
    for ax, op in zip(axes, OPS, strict=True):
        for r in results:
            ms = np.asarray(r["latencies"][op]) * 1000
            if ms.size:
                ax.plot(ms, np.arange(1, ms.size + 1) / ms.size, label=r["phase"])
        ax.set(xscale="log", xlabel=f"{op} latency (ms)", title=op)
    axes[0].set_ylabel("fraction of requests")
    axes[0].legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(ROOT / "docs" / "concurrency-latency.png", dpi=110)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--agents", type=int, default=4)
    parser.add_argument("--seconds", type=float, default=60, help="per phase")
    args = parser.parse_args()
    results = []
    for name, every in PHASES.items():
        with tempfile.TemporaryDirectory() as tmp:
            results.append(phase(name, every, args.agents, args.seconds, Path(tmp)))
    out = ROOT / "bench" / "results" / "concurrency.json"
    out.write_text(json.dumps([{k: v for k, v in r.items() if k != "latencies"} for r in results], indent=2))
    report(results, args)
    bad = [r for r in results if r["problems"] or r["failure_count"] or r["exit_status"]]
    for r in bad:
        print(json.dumps({k: r[k] for k in ("phase", "problems", "failures", "exit_status")}, indent=2))
    sys.exit(1 if bad else 0)


if __name__ == "__main__":
    main()
