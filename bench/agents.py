"""Agents for the load harnesses: each creates, rewrites and deletes its own memories over
HTTP and keeps what the daemon acknowledged, so the store can be checked against it."""

from __future__ import annotations

import threading
import time
import uuid
from dataclasses import dataclass, field

import httpx
import numpy as np

from reverie.memory import Reverie
from reverie.storage import Record

DIM, CONCEPTS = 32, 64
OPS = ("create", "update", "delete")


def concepts(seed: int = 0) -> np.ndarray:
    """Unit vectors every agent writes near-duplicates of, so consolidation always has work."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(CONCEPTS, DIM))
    return centres / np.linalg.norm(centres, axis=1, keepdims=True)


@dataclass
class Agent:
    """Ids in a range of its own (so each id has one writer and "the last acknowledged
    write" means something), integers or UUIDs. `keep`: the most memories it holds; past
    that it deletes as often as it creates, so the store stops growing."""

    index: int
    centres: np.ndarray
    keep: int = 1_000
    uuid_ids: bool = False
    versions: dict[int | str, int] = field(default_factory=dict)  # acknowledged: id -> version
    written_at: dict[int | str, float] = field(default_factory=dict)  # acknowledged: id -> time.time()
    deleted: set[int | str] = field(default_factory=set)  # acknowledged deletes
    uncertain: set[int | str] = field(default_factory=set)  # no answer came: either outcome
    attempted: set[int | str] = field(default_factory=set)
    latencies: dict[str, list[float]] = field(default_factory=lambda: {op: [] for op in OPS})
    failures: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.rng = np.random.default_rng(1000 + self.index)
        self.next_id = (self.index + 1) * 1_000_000_000  # below: the crash harness's bulk writer

    def run(self, url: str, stop: threading.Event, pause: float = 0.0) -> None:
        """Until `stop`, or until the daemon stops answering (a harness killed it)."""
        with httpx.Client(base_url=url, timeout=30) as client:
            while not stop.wait(pause):
                try:
                    self.step(client)
                except httpx.HTTPError:
                    return

    def step(self, client: httpx.Client) -> None:
        op = self._choose()
        if op == "create":
            point_id, self.next_id = self.next_id, self.next_id + 1
            if self.uuid_ids:
                point_id = str(uuid.UUID(int=point_id))
        else:
            held = list(self.versions)
            point_id = held[self.rng.integers(0, len(held))]
        self.attempted.add(point_id)
        started = time.perf_counter()
        try:
            if op == "delete":
                response = client.delete(f"/memories/{point_id}")
            else:
                version = self.versions.get(point_id, 0) + 1
                memory = {"id": point_id, "vector": self._vector(), "payload": {"version": version}}
                response = client.post("/memories", json={"memories": [memory]})
        except httpx.HTTPError as exc:
            self._unsure(point_id, f"{op} {point_id}: {exc!r}")
            raise
        self.latencies[op].append(time.perf_counter() - started)
        if response.status_code != 200:
            self._unsure(point_id, f"{op} {point_id}: {response.status_code} {response.text[:200]}")
        elif op == "delete":
            del self.versions[point_id], self.written_at[point_id]
            self.deleted.add(point_id)
        else:
            self.versions[point_id], self.written_at[point_id] = version, time.time()

    def _choose(self) -> str:
        if len(self.versions) < 2:
            return "create"
        if len(self.versions) >= self.keep:
            return str(self.rng.choice(["update", "delete"], p=[0.4, 0.6]))
        return str(self.rng.choice(OPS, p=[0.5, 0.3, 0.2]))

    def _vector(self) -> list[float]:
        centre = self.centres[self.rng.integers(0, len(self.centres))]
        v = centre + self.rng.normal(scale=0.05 / np.sqrt(centre.size), size=centre.size)
        return v.tolist()

    def _unsure(self, point_id: int | str, failure: str) -> None:
        self.failures.append(failure)
        self.uncertain.add(point_id)
        self.versions.pop(point_id, None)
        self.written_at.pop(point_id, None)


def check_agents(
    rv: Reverie,
    agents: list[Agent],
    must_hold: set[int] | None = None,
    may_hold: set[int] | None = None,
    dropped_before: float | None = None,
) -> list[str]:
    """The store against what agents were told: every acknowledged memory there (live,
    dormant, or archived under a merged point) in its last acknowledged version, every
    acknowledged delete gone, plus every store invariant. `must_hold`, `may_hold`: ids other
    writers wrote (acknowledged, attempted). `dropped_before` (with archive.keep_days on):
    a memory last written before this time.time() may be gone by design, merged and then
    dropped from the archive (the invariants check its merge counts it). Reads without
    side effects: a dormant memory stays dormant."""
    written = {i: t for a in agents for i, t in a.written_at.items()}
    droppable = {i for i, t in written.items() if dropped_before is not None and t < dropped_before}
    must = ({i for a in agents for i in a.versions} - droppable) | (must_hold or set())
    gone = {i for a in agents for i in a.deleted - a.uncertain - a.versions.keys()}
    attempted = {i for a in agents for i in a.attempted} | (may_hold or set())
    problems = rv.invariant_problems(must_hold=must, may_hold=attempted - gone)
    stale = []
    for agent in agents:
        for point_id, version in agent.versions.items():
            record = _read(rv, point_id)
            if record is not None and record.payload.get("version") != version:
                stale.append((point_id, record.payload.get("version"), version))
    if stale:
        problems.append(f"{len(stale)} memories not in their last acknowledged version: {stale[:5]}")
    resurrected = [point_id for point_id in sorted(gone, key=str) if _read(rv, point_id) is not None]
    if resurrected:
        problems.append(f"deleted memories still there: {resurrected[:10]}")
    return problems


def _read(rv: Reverie, point_id: int | str) -> Record | None:
    """The memory as stored, live or in the archive (dormant, or an original of a merge)."""
    for name in (rv.collection, rv.archive):
        if rv.store.collection_exists(name):
            found = rv.store.retrieve(name, [point_id], with_vectors=False)
            if found:
                return found[0]
    return None
