"""SIGKILL a real `reverie consolidate` process at moments spread over its run, restart,
and check the invariants: the embedded engine's write-ahead log must hold every write
the killed process made, and recovery must settle what it left in flight."""

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
KILL_AFTER = [0.1, 0.4, 0.7, 1.0, 1.3, 1.7, 2.2]  # seconds after the run has started


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
    interrupted = in_flight = 0
    command = [sys.executable, "-m", "reverie.cli", "--data-dir", str(data_dir), "consolidate"]
    for delay in KILL_AFTER:
        started = runs_started(data_dir)
        process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        while runs_started(data_dir) == started and process.poll() is None:
            time.sleep(0.02)  # the run is on record: planning, then applying
        time.sleep(delay)
        if process.poll() is None:
            os.kill(process.pid, signal.SIGKILL)
            interrupted += 1
        process.wait()
        with open_reverie(data_dir) as rv:
            counts = rv.consolidator.recover()
            check_invariants(rv, originals)
            in_flight += counts["rolled_forward"] + counts["rolled_back"]
    with open_reverie(data_dir) as rv:
        rv.consolidate(full=True)
        check_invariants(rv, originals)
        assert rv.stats()["live"] == GROUPS
    assert interrupted >= 3, "too few runs were killed: raise GROUPS so a run outlasts the kills"
    assert in_flight >= 1, "no kill landed inside a merge: the test did not test recovery"


def runs_started(data_dir: Path) -> int:
    path = data_dir / "runs.sqlite"
    if not path.exists():
        return 0
    with sqlite3.connect(path) as db:
        return db.execute("SELECT count(*) FROM runs").fetchone()[0]
