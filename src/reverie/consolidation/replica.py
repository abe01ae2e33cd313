"""Scale-out: which partitions this daemon consolidates when several share one Qdrant.

A partition belongs to replica `hash(partition) mod n`. The hash is SHA-256 of the
partition's canonical JSON, so every daemon, on every machine and Python version, agrees
without talking to the others (Python's own `hash` is salted per process).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from typing import Any


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
        return self.count == 1 or partition_slot(partition, self.count) == self.index


def partition_slot(partition: tuple[Any, ...], count: int) -> int:
    """The replica a partition (layout.tenant's typed values) falls to: a hash of its JSON
    values, so 1, "1", true and 1.0 differ and a text tenant keeps its slot across versions."""
    canonical = json.dumps([_json(v) for v in partition], sort_keys=True, default=str, separators=(",", ":"))
    digest = hashlib.sha256(canonical.encode()).digest()
    return int.from_bytes(digest[:8], "big") % count


def _json(value: Any) -> Any:
    if value is None:
        return None
    kind, raw = value
    return json.loads(raw) if kind == "json" else raw
