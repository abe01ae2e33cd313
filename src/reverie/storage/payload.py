"""reverie's bookkeeping inside a point's payload, all under one key.

Agents' own keys are never touched. Under `_reverie`:
  kind         "original" | "merged" | "blend" (absent on a fresh point: an original)
  state        "fresh" (not yet adopted) | "live" | "committing" (a merge in flight)
               | "verified" (in flight, members checked) | "undoing" (an undo in flight)
               | "quarantined" (invalid vector) | "dormant" (faded: archive only, revivable)
  weight       how many original memories this point stands for (absent: 1)
  merged_from  ids of the points a merged point replaced (merged points only); the
               originals behind it are found through the archive (ledger/lineage.py)
  member_fingerprints  what each member looked like when the merge was planned
  run_id, created_at, merged_at, reason (quarantine)
  text_source  "pending" | "label" | "inversion" | "inversion from members": what a merged
               point's text field holds (one read once keeps what its search found); an
               original's text is its writer's ("agent" on those an earlier reverie wrote)
  embedder     the model reverie embedded the text with (a merged point: its members' common one)
  inversion    {text, fidelity, inverter, steps, beam_width, vector digest, at}: merged points, once read
  archived     {merged_into, run_id, at}: only on archive copies; removed on undo
  use          {count, last, spaced}: accesses, buffered and flushed (lifecycle/accesses.py)
  dormant      {run_id, at, reason, retention, was}: a forgotten memory's archive copy
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import numpy as np

from reverie.storage.base import Filter, IsEmpty, Match, MatchAny, Record, SparseVector

KEY = "_reverie"

FRESH = "fresh"
LIVE = "live"
COMMITTING = "committing"
VERIFIED = "verified"
UNDOING = "undoing"
QUARANTINED = "quarantined"
DORMANT = "dormant"  # faded and forgotten: only in the archive, until revived
IN_FLIGHT = (COMMITTING, VERIFIED, UNDOING)

ORIGINAL = "original"
MERGED = "merged"
BLEND = "blend"  # a saved blend: a new memory beside its parents, never merged

# text_source: what a point's text field holds (planning writes the first two, inversion the rest)
AGENT_TEXT = "agent"
PENDING = "pending"  # a merged point with no text yet: no member had any
LABEL = "label"  # a member's own text, the closest to the merged vector
INVERSION = "inversion"
FROM_MEMBERS = "inversion from members"


def _wall_clock() -> datetime:
    return datetime.now(UTC)


_clock: Callable[[], datetime] = _wall_clock


def utcnow() -> datetime:
    """The time memories are stamped and aged by: the wall clock, or a simulation's
    (bench/memory_life.py lives through months in minutes)."""
    return _clock()


def set_clock(clock: Callable[[], datetime] | None) -> None:
    """Use `clock` for every stamp and age from now on (None: the wall clock again)."""
    global _clock
    _clock = clock or _wall_clock


def now() -> str:
    return utcnow().isoformat(timespec="milliseconds")


def meta(payload: dict[str, Any]) -> dict[str, Any]:
    value = payload.get(KEY)
    return value if isinstance(value, dict) else {}


def state(payload: dict[str, Any]) -> str:
    return meta(payload).get("state", FRESH)


def weight(payload: dict[str, Any]) -> float:
    return float(meta(payload).get("weight", 1.0))


def agent_payload(payload: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in payload.items() if k != KEY}


def with_meta(payload: dict[str, Any], **changes: Any) -> dict[str, Any]:
    """A copy of `payload` whose `_reverie` object has `changes` applied (None removes)."""
    out = dict(payload)  # shallow: agent values are never changed in place, only replaced
    merged = dict(meta(out))
    for key, value in changes.items():
        if value is None:
            merged.pop(key, None)
        else:
            merged[key] = value
    out[KEY] = merged
    return out


def fresh_meta(embedder: str | None = None, created_at: str | None = None) -> dict[str, Any]:
    """The stamp a newly written memory carries until consolidation adopts it: its state
    and age only. Adoption adds kind and weight (mark_adopted), so a write spends nothing
    on them: each value costs the engine's binding microseconds to convert, and the kind
    index an entry (a fuller stamp cut embedded writes by a fifth). `embedder` is recorded
    when reverie embedded the text itself: an inverter for another embedder is then
    refused."""
    stamp: dict[str, Any] = {"state": FRESH, "created_at": created_at or now()}
    if embedder:
        stamp["embedder"] = embedder
    return stamp


FINGERPRINT_DECIMALS = 4


def fingerprint(record: Record) -> str:
    """What an agent could change: the vector and its own payload (not reverie's key).

    The vector is rounded first: stores may hand back a vector one float ulp off what
    they returned before (qdrant-client's local mode does after deletes), and that
    must not look like an agent's rewrite. A rare rounding flip only skips a merge.
    """
    digest = hashlib.sha1(_rounded(record.vector).tobytes())
    body = json.dumps(agent_payload(record.payload), sort_keys=True, default=str)
    digest.update(body.encode())
    for name in sorted(record.others):  # named and sparse vectors beside it, when any
        other = record.others[name]
        digest.update(name.encode())
        if isinstance(other, SparseVector):
            digest.update(other.indices.tobytes())
            digest.update(_rounded(other.values).tobytes())
        else:
            digest.update(_rounded(other).tobytes())
    return digest.hexdigest()


def vector_digest(vector: np.ndarray) -> str:
    """A short digest of a vector, rounded like fingerprints: an inverted text cached for
    one vector is not shown for another."""
    return hashlib.sha1(_rounded(vector).tobytes()).hexdigest()[:16]


def _rounded(vector: np.ndarray | None) -> np.ndarray:
    return np.round(np.asarray(vector, dtype=np.float64), FINGERPRINT_DECIMALS) + 0.0


CHECK_ROWS = 65_536


def vector_problems(vectors: list[np.ndarray], dimension: int | None = None) -> dict[int, str]:
    """Index -> problem of every vector that cannot be a memory, checked in one numpy pass
    (a write or an adoption of many vectors, not one check per vector)."""
    shape = (dimension,) if dimension is not None else (vectors[0].shape if vectors else None)
    problems = {i: vector_problem(v, dimension) or "" for i, v in enumerate(vectors) if v.shape != shape}
    rest = np.array([i for i in range(len(vectors)) if i not in problems], dtype=np.int64)
    for start in range(0, rest.size, CHECK_ROWS):  # in chunks: no second copy of a million
        chunk = rest[start : start + CHECK_ROWS]
        matrix = np.stack([vectors[i] for i in chunk])
        with np.errstate(over="ignore"):
            norms = np.linalg.norm(matrix, axis=1)
        ok = np.isfinite(matrix).all(axis=1) & np.isfinite(norms) & (norms > 0)
        for i in chunk[~ok]:
            problems[int(i)] = vector_problem(vectors[i], dimension) or "invalid vector"
    return problems


def vector_problem(vector: np.ndarray | None, dimension: int | None = None) -> str | None:
    """Why a vector cannot be a memory, or None when it can."""
    if vector is None:
        return "no vector"
    if dimension is not None and vector.shape != (dimension,):
        return f"wrong dimension: expected {dimension}, got {vector.size}"
    if not np.all(np.isfinite(vector)):
        return "vector holds NaN or infinite values"
    norm = float(np.linalg.norm(vector.astype(np.float64)))
    if norm == 0.0 or not math.isfinite(norm):
        return "zero vector" if norm == 0.0 else "vector norm overflows"
    return None


# Never stamped (no `_reverie.state`: an agent wrote it with a plain client) or stamped
# fresh. The empty test is on the indexed state, not on `_reverie` itself: Qdrant answers
# that from the payload index instead of reading every payload (1M points: 3 ms instead of
# 3.4 s), though still by looking at every point's entry, each time a scroll asks for a page
# (0.09 s at 10M); the stamped ones come from the index's own list of fresh points. Points
# written through reverie always carry a state.
_NO_STATE = IsEmpty(f"{KEY}.state")
_STATE_FRESH = Match(f"{KEY}.state", FRESH)
FRESH_FILTER = Filter(should=(_NO_STATE, _STATE_FRESH))
STATELESS = Filter(must=(_NO_STATE,))
STAMPED_FRESH = Filter(must=(_STATE_FRESH,))
DORMANT_ONLY = Filter(must=(Match(f"{KEY}.state", DORMANT),))  # in the archive: forgotten ones
UNSEARCHABLE_STATES = MatchAny(f"{KEY}.state", (*IN_FLIGHT, QUARANTINED))


def searchable_filter(extra: Filter | None = None) -> Filter:
    """Points a search may return: everything but in-flight merges and quarantine."""
    must = extra.must if extra else ()
    return Filter(
        must=must,
        should=extra.should if extra else (),
        must_not=(UNSEARCHABLE_STATES, *(extra.must_not if extra else ())),
    )


def consolidatable(records: list[Record], mergeable: Callable[[dict[str, Any]], bool]) -> list[Record]:
    return [records[i] for i in consolidatable_rows(records, mergeable)]


def consolidatable_rows(records: list[Record], mergeable: Callable[[dict[str, Any]], bool]) -> list[int]:
    """Which records consolidation may merge: a payload it may merge (not pinned, readable:
    the layout decides) and a valid vector (checked in one pass). Pins are checked here,
    not in a filter: Match cannot carry a boolean."""
    candidates = [i for i, r in enumerate(records) if r.vector is not None and mergeable(r.payload)]
    problems = vector_problems([np.asarray(records[i].vector) for i in candidates])
    return [row for k, row in enumerate(candidates) if k not in problems]


def partition_filter(partition: tuple[Any, ...], keys: tuple[str, ...]) -> Filter:
    """A filter for a tenant (layout.tenant's typed values) where the store can match it
    exactly (text, integers, absent); a caller compares the typed values of what it finds."""
    conditions: list[Any] = []
    for key, value in zip(keys, partition, strict=True):
        if value is None:
            conditions.append(IsEmpty(key))
        elif value[0] in ("str", "int"):
            conditions.append(Match(key, value[1]))
    return Filter(must=tuple(conditions))
