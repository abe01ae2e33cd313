"""Crash torture: SIGKILL a daemon at random moments while agents write, update and delete,
an operator fades, revives and undoes, and the jobs (consolidation, forgetting,
maintenance, inversion) run every few seconds; restart, and check every store invariant after
each kill.

    .venv/bin/python bench/crash_torture.py --kills 200 [--store edge|local] [--seed 0]

Each cycle starts `reverie serve` (a real subprocess on a loopback port) and, over HTTP:
a writer posts batches of near-duplicate vectors, integer and UUID ids in turn (an id
counts as acknowledged once its batch got 200); two agents create, update and delete
single memories (bench/agents.py; one uses integer ids, the other UUIDs); an operator
calls POST /fade, revives a memory known to be dormant, undoes a random run and starts
maintenance, in turn. Once the writer has had answers (so no cycle is idle), the daemon
is killed with SIGKILL after a random 0.2-4 s. Cycles take turns (CYCLES): consolidation
every second (the forget job keeps at most FORGET_CAP memories live, the weakest go
dormant);
forgetting every second (memories fade in seconds); and one in ten loads the embedder
and the built-in inverter, the kill coming once the invert job has written a text, while
it writes more.
What each kill interrupted is counted from the daemon's debug log (a job started and not
ended) and from the requests that got no answer.
Then the invariants (reverie.ledger.invariants): every acknowledged memory is
live, dormant or archived under a merged point, in its last acknowledged version; every
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
import uuid
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import structlog

sys.path.insert(0, str(Path(__file__).parent))
from agents import Agent, check_agents  # noqa: E402
from report import write_section  # noqa: E402

from reverie.config import LoggingSettings, Settings  # noqa: E402
from reverie.daemon.registration import running_daemon  # noqa: E402
from reverie.logs import configure_logging  # noqa: E402
from reverie.memory import Reverie  # noqa: E402
from reverie.storage import payload as p  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
log = structlog.get_logger("bench.crash_torture")
DIM, CENTRES, BATCH = 384, 64, 8  # all-MiniLM-L6-v2's size, so the built-in inverter reads them
ID_SPACE = 4_000  # the bulk writer's ids; it rewrites them from the first past this
AGENTS = 2  # beside the bulk writer: one memory per request, updates and deletes too
FORGET_CAP = 150  # forget.max_memories: the weakest beyond it go dormant
# what the cycles stress, in turn: a consolidation run can outlast a cycle (and a run
# keeps the forget job waiting), so forgetting gets cycles of its own
THEMES: dict[str, dict[str, str]] = {
    # over the cap, a forget run consolidates first, then the weakest go dormant
    "consolidate": {"REVERIE_FORGET__EVERY": "5", "REVERIE_FORGET__MAX_MEMORIES": str(FORGET_CAP)},
    # memories fade within a second unused and go dormant two seconds later
    "forget": {
        "REVERIE_SCHEDULER__CONSOLIDATE_EVERY": "60",
        "REVERIE_FORGET__EVERY": "1",
        "REVERIE_MEMORY__STABILITY_DAYS": "0.00001",
        "REVERIE_FORGET__AFTER_DAYS": "0.00002",
    },
    # the shipped embedder and inverter; small searches, so batches end often
    "invert": {
        "REVERIE_SCHEDULER__CONSOLIDATE_EVERY": "5",
        "REVERIE_FORGET__EVERY": "5",
        "REVERIE_SCHEDULER__INVERT_EVERY": "1",
        "REVERIE_INVERSION__SETTLE_SECONDS": "0",
        "REVERIE_INVERSION__BATCH_SIZE": "1",
        "REVERIE_INVERSION__PER_TICK": "1",  # a tick per text: the kill lands between and inside them
        "REVERIE_INVERSION__BEAM_WIDTH": "1",
        "REVERIE_INVERSION__MAX_TOKENS": "12",
        "REVERIE_INVERSION__POLISH": "0",
    },
}
CYCLES = (
    "consolidate",
    "forget",
    "consolidate",
    "forget",
    "invert",
    *("consolidate", "forget") * 2,
    "consolidate",
)
WRITE_PAUSE = 0.2  # seconds between the writer's batches
WRITES_BEFORE_KILL = 3 * BATCH  # ids the writer has had answers for in a cycle before its kill clock starts
OPERATIONS = ("fade", "revive", "undo", "maintain")
UNDOABLE = ("consolidate", "forget")  # the kinds of run the operator undoes
JOB_ENDS = {
    "job.started": True,
    "job.finished": False,
    "scheduler.skipped": False,
    "scheduler.job_failed": False,
}


@dataclass
class Tally:
    kills: int = 0
    acknowledged: int = 0  # the bulk writer's
    agent_requests: int = 0  # the agents' answered creates, updates and deletes
    agent_deletes: int = 0
    attempted: int = 0
    operations: dict[str, int] = field(default_factory=dict)  # the operator's calls answered 2xx
    refused: dict[str, int] = field(default_factory=dict)  # "operation status": its 4xx answers
    killed_during: dict[str, int] = field(default_factory=dict)  # jobs and calls a kill interrupted
    inversion_cycles: int = 0
    recovered: dict[str, int] = field(default_factory=dict)  # this process's recoveries, summed
    runs: int = 0
    forget_runs: int = 0
    releases: int = 0  # runs that undid merges for an update or delete
    runs_interrupted: int = 0  # killed mid-run
    merges_settled_by_recovery: int = 0  # killed mid-merge: finished or voided by recovery
    problems: list[str] = field(default_factory=list)
    live: int = 0
    merged: int = 0  # merged points live at the last check (undos and releases take some back)
    merges_applied: int = 0  # merges the runs applied, all kills together, from the run log
    dormant: int = 0
    dormant_peak: int = 0  # the most dormant at any check
    inverted: int = 0  # texts the invert job wrote
    seconds: float = 0.0


class Writer:
    """Near-duplicate memories posted in batches over HTTP, integer and UUID ids in turn.
    Past ID_SPACE ids it writes the first ones again (a rewrite of a merged memory releases
    its merge), so the store stays at a size that can be checked after every kill."""

    def __init__(self, seed: int) -> None:
        self.rng = np.random.default_rng(seed)
        centres = self.rng.normal(size=(CENTRES, DIM))
        self.centres = centres / np.linalg.norm(centres, axis=1, keepdims=True)
        self.next_id = 0
        self.acknowledged: set[int | str] = set()
        self.attempted: set[int | str] = set()
        self.answered = 0  # ids written with a 200, rewrites counted again

    def batch(self) -> tuple[list[int | str], list[dict[str, Any]]]:
        first = self.next_id % ID_SPACE
        ids: list[int | str] = list(range(first, first + BATCH))
        if first // BATCH % 2:
            ids = [str(uuid.UUID(int=(1 << 64) + i)) for i in ids]
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
                    self.answered += len(ids)


@dataclass
class Operator:
    """What a person or a tool does besides writing: POST /fade, a revive, an undo of a
    random run, a start of maintenance, in turn. It revives a memory it knows went dormant
    (its own fades' answers, the store as checked after a kill), else a random one: dormant
    ones are tens among thousands, and a GET to find one would revive it. An answer of 5xx
    is a failure; 4xx is fine (a memory not dormant, a run that cannot be undone)."""

    writer: Writer
    seed: int
    done: Counter = field(default_factory=Counter)
    refused: Counter = field(default_factory=Counter)  # (operation, status): 4xx answers
    interrupted: Counter = field(default_factory=Counter)
    failures: list[str] = field(default_factory=list)
    dormant: list[int | str] = field(default_factory=list)  # ids known to have gone dormant

    def __post_init__(self) -> None:
        self.rng = np.random.default_rng(self.seed)
        self.turn = 0

    def run(self, url: str, stop: threading.Event, pause: float = 0.1) -> None:
        with httpx.Client(base_url=url, timeout=30) as client:
            while not stop.wait(pause):
                operation = OPERATIONS[self.turn % len(OPERATIONS)]
                self.turn += 1
                try:
                    response = self._call(client, operation)
                except httpx.HTTPError:
                    self.interrupted[operation] += 1
                    return
                if response is None:
                    continue
                if response.status_code >= 500:
                    self.failures.append(f"{operation}: {response.status_code} {response.text[:200]}")
                elif response.status_code < 300:
                    self.done[operation] += 1
                    if operation == "fade":
                        self.dormant += [d["id"] for d in response.json()["dormant"]]
                else:
                    self.refused[f"{operation} {response.status_code}"] += 1

    def _call(self, client: httpx.Client, operation: str) -> httpx.Response | None:
        if operation == "fade":
            return client.post("/fade", json={})
        if operation == "maintain":
            return client.post("/jobs/maintain/run")
        if operation == "revive":
            if self.dormant:
                chosen = self.dormant.pop(self.rng.integers(0, len(self.dormant)))
            elif written := sorted(self.writer.acknowledged, key=str):
                chosen = written[self.rng.integers(0, len(written))]
            else:
                return None
            return client.post(f"/memories/{chosen}/revive")
        runs = client.get("/runs", params={"limit": 50}).json()["runs"]
        done = [r["run_id"] for r in runs if r["kind"] in UNDOABLE and r["status"] == "done"]
        if not done:
            return None
        return client.post(f"/undo/{done[self.rng.integers(0, len(done))]}")


def daemon_env(store: str, work: Path, theme: str | None = None) -> dict[str, str]:
    """A daemon's environment: vectors only (no models), consolidation every second,
    merges applied one at a time; `theme` (THEMES) shifts which jobs run most."""
    env = {
        **os.environ,
        "REVERIE_SCHEDULER__CONSOLIDATE_EVERY": "1",
        "REVERIE_CONSOLIDATION__APPLY_BATCH": "1",
        # its agents write without a pause: at the default share a run under them takes ten
        # times as long (consolidation/pacing.py), its plans go stale before they are applied
        # and the invert cycle may see no merge to read; kills must land inside runs
        "REVERIE_CONSOLIDATION__SHARE_WHILE_WRITING": "0.5",
        # agents write vectors: no embedder needed (a missing model fails fast, in the background)
        "REVERIE_EMBEDDER__MODEL": str(work / "no-embedder"),
        "REVERIE_INVERSION__MODEL": "none",  # nor an inverter: labels
        "HF_HUB_OFFLINE": "1",
    }
    if store == "local":
        env["REVERIE_STORAGE__URL"] = f"file:{work / 'qdrant-local'}"
    if theme is not None:
        env |= {
            "REVERIE_SCHEDULER__MAINTAIN_EVERY": "2",
            "REVERIE_FORGET__ENABLED": "true",
            "REVERIE_LOGGING__LEVEL": "debug",  # job.started / job.finished: what a kill interrupted
            "REVERIE_LOGGING__FORMAT": "json",
            **THEMES[theme],
        }
    if theme == "invert":
        del env["REVERIE_EMBEDDER__MODEL"], env["REVERIE_INVERSION__MODEL"]
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


def read_log(log_lines: list[bytes]) -> tuple[list[str], int]:
    """From a daemon's JSON log: the scheduled jobs started and not ended (its debug
    events), and the texts the invert job wrote."""
    running: dict[str, bool] = {}
    inverted = 0
    for line in log_lines:
        try:
            event = json.loads(line)
        except ValueError:
            continue
        if not isinstance(event, dict):
            continue
        if event.get("event") in JOB_ENDS and "job" in event:
            running[event["job"]] = JOB_ENDS[event["event"]]
        elif event.get("event") == "inversion.tick":
            inverted += event.get("inverted", 0)
    return sorted(job for job, started in running.items() if started), inverted


def check(
    store: str,
    work: Path,
    writer: Writer,
    agents: list[Agent],
    operator: Operator,
    tally: Tally,
    recover: bool,
) -> None:
    with Reverie.open(settings_for(store, work)) as rv:
        if not rv.exists:
            return
        if recover:
            for key, value in rv.recover().items():
                tally.recovered[key] = tally.recovered.get(key, 0) + value
        problems = check_agents(rv, agents, writer.acknowledged, writer.attempted)
        tally.problems += [f"kill {tally.kills}: {problem}" for problem in problems]
        for problem in problems:
            log.error("torture.problem", kill=tally.kills, problem=problem)
        stats = rv.stats()
        tally.live, tally.merged = stats["live"], stats["merged"]
        tally.dormant = stats["dormant"]
        tally.dormant_peak = max(tally.dormant_peak, tally.dormant)
        asleep = rv.store.scroll(rv.archive, p.DORMANT_ONLY, payload_keys=()) if tally.dormant else []
        operator.dormant = [r.id for r in asleep]
        runs = rv.run_log.runs(limit=1_000_000)
        tally.runs = sum(r.kind == "consolidate" for r in runs)
        tally.forget_runs = sum(r.kind == "forget" for r in runs)
        tally.releases = sum(r.kind == "release" for r in runs)
        tally.runs_interrupted = sum(r.status == "interrupted" and r.kind == "consolidate" for r in runs)
        merges = [(r.kind, m) for r in runs for m in rv.run_log.merges(r.run_id)]
        # applied, or applied and then undone by an undo or a release
        tally.merges_applied = sum(
            kind == "consolidate" and m.status in ("applied", "undone") for kind, m in merges
        )
        tally.merges_settled_by_recovery = sum("settled_by" in m.detail for _, m in merges)


def torture(store: str, kills: int, seed: int, work: Path, progress: bool = False) -> Tally:
    rng = np.random.default_rng(seed)
    writer, tally = Writer(seed), Tally()
    agents = [Agent(i, writer.centres, keep=500, uuid_ids=i % 2 == 1) for i in range(AGENTS)]
    operator = Operator(writer, seed)
    killed_during: Counter = Counter()
    log_path = work / "daemon.log"
    started = time.perf_counter()
    for cycle in range(kills):
        theme = CYCLES[cycle % len(CYCLES)]
        env = daemon_env(store, work, theme)
        log_from = log_path.stat().st_size if log_path.exists() else 0
        process, url = start_daemon(work, env)
        stop = threading.Event()
        threads = [threading.Thread(target=writer.write_until, args=(url, stop, WRITE_PAUSE))]
        threads += [threading.Thread(target=a.run, args=(url, stop)) for a in agents]
        threads.append(threading.Thread(target=operator.run, args=(url, stop)))
        for thread in threads:
            thread.start()
        try:
            _wait_for_writes(writer, writer.answered + WRITES_BEFORE_KILL)
            if theme == "invert":
                tally.inversion_cycles += 1
                _wait_for_inversion(log_path, log_from)
            time.sleep(rng.uniform(0.2, 4.0))
        finally:  # a cycle that fails still ends its daemon and its load (they ran on for an hour)
            kill(process)
            stop.set()
            for thread in threads:
                thread.join()
        with log_path.open("rb") as log:
            log.seek(log_from)
            in_flight, inverted = read_log(log.readlines())
        killed_during.update(in_flight)
        tally.inverted += inverted
        tally.kills += 1
        recover_here = cycle % 2 == 0
        if not recover_here:  # a fresh daemon recovers; killed once it is up, it leaves no work
            quiet = {**daemon_env(store, work), "REVERIE_SCHEDULER__ENABLED": "false"}
            process, url = start_daemon(work, quiet)
            _wait_ready(url)
            kill(process)
        check(store, work, writer, agents, operator, tally, recover=recover_here)
        if progress:
            print(
                f"\rkill {tally.kills}/{kills}: acknowledged {len(writer.acknowledged)}, live {tally.live}, "
                f"dormant {tally.dormant}, runs interrupted {tally.runs_interrupted}, merges settled by "
                f"recovery {tally.merges_settled_by_recovery}, problems {len(tally.problems)}",
                end="",
                flush=True,
            )
    tally.acknowledged, tally.attempted = len(writer.acknowledged), len(writer.attempted)
    tally.agent_requests = sum(len(v) for a in agents for v in a.latencies.values())
    tally.agent_deletes = sum(len(a.deleted) for a in agents)
    tally.operations, tally.refused = dict(operator.done), dict(operator.refused)
    tally.killed_during = dict(killed_during + operator.interrupted)
    tally.problems += operator.failures
    tally.seconds = round(time.perf_counter() - started, 1)
    if progress:
        print()
    return tally


def _wait_for_writes(writer: Writer, count: int, timeout: float = 60) -> None:
    """Until the writer has had `count` ids answered (the daemon is taking writes)."""
    deadline = time.monotonic() + timeout
    while writer.answered < count and time.monotonic() < deadline:
        time.sleep(0.02)


def _wait_for_inversion(log_path: Path, log_from: int, timeout: float = 300) -> None:
    """Until the invert job has written texts (its first tick waits for the models)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with log_path.open("rb") as log:
            log.seek(log_from)
            if read_log(log.readlines())[1]:
                return
        time.sleep(0.2)
    raise RuntimeError(f"the invert job wrote no text within {timeout:.0f} s; see {log_path}")


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
    configure_logging(LoggingSettings(level="warning"))  # the checks' own reopening, quietly
    with tempfile.TemporaryDirectory() as tmp:
        tally = torture(args.store, args.kills, args.seed, Path(tmp), progress=True)
    out = ROOT / "bench" / "results" / f"crash-torture-{args.store}.json"
    out.write_text(json.dumps({"args": vars(args), **asdict(tally)}, indent=2))
    engine = {"edge": "embedded store (qdrant-edge)", "local": "qdrant-client local mode on disk"}
    interrupted = ", ".join(f"{k} {v}" for k, v in sorted(tally.killed_during.items()))
    operations = ", ".join(f"{k} {v}" for k, v in sorted(tally.operations.items()))
    lines = [
        f"`bench/crash_torture.py --kills {args.kills} --store {args.store} --seed {args.seed}`, "
        f"{engine[args.store]}, {tally.seconds / 60:.0f} minutes on 2 cores:",
        "",
        "| kills | acknowledged bulk writes | agents' creates, updates, deletes (deletes) | runs (forget) "
        "| runs killed mid-run | merges killed mid-merge (settled by recovery) "
        "| live, dormant at the end (peak) "
        "| merges applied (merged points at the end) | texts inverted | problems |",
        "|---|---|---|---|---|---|---|---|---|---|",
        f"| {tally.kills} | {tally.acknowledged:,} | {tally.agent_requests:,} ({tally.agent_deletes:,}) "
        f"| {tally.runs} ({tally.forget_runs}) | {tally.runs_interrupted} | "
        f"{tally.merges_settled_by_recovery} | {tally.live:,}, {tally.dormant:,} ({tally.dormant_peak:,}) "
        f"| {tally.merges_applied:,} ({tally.merged:,}) | {tally.inverted} | {len(tally.problems)} |",
        "",
        f"Integer and UUID ids in turn. What the kills interrupted (scheduled jobs from the daemon's log, "
        f"operator calls left unanswered): {interrupted}. Operator calls answered: {operations}; "
        f"{tally.inversion_cycles} cycles with the inverter loaded.",
    ]
    write_section(ROOT / "docs" / "reliability.md", f"crash-torture-{args.store}", lines, "Reliability")
    print(json.dumps({k: v for k, v in asdict(tally).items() if k != "problems"}))
    for problem in tally.problems[:20]:
        print("PROBLEM", problem)
    sys.exit(1 if tally.problems else 0)


if __name__ == "__main__":
    main()
