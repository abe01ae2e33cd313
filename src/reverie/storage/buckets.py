"""A tenant's bucket: where its memories go when work or storage is split n ways.

The bucket is SHA-256 of the tenant's canonical JSON modulo n, so every daemon, on every
machine and Python version, agrees without talking to the others (Python's own `hash` is
salted per process). Consolidation replicas (`consolidation.replica`) and a Qdrant
collection's shard keys (`storage.shard_buckets`) both use it: with the same n, a replica's
tenants lie on its own shards.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

from reverie.storage.layouts import TenantValue


def bucket_of(partition: tuple[TenantValue, ...], count: int) -> int:
    """The bucket of a partition (layout.tenant's typed values): a hash of its JSON values,
    so 1, "1", true and 1.0 differ and a text tenant keeps its bucket across versions."""
    canonical = json.dumps([_json(v) for v in partition], sort_keys=True, default=str, separators=(",", ":"))
    digest = hashlib.sha256(canonical.encode()).digest()
    return int.from_bytes(digest[:8], "big") % count


def _json(value: TenantValue) -> Any:
    if value is None:
        return None
    kind, raw = value
    return json.loads(raw) if kind == "json" else raw
