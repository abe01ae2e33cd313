"""A full disk under the embedded store, on a real small tmpfs: writes are refused with a
clear error before the disk runs out, nothing stored is damaged, and once space is freed
the store reopens whole.

Without the free-space check the engine died of SIGBUS (it writes through memory maps)
once the tmpfs filled, and reopening the store died too. The scenario runs in a child
process, so a SIGBUS fails this test instead of killing pytest. Mounting needs root."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

SCENARIO = """
import sys
from pathlib import Path
import numpy as np
from reverie.config import Settings
from reverie.errors import StorageFullError
from reverie.memory import NewMemory, Reverie

settings = Settings()
settings.storage.data_dir = Path(sys.argv[1]) / "data"
settings.storage.min_free_mb = 96
ballast = Path(sys.argv[1]) / "other-files"  # what else fills the disk; the operator deletes it
ballast.write_bytes(bytes(48 * 2**20))
rng = np.random.default_rng(0)
acknowledged = 0
with Reverie.open(settings) as rv:
    while True:
        vectors = rng.normal(size=(500, 384)).astype(np.float32)
        batch = [NewMemory(v, {"text": "x" * 200}, acknowledged + i) for i, v in enumerate(vectors)]
        try:
            rv.write(batch)
        except StorageFullError as exc:
            assert "storage.min_free_mb" in str(exc), exc
            break
        acknowledged += len(batch)
    try:
        rv.consolidate()
    except StorageFullError:
        pass
with Reverie.open(settings) as rv:  # still full: a clear refusal, not a crash
    try:
        rv.stats()
    except StorageFullError:
        pass
ballast.unlink()
with Reverie.open(settings) as rv:
    problems = rv.invariant_problems(must_hold=range(acknowledged))
    assert not problems, problems
    print("acknowledged", acknowledged, "live", rv.stats()["live"])
"""


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    disk = tmp_path / "disk"
    disk.mkdir()
    command = ["mount", "-t", "tmpfs", "-o", "size=200m", "tmpfs", str(disk)]
    mounted = subprocess.run(command, capture_output=True)
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here (needs root): {mounted.stderr.decode().strip()}")
    try:
        yield disk
    finally:
        subprocess.run(["umount", str(disk)], check=True)


def test_writes_stop_before_the_disk_is_full_and_lose_nothing(small_disk: Path) -> None:
    command = [sys.executable, "-c", SCENARIO, str(small_disk)]
    done = subprocess.run(command, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, f"exit {done.returncode}: {done.stderr[-2000:]}"
    result = next(line for line in done.stdout.splitlines() if line.startswith("acknowledged"))
    acknowledged = int(result.split()[1])
    assert acknowledged >= 10_000, "the disk filled before anything was written: the test tested nothing"
