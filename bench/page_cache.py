"""A store's files and the kernel's page cache: evicted (as if never read, what a store
larger than memory looks like to most of its reads) or read in (as on a node whose memory
holds the store)."""

from __future__ import annotations

import os
from pathlib import Path


def evict(store_dir: Path) -> None:
    """Drop the store's pages from the page cache (Linux; no root needed)."""
    os.sync()
    for path in store_dir.rglob("*"):
        if path.is_file():
            fd = os.open(path, os.O_RDONLY)
            try:
                os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
            finally:
                os.close(fd)


def read_in(store_dir: Path, last: str) -> None:
    """Read every file of the store once, those under the folder named `last` (the live
    collection) at the end, so that what the page cache cannot hold is the rest."""
    files = [path for path in store_dir.rglob("*") if path.is_file()]
    for path in sorted(files, key=lambda f: (last in f.relative_to(store_dir).parts, str(f))):
        with path.open("rb") as file:
            while file.read(1 << 24):
                pass
