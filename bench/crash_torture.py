"""Crash torture: SIGKILL a daemon at random moments while agents write and consolidation
runs every second, restart, and check every store invariant after each kill.

    .venv/bin/python bench/crash_torture.py --kills 200 [--store edge|local] [--seed 0]

Each cycle starts `reverie serve` (a real subprocess on a loopback port), writes batches
of near-duplicate vectors over HTTP from a writer thread (an id counts as acknowledged
once its batch got 200) while two agents create, update and delete single memories
(bench/agents.py), and kills the daemon with SIGKILL after a random 0.2-4 s.
Then the invariants (reverie.consolidation.invariants): every acknowledged memory is
live or archived under a live merged point, in its last acknowledged version; every
acknowledged delete is gone; nothing nobody wrote appears; live weights sum to the
originals covered; nothing in flight; the run log agrees with the store.
Recovery alternates between the two ways it runs in production: on even kills this
process opens the storage and recovers (as `reverie consolidate` would); on odd kills a
fresh daemon starts (it recovers before listening), is killed again once ready, and the
check runs without recovering, so it sees what the daemon's own recovery left.
Merges are applied in batches of one, so kills land inside merges. --store local runs
the same over qdrant-client's local mode on disk. Writes bench/results/crash-torture-<store>.json.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import httpx
import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
from agents import Agent, check_agents  # noqa: E402
from report import write_section  # noqa: E402

from reverie.config import Settings  # noqa: E402
from reverie.daemon.registration import running_daemon  # noqa: E402
from reverie.memory import Reverie  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
DIM, CENTRES, BATCH = 32, 64, 8
AGENTS = 2  # beside the bulk writer: one memory per request, updates and deletes too


@dataclass
class Tally:
    kills: int = 0
    acknowledged: int = 0  # the bulk writer's
    agent_requests: int = 0  # the agents' answered creates, updates and deletes
    agent_deletes: int = 0
    attempted: int = 0
    recovered: dict[str, int] = field(default_factory=dict)  # this process's recoveries, summed
    runs: int = 0
    releases: int = 0  # runs that undid merges for an update or delete
    runs_interrupted: int = 0  # killed mid-run
    merges_settled_by_recovery: int = 0  # killed mid-merge: finished or voided by recovery
    problems: list[str] = field(default_factory=list)
    live: int = 0
    merged: int = 0
    seconds: float = 0.0


class Writer:
    """Near-duplicate memories with increasing ids, posted in batches over HTTP."""

    def __init__(self, seed: int) -> None:
        self.rng = np.random.default_rng(seed)
        centres = self.rng.normal(size=(CENTRES, DIM))
        self.centres = centres / np.linalg.norm(centres, axis=1, keepdims=True)
        self.next_id = 0
        self.acknowledged: set[int] = set()
        self.attempted: set[int] = set()

    def batch(self) -> tuple[list[int], list[dict[str, Any]]]:
        ids = list(range(self.next_id, self.next_id + BATCH))
        self.next_id += BATCH
        centres = self.centres[self.rng.integers(0, CENTRES, BATCH)]
        vectors = centres + self.rng.normal(scale=0.05 / np.sqrt(DIM), size=(BATCH, DIM))
        payload = {"agent": "torture"}
        body = [
            {"id": i, "vector": v.tolist(), "payload": payload} for i, v in zip(ids, vectors, strict=True)
        ]
        return ids, body

    def write_until(self, url: str, stop: threading.Event, pause: float = 0.0) -> None:
        """Post batches until `stop` (or the daemon dies), `pause` seconds apart."""
        with httpx.Client(base_url=url, timeout=10) as client:
            while not stop.wait(pause):
                ids, body = self.batch()
                self.attempted.update(ids)
                try:
                    response = client.post("/memories", json={"memories": body})
                except httpx.HTTPError:
                    return  # the daemon is gone: this batch may or may not have landed
                if response.status_code == 200:
                    self.acknowledged.update(ids)


def daemon_env(store: str, work: Path) -> dict[str, str]:
    env = {
        **os.environ,
        "REVERIE_SCHEDULER__CONSOLIDATE_EVERY": "1",
        "REVERIE_CONSOLIDATION__APPLY_BATCH": "1",
        # agents write vectors: no embedder needed (a missing model fails fast, in the background)
        "REVERIE_EMBEDDER__MODEL": str(work / "no-embedder"),
        "REVERIE_INVERSION__MODEL": "none",  # nor an inverter: labels
        "HF_HUB_OFFLINE": "1",
    }
    if store == "local":
        env["REVERIE_STORAGE__URL"] = f"file:{work / 'qdrant-local'}"
    return env


def settings_for(store: str, work: Path) -> Settings:
    settings = Settings()
    settings.storage.data_dir = work / "data"
    if store == "local":
        settings.storage.url = f"file:{work / 'qdrant-local'}"
    return settings


def start_daemon(work: Path, env: dict[str, str]) -> tuple[subprocess.Popen[bytes], str]:
    command = [sys.executable, "-m", "reverie.cli", "--data-dir", str(work / "data"), "serve", "--port", "0"]
    log = (work / "daemon.log").open("ab")
    process = subprocess.Popen(command, env=env, stdout=log, stderr=log)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"daemon exited with {process.returncode}; see {work / 'daemon.log'}")
        found = running_daemon(work / "data")
        if found is not None and found.pid == process.pid:
            return process, found.url
        time.sleep(0.02)
    process.kill()
    raise RuntimeError("daemon did not start within 60 s")


def stop_under_load(
    process: subprocess.Popen[bytes], stop: threading.Event, load: list[threading.Thread]
) -> int:
    """The load's threads stopped first, then the daemon with SIGTERM: its exit status."""
    stop.set()
    for thread in load:
        thread.join()
    os.kill(process.pid, signal.SIGTERM)
    return process.wait(timeout=120)


