"""Stop writing before the disk is full.

The embedded engine writes its segments and write-ahead log through memory maps; on a
full disk a write into a map is a SIGBUS that kills the process (measured on a full
tmpfs: the daemon died, and reopening the store died too). So writes and runs check the
data directory's free space first and are refused, with a clear error, while what is
already stored stays intact.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from reverie.errors import StorageFullError

MIB = 2**20


def ensure_free_space(directory: Path, reserve_mb: int, needed_bytes: int = 0) -> None:
    """Raise StorageFullError unless `needed_bytes` fit with `reserve_mb` to spare."""
    if reserve_mb <= 0:
        return
    existing = directory
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    free = shutil.disk_usage(existing).free
    if free - needed_bytes < reserve_mb * MIB:
        raise StorageFullError(
            f"{directory}: {free / MIB:.0f} MiB free, under storage.min_free_mb ({reserve_mb} MiB) "
            f"after this {needed_bytes / MIB:.1f} MiB; nothing was written (free space or move data_dir)"
        )
