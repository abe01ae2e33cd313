"""SIGKILL a real `reverie consolidate` process in the middle of applying merges,
restart, and check the invariants: the embedded engine's write-ahead log must hold
every write the killed process made, and recovery must settle what it left in flight."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

from reverie.config import Settings
from reverie.memory import Reverie

from helpers import check_invariants, memories, near_duplicates

GROUPS, PER_GROUP = 300, 4
KILL_AFTER_MERGES = [1, 5, 10, 20, 30, 40]  # applied merges on record in the run being killed
# A kill lands inside a merge or, by chance, between two: all six fell between in one fresh
# clone's CI. Until one has landed inside, kill again, after 3 merges, up to this many times.
MORE_KILLS = 10


def open_reverie(data_dir: Path) -> Reverie:
    settings = Settings()
    settings.storage.data_dir = data_dir
    return Reverie.open(settings)


def test_sigkill_during_consolidation_loses_nothing(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    vectors, labels = near_duplicates(groups=GROUPS, per_group=PER_GROUP, seed=8)
    with open_reverie(data_dir) as rv:
        rv.write(memories(vectors, labels))
    originals = set(range(GROUPS * PER_GROUP))
    interrupted = in_flight = kills = 0
    command = [sys.executable, "-m", "reverie.cli", "--data-dir", str(data_dir), "consolidate"]
    # batches of one merge: the next merge starts right after a record, so kills land inside
    env = {**os.environ, "REVERIE_CONSOLIDATION__APPLY_BATCH": "1"}
    for merges in KILL_AFTER_MERGES + [3] * MORE_KILLS:
        if kills >= len(KILL_AFTER_MERGES) and in_flight:
            break
        kills += 1
        process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
        # the killed process is mid-stream: the next merge starts right after a record
        while applied_in_latest_run(data_dir) < merges and process.poll() is None:
            time.sleep(0.001)
        if process.poll() is None:
            os.kill(process.pid, signal.SIGKILL)
            interrupted += 1
        process.wait()
        with open_reverie(data_dir) as rv:
            counts = rv.recover()
            check_invariants(rv, originals)
            in_flight += counts["rolled_forward"] + counts["rolled_back"]
    with open_reverie(data_dir) as rv:
        rv.consolidate(full=True)
        check_invariants(rv, originals)
        assert rv.stats()["live"] == GROUPS
    assert interrupted == kills, "a run finished first: raise GROUPS"
    assert in_flight >= 1, "no kill landed inside a merge: the test did not test recovery"


def applied_in_latest_run(data_dir: Path) -> int:
    """Merges on record for the newest run (read beside the writer: SQLite in WAL mode)."""
    path = data_dir / "runs.sqlite"
    if not path.exists():
        return 0
    with sqlite3.connect(path) as db:
        row = db.execute(
            "SELECT count(*) FROM merges WHERE run_id = (SELECT max(run_id) FROM runs) AND status='applied'"
        ).fetchone()
    return row[0]