def kill(process: subprocess.Popen[bytes]) -> None:
    os.kill(process.pid, signal.SIGKILL)
    process.wait()


def check(store: str, work: Path, writer: Writer, agents: list[Agent], tally: Tally, recover: bool) -> None:
    with Reverie.open(settings_for(store, work)) as rv:
        if not rv.exists:
            return
        if recover:
            for key, value in rv.consolidator.recover().items():
                tally.recovered[key] = tally.recovered.get(key, 0) + value
        problems = check_agents(rv, agents, writer.acknowledged, writer.attempted)
        tally.problems += [f"kill {tally.kills}: {problem}" for problem in problems]
        stats = rv.stats()
        tally.live, tally.merged = stats["live"], stats["merged"]
        runs = rv.run_log.runs(limit=1_000_000)
        tally.runs = sum(r.kind == "consolidate" for r in runs)
        tally.releases = sum(r.kind == "release" for r in runs)
        tally.runs_interrupted = sum(r.status == "interrupted" and r.kind == "consolidate" for r in runs)
        tally.merges_settled_by_recovery = sum(
            "settled_by" in m.detail for r in runs for m in rv.run_log.merges(r.run_id)
        )


def torture(store: str, kills: int, seed: int, work: Path, progress: bool = False) -> Tally:
    rng = np.random.default_rng(seed)
    writer, tally, env = Writer(seed), Tally(), daemon_env(store, work)
    agents = [Agent(i, writer.centres, keep=500) for i in range(AGENTS)]
    started = time.perf_counter()
    for cycle in range(kills):
        process, url = start_daemon(work, env)
        stop = threading.Event()
        threads = [threading.Thread(target=writer.write_until, args=(url, stop))]
        threads += [threading.Thread(target=a.run, args=(url, stop)) for a in agents]
        for thread in threads:
            thread.start()
        time.sleep(rng.uniform(0.2, 4.0))
        kill(process)
        stop.set()
        for thread in threads:
            thread.join()
        tally.kills += 1
        recover_here = cycle % 2 == 0
        if not recover_here:  # a fresh daemon recovers; killed once it is up, it leaves no work
            quiet = {**env, "REVERIE_SCHEDULER__ENABLED": "false"}
            process, url = start_daemon(work, quiet)
            _wait_ready(url)
            kill(process)
        check(store, work, writer, agents, tally, recover=recover_here)
        if progress:
            print(
                f"\rkill {tally.kills}/{kills}: acknowledged {len(writer.acknowledged)}, live {tally.live}, "
                f"runs interrupted {tally.runs_interrupted}, merges settled by recovery "
                f"{tally.merges_settled_by_recovery}, problems {len(tally.problems)}",
                end="",
                flush=True,
            )
    tally.acknowledged, tally.attempted = len(writer.acknowledged), len(writer.attempted)
    tally.agent_requests = sum(len(v) for a in agents for v in a.latencies.values())
    tally.agent_deletes = sum(len(a.deleted) for a in agents)
    tally.seconds = round(time.perf_counter() - started, 1)
    if progress:
        print()
    return tally


def _wait_ready(url: str) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"{url}/healthz", timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.02)
    raise RuntimeError(f"daemon at {url} not healthy within 60 s")


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--kills", type=int, default=200)
    parser.add_argument("--store", choices=["edge", "local"], default="edge")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        tally = torture(args.store, args.kills, args.seed, Path(tmp), progress=True)
    out = ROOT / "bench" / "results" / f"crash-torture-{args.store}.json"
    out.write_text(json.dumps({"args": vars(args), **asdict(tally)}, indent=2))
    engine = {"edge": "embedded store (qdrant-edge)", "local": "qdrant-client local mode on disk"}
    lines = [
        f"`bench/crash_torture.py --kills {args.kills} --store {args.store} --seed {args.seed}`, "
        f"{engine[args.store]}, {tally.seconds / 60:.0f} minutes on 2 cores:",
        "",
        "| kills | acknowledged bulk writes | agents' creates, updates, deletes (deletes) | runs "
        "| runs killed mid-run | merges killed mid-merge (settled by recovery) | live at the end "
        "| merged points | problems |",
        "|---|---|---|---|---|---|---|---|---|",
        f"| {tally.kills} | {tally.acknowledged:,} | {tally.agent_requests:,} ({tally.agent_deletes:,}) "
        f"| {tally.runs} | {tally.runs_interrupted} | "
        f"{tally.merges_settled_by_recovery} | {tally.live:,} | {tally.merged:,} | {len(tally.problems)} |",
    ]
    write_section(ROOT / "docs" / "reliability.md", f"crash-torture-{args.store}", lines, "Reliability")
    print(json.dumps({k: v for k, v in asdict(tally).items() if k != "problems"}))
    for problem in tally.problems[:20]:
        print("PROBLEM", problem)
    sys.exit(1 if tally.problems else 0)


if __name__ == "__main__":
    main()
