"""Files written whole or not at all: into a scratch file beside the target, renamed over it
once complete. A crash mid-write, or an error, leaves the old file (or none), never half of
a new one; the scratch file's name is unique, so two writers never share one."""

from __future__ import annotations

import contextlib
import os
import uuid
from collections.abc import Iterator
from pathlib import Path


@contextlib.contextmanager
def replaced_whole(path: Path) -> Iterator[Path]:
    """A scratch path to write `path`'s new content to; it replaces `path` when the block
    ends without an error, and is removed otherwise."""
    path.parent.mkdir(parents=True, exist_ok=True)
    # named, not made: the writer makes it, with the permissions any new file gets (umask)
    scratch = path.with_name(f".{path.name}-{uuid.uuid4().hex}.partial")
    try:
        yield scratch
        os.replace(scratch, path)
    finally:
        scratch.unlink(missing_ok=True)
