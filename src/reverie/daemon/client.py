"""A client for a running `reverie serve`, with the methods and return types of `Reverie`
that the CLI uses, so a command reads the same whether it opened storage or the daemon
holds it."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from functools import cached_property
from typing import Any

import httpx
import numpy as np

from reverie.daemon import packed
from reverie.daemon.registration import Registration
from reverie.errors import (
    ConflictError,
    InvalidInputError,
    NotFoundError,
    ReverieError,
    StorageError,
    UnauthorizedError,
)
from reverie.inversion.lazy import MemoryText
from reverie.storage import Hit, PointId, Record
from reverie.storage import payload as p
from reverie.storage.intake import NewMemory, sparse_json
from reverie.storage.layouts import Layout, from_description

PACKED_BATCH = 1000  # memories a packed write carries: the daemon's default max_batch

ERRORS: dict[int, type[ReverieError]] = {
    400: InvalidInputError,
    401: UnauthorizedError,
    404: NotFoundError,
    409: ConflictError,
    413: InvalidInputError,
    422: InvalidInputError,
    503: StorageError,
}


class DaemonClient:
    def __init__(self, daemon: Registration, api_key: str | None, timeout: float = 600.0) -> None:
        self.daemon = daemon
        headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self._http = httpx.Client(base_url=daemon.url, headers=headers, timeout=timeout)
        self._read: dict[PointId, dict[str, Any]] = {}  # GET /memories answers, by id

    def __enter__(self) -> DaemonClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self._http.close()

    def remember(
        self,
        texts: Sequence[str],
        partition: dict[str, Any] | None = None,
        payload: dict[str, Any] | None = None,
        progress: bool = False,
    ) -> list[PointId]:
        memories = [{"text": t, "payload": payload or {}} for t in texts]
        body = {"memories": memories, "partition": partition or {}}
        return self._call("POST", "/memories", json=body)["ids"]

    def write_vectors(
        self,
        vectors: np.ndarray,
        payloads: Sequence[dict[str, Any]] | None = None,
        ids: Sequence[PointId] | None = None,
        partition: dict[str, Any] | None = None,
        batch: int = PACKED_BATCH,
    ) -> list[PointId]:
        """Vectors with their payloads (and ids), packed as float32 (daemon/packed.py), in
        batches of `batch`: about twice the rate of JSON floats. Returns the ids written."""
        count = len(vectors)
        if (payloads is not None and len(payloads) != count) or (ids is not None and len(ids) != count):
            raise InvalidInputError(f"{count} vectors need as many payloads and ids")
        memories = [
            {"payload": dict(payloads[i]) if payloads else {}, **({"id": ids[i]} if ids else {})}
            for i in range(count)
        ]
        return self._write_packed(np.asarray(vectors), memories, partition, batch)

    def import_memories(
        self,
        memories: Sequence[NewMemory],
        partition: dict[str, Any] | None = None,
        batch: int = PACKED_BATCH,
        progress: Callable[[int], object] | None = None,
    ) -> list[PointId]:
        """`reverie import` through the daemon: each payload is the whole point payload,
        written as given (the packed format's raw_payload). `progress` hears each batch."""
        fields = [
            {"payload": m.payload, **({"id": m.id} if m.id is not None else {})}
            | ({"sparse": sparse_json(m.sparse)} if m.sparse else {})
            for m in memories
        ]
        vectors = np.stack([m.vector for m in memories]) if memories else np.empty((0, 0))
        return self._write_packed(vectors, fields, partition, batch, raw_payload=True, progress=progress)

    def _write_packed(
        self,
        vectors: np.ndarray,
        memories: list[dict[str, Any]],
        partition: dict[str, Any] | None,
        batch: int,
        raw_payload: bool = False,
        progress: Callable[[int], object] | None = None,
    ) -> list[PointId]:
        written: list[PointId] = []
        headers = {"content-type": packed.MEDIA_TYPE}
        for start in range(0, len(memories), batch):
            rows, fields = vectors[start : start + batch], memories[start : start + batch]
            body = packed.pack(rows, fields, partition, raw_payload)
            written += self._call("POST", "/memories/packed", content=body, headers=headers)["ids"]
            if progress is not None:
                progress(len(fields))
        return written

    def recall(
        self, query: str, k: int = 5, partition: dict[str, Any] | None = None, rank: str | None = None
    ) -> list[Hit]:
        body = {"text": query, "k": k, "partition": partition or {}, "rank": rank}
        found = self._call("POST", "/search", json=body)
        return [
            Hit(h["id"], None, _payload(h), score=h["score"], parts=h.get("score_parts", {}))
            for h in found["hits"]
        ]

    def get(self, point_id: str | int) -> tuple[Record, bool]:
        found = self._call("GET", f"/memories/{point_id}")
        self._read[found["id"]] = found
        return Record(found["id"], None, _payload(found)), found["archived"]

    def text(self, record: Record) -> MemoryText:
        """The text the daemon read with the memory (inverting it there, if pending)."""
        found = self._read[record.id]
        return MemoryText(
            found["text"],
            found["text_source"],
            found.get("fidelity"),
            found.get("inverter"),
            found.get("text_note"),
        )

    def lineage(self, record: Record) -> list[PointId]:
        """The originals the daemon found behind the memory when it was read."""
        return self._read[record.id]["lineage"]

    def forget(self, ids: Sequence[PointId | str]) -> Any:
        from reverie.ledger.release import Release

        found = [self._call("DELETE", f"/memories/{point_id}") for point_id in ids]
        return Release(
            "deleted",
            [i for f in found for i in f["deleted"]],
            ", ".join(f["run_id"] for f in found if f["run_id"]) or None,
            [u for f in found for u in f["undone"]],
        )

    def consolidate(self, **options: Any) -> Any:
        from reverie.consolidation.engine import RunReport

        found = self._call("POST", "/runs", json=options)
        fields = RunReport.__dataclass_fields__
        return RunReport(**{k: v for k, v in found.items() if k in fields})

    def undo(self, target: str) -> Any:
        from reverie.ledger.undo import UndoReport

        return UndoReport(**self._call("POST", f"/undo/{target}"))

    def forget_faded(self, dry_run: bool = False) -> Any:
        from reverie.lifecycle.forgetting import ForgetReport

        found = self._call("POST", "/fade", json={"dry_run": dry_run})
        return ForgetReport(
            found["run_id"], found["dry_run"], found["due"], found["dormant"], found["kept_rewritten"]
        )

    def revive(self, point_id: str) -> Record:
        found = self._call("POST", f"/memories/{point_id}/revive")
        return Record(found["id"], None, _payload(found))

    def stats(self) -> dict[str, Any]:
        return self._call("GET", "/stats")

    def blend(
        self,
        parents: Sequence[str],
        weights: Sequence[float] | None = None,
        save: bool = False,
        partition: dict[str, Any] | None = None,
    ) -> Any:
        """The daemon's blend, as the same view the library's gives (`as_json`)."""
        body = {"parents": list(parents), "weights": weights, "save": save, "partition": partition or {}}
        return _Answered(self._call("POST", "/blend", json=body))

    @cached_property
    def layout(self) -> Layout:
        """The daemon's collection layout (how its memories' text is read)."""
        return from_description(self.stats()["layout"])

    def jobs(self) -> list[dict[str, Any]]:
        return self._call("GET", "/jobs")["jobs"]

    def run_job(self, job_id: str) -> dict[str, Any]:
        return self._call("POST", f"/jobs/{job_id}/run")

    def _call(self, method: str, path: str, **kwargs: Any) -> Any:
        try:
            response = self._http.request(method, path, **kwargs)
        except httpx.HTTPError as exc:
            raise StorageError(
                f"reverie serve (pid {self.daemon.pid}) holds this data directory but its API at "
                f"{self.daemon.url} does not answer ({exc}); wait for it or stop it"
            ) from None
        if response.is_success:
            return response.json()
        try:
            message = response.json()["error"]
        except (ValueError, KeyError, TypeError):
            message = response.text[:200]
        error = ERRORS.get(response.status_code, ReverieError)
        if error is UnauthorizedError:
            message += "; the CLI sends daemon.api_key from its config (REVERIE_DAEMON__API_KEY)"
        raise error(f"reverie serve at {self.daemon.url}: {message}")


class _Answered:
    """An API answer that is already the view the CLI prints."""

    def __init__(self, body: dict[str, Any]) -> None:
        self.body = body

    def as_json(self) -> dict[str, Any]:
        return self.body


def _payload(memory: dict[str, Any]) -> dict[str, Any]:
    """The stored payload back, bookkeeping included, for the terminal views."""
    return {**memory["payload"], p.KEY: memory["meta"]}
