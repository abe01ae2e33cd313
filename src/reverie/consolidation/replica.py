"""Scale-out: which partitions this daemon consolidates when several share one Qdrant.

A partition belongs to replica `bucket_of(partition, n)` (storage/buckets.py): every daemon
agrees without talking to the others.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from reverie.storage.buckets import bucket_of


@dataclass(frozen=True)
class Replica:
    index: int = 0
    count: int = 1

    @classmethod
    def parse(cls, spec: str | None) -> Replica:
        """`"i/n"` (validated by the settings), or None for the only replica."""
        if spec is None:
            return cls()
        index, count = (int(part) for part in spec.split("/"))
        return cls(index, count)

    def owns(self, partition: tuple[Any, ...]) -> bool:
        """Whether this partition (its tenant key values) is this replica's (the only
        replica owns everything and skips the hash)."""
        return self.count == 1 or bucket_of(partition, self.count) == self.index
