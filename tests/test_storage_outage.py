"""Qdrant goes away in the middle of a consolidation and comes back.

The run fails with an error naming the server, the API answers 503 meanwhile and
`/readyz` says why, nothing acknowledged is lost, and once the server answers again the
next run settles what the failed one left in flight. The server is qdrant-client's local
mode behind a switch that fails every call the way the server adapter does when a
server stops answering (StorageUnreachableError); the outage starts at each store write
of the run in turn, once before the write reaches the server and once after (the reply
is what gets lost)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from reverie.config import Settings
from reverie.daemon.api import create_app
from reverie.daemon.service import Service
from reverie.errors import StorageUnreachableError
from reverie.memory import Reverie
from reverie.storage import Store
from test_crash_safety import expected_clusters

from conftest import make_store
from helpers import check_invariants, memories, near_duplicates, running

WRITES = {"upsert", "delete", "set_payload"}


class Outage:
    """A real store that stops answering at its Nth write once armed, until `end()`."""

    def __init__(self, inner: Store, reply_lost: bool) -> None:
        self._inner = inner
        self._reply_lost = reply_lost
        self.down_at: int | None = None
        self.writes = 0
        self.down = False

    def arm(self, down_at: int) -> None:
        self.down_at, self.writes = down_at, 0

    def end(self) -> None:
        self.down = False
        self.down_at = None

    def __getattr__(self, name: str) -> Any:
        method = getattr(self._inner, name)
        if not callable(method):
            return method

        def call(*args: Any, **kwargs: Any) -> Any:
            if self.down:
                raise StorageUnreachableError(
                    "Qdrant at http://127.0.0.1:6333 is unreachable: connection refused"
                )
            if name in WRITES and self.down_at is not None and args[1]:
                self.writes += 1
                if self.writes == self.down_at:
                    self.down = True
                    if self._reply_lost:
                        method(*args, **kwargs)
                    raise StorageUnreachableError(
                        "Qdrant at http://127.0.0.1:6333 is unreachable: connection reset"
                    )
            return method(*args, **kwargs)

        return call


@pytest.mark.parametrize("reply_lost", [False, True], ids=["before-write", "reply-lost"])
def test_an_outage_at_every_write_of_a_run_loses_nothing(tmp_path: Path, reply_lost: bool) -> None:
    vectors, labels = near_duplicates(groups=3, per_group=3, seed=5)
    down_at, outages = 1, 0
    while True:
        settings = Settings()
        settings.storage.data_dir = tmp_path / f"{reply_lost}-{down_at}"
        outage = Outage(make_store("local", tmp_path), reply_lost)
        with Reverie(settings, outage) as rv, running(create_app(Service(rv))) as api:  # type: ignore[arg-type]
            rv.write(memories(vectors, labels))
            outage.arm(down_at)
            run = api.post("/runs", json={})
            if not outage.down:  # the run made fewer writes than down_at: every one was tried
                assert run.status_code == 200
                break
            outages += 1
            assert run.status_code == 503 and "is unreachable" in run.json()["error"]
            _assert_unavailable(api.get, api.post)
            outage.end()
            assert api.get("/readyz").status_code == 200
            assert api.post("/runs", json={}).status_code == 200  # recovers first, then merges
            check_invariants(rv, set(range(9)))
            lineages = sorted(sorted(int(i) for i in rv.lineage(r)) for r in rv.live_records())
            assert lineages == expected_clusters(labels), f"outage at write {down_at}"
            assert {r.status for r in rv.run_log.runs()} == {"failed", "done"}
        down_at += 1
    assert outages >= 6  # each step of apply (write merged, archive, mark, verified, delete, live)


def _assert_unavailable(get: Callable[..., Any], post: Callable[..., Any]) -> None:
    ready = get("/readyz")
    assert ready.status_code == 503 and "is unreachable" in ready.json()["storage"]
    write = post("/memories", json={"memories": [{"vector": [1.0] + [0.0] * 31}]})
    assert write.status_code == 503 and "is unreachable" in write.json()["error"]
