"""Run records that survive restarts: one SQLite file beside the data.

A run row holds its counts and stage timings; a merge row holds its members,
similarities and status, for `reverie runs` and undo. A merge is on record as
`applying` (an undo as `undoing`) before the store is touched, then `applied`/`skipped`
(`undone`); recovery settles what a crash left at the first status (reconcile.py).
Recovery never depends on this file: in-flight merges are recovered from Qdrant itself.
"""

from __future__ import annotations

import json
import secrets
import sqlite3
import threading
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from reverie.errors import NotFoundError, StorageError

SCHEMA = """
CREATE TABLE IF NOT EXISTS runs (
    run_id TEXT PRIMARY KEY,
    kind TEXT NOT NULL,
    collection TEXT NOT NULL,
    started_at TEXT NOT NULL,
    finished_at TEXT,
    status TEXT NOT NULL,
    summary TEXT NOT NULL DEFAULT '{}'
);
CREATE TABLE IF NOT EXISTS merges (
    merge_id TEXT NOT NULL,
    run_id TEXT NOT NULL REFERENCES runs(run_id),
    status TEXT NOT NULL,
    detail TEXT NOT NULL,
    PRIMARY KEY (merge_id, run_id)
);
CREATE INDEX IF NOT EXISTS merges_by_id ON merges(merge_id);
"""


def new_run_id() -> str:
    """Sortable by time, unique across daemons: r-20261129T221600-3f9a1c."""
    return f"r-{datetime.now(UTC):%Y%m%dT%H%M%S}-{secrets.token_hex(3)}"


# merge rows a pruning keeps: undo, revive and recovery read them
STILL_NEEDED = ("applied", "saved", "dormant", "applying", "undoing", "forgetting")
IN_FLIGHT = ("applying", "undoing", "forgetting")  # recovery settles these: their run stays whole
# the kind of a pruned run, read off the merge rows it still holds
KIND_OF_STATUS = {"applied": "consolidate", "saved": "blend", "dormant": "forget"}


@dataclass
class RunRecord:
    run_id: str
    kind: str
    collection: str
    started_at: str
    finished_at: str | None
    status: str
    summary: dict[str, Any] = field(default_factory=dict)


@dataclass
class MergeRecord:
    merge_id: str
    run_id: str
    status: str
    detail: dict[str, Any]


class RunLog:
    def __init__(self, path: Path) -> None:
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            self._db = sqlite3.connect(str(path), check_same_thread=False, isolation_level=None)
        except (OSError, sqlite3.Error) as exc:
            raise StorageError(
                f"cannot keep the run log in {path.parent} (storage.data_dir): {exc}"
            ) from None
        self._db.execute("PRAGMA journal_mode=WAL")
        # NORMAL is crash-safe in WAL mode (only a power cut may drop the last commits)
        # and spares an fsync per merge record
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.executescript(SCHEMA)
        self._lock = threading.Lock()

    def start(self, run_id: str, kind: str, collection: str, started_at: str) -> None:
        with self._lock:
            self._db.execute(
                "INSERT INTO runs (run_id, kind, collection, started_at, status) VALUES (?,?,?,?,?)",
                (run_id, kind, collection, started_at, "running"),
            )

    def add_merge(self, run_id: str, merge_id: str, status: str, detail: dict[str, Any]) -> None:
        self.add_merges(run_id, [(merge_id, status, detail)])

    def add_merges(self, run_id: str, merges: list[tuple[str, str, dict[str, Any]]]) -> None:
        """Record (merge id, status, detail) rows in one transaction (a new status replaces
        the old one)."""
        rows = [
            (merge_id, run_id, status, json.dumps(detail, default=str)) for merge_id, status, detail in merges
        ]
        with self._lock:
            self._db.execute("BEGIN")
            try:
                self._db.executemany(
                    "INSERT OR REPLACE INTO merges (merge_id, run_id, status, detail) VALUES (?,?,?,?)", rows
                )
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._db.execute("COMMIT")

    def set_merge_status(self, run_id: str, merge_id: str, status: str) -> None:
        with self._lock:
            self._db.execute(
                "UPDATE merges SET status=? WHERE run_id=? AND merge_id=?",
                (status, run_id, merge_id),
            )

    def finish(self, run_id: str, status: str, finished_at: str, summary: dict[str, Any]) -> None:
        with self._lock:
            self._db.execute(
                "UPDATE runs SET status=?, finished_at=?, summary=? WHERE run_id=?",
                (status, finished_at, json.dumps(summary, default=str), run_id),
            )

    def prune(self, older_than: str, keep_max: int) -> dict[str, int]:
        """Keep runs started since `older_than`, at most the newest `keep_max`. An older run
        goes with its merge rows, but for the rows something still needs (an applied merge's
        undo, a saved blend's, a dormant memory's revive): those stay, compacted to their
        ids, and the run is read off them when asked for (`get_run`, status `pruned`). A run
        with merges in flight stays whole for recovery. The file shrinks after."""
        old = (
            "SELECT run_id FROM runs WHERE status != 'running' AND (started_at < ? OR run_id NOT IN "
            "(SELECT run_id FROM runs ORDER BY started_at DESC, run_id DESC LIMIT ?)) "
            f"AND run_id NOT IN (SELECT run_id FROM merges WHERE status IN ({_marks(IN_FLIGHT)}))"
        )
        bounds = (older_than, keep_max, *IN_FLIGHT)
        with self._lock:
            self._db.execute("BEGIN")
            try:
                rows = self._db.execute(
                    f"DELETE FROM merges WHERE status NOT IN ({_marks(STILL_NEEDED)}) AND run_id IN ({old})",
                    (*STILL_NEEDED, *bounds),
                ).rowcount
                self._db.execute(  # compact: a dormant row keeps the id revive reads
                    "UPDATE merges SET detail = CASE WHEN status = 'dormant' "
                    "THEN json_object('id', json_extract(detail, '$.id')) ELSE '{}' END "
                    f"WHERE run_id IN ({old})",
                    bounds,
                )
                runs = self._db.execute(f"DELETE FROM runs WHERE run_id IN ({old})", bounds).rowcount
                rows += self._db.execute(  # rows of runs pruned before, needed no more (undone...)
                    f"DELETE FROM merges WHERE status NOT IN ({_marks(STILL_NEEDED)}) "
                    "AND run_id NOT IN (SELECT run_id FROM runs)",
                    STILL_NEEDED,
                ).rowcount
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._db.execute("COMMIT")
            if rows or runs:
                self._db.execute("VACUUM")
        return {"runs": runs, "merge_rows": rows}

    def interrupt_running(self, finished_at: str) -> list[str]:
        """Mark runs left `running` by a process that died as `interrupted`."""
        with self._lock:
            rows = self._db.execute("SELECT run_id FROM runs WHERE status='running'").fetchall()
            self._db.execute(
                "UPDATE runs SET status='interrupted', finished_at=? WHERE status='running'", (finished_at,)
            )
        return [row[0] for row in rows]

    def merges_in_status(self, status: str) -> list[MergeRecord]:
        with self._lock:
            rows = self._db.execute(
                "SELECT merge_id, run_id, status, detail FROM merges WHERE status=? ORDER BY rowid", (status,)
            ).fetchall()
        return [MergeRecord(m, r, s, json.loads(d)) for m, r, s, d in rows]

    def runs(self, limit: int = 20) -> list[RunRecord]:
        with self._lock:
            rows = self._db.execute(
                "SELECT * FROM runs ORDER BY started_at DESC, run_id DESC LIMIT ?", (limit,)
            ).fetchall()
        return [_run(row) for row in rows]

    def count(self, kind: str) -> int:
        """Runs of one kind on record (what pruning left)."""
        with self._lock:
            return int(self._db.execute("SELECT COUNT(*) FROM runs WHERE kind=?", (kind,)).fetchone()[0])

    def get_run(self, run_id: str) -> RunRecord:
        """A run on record, or one pruned that still holds rows undo or revive need."""
        with self._lock:
            row = self._db.execute("SELECT * FROM runs WHERE run_id=?", (run_id,)).fetchone()
            kept = self._db.execute("SELECT DISTINCT status FROM merges WHERE run_id=?", (run_id,)).fetchall()
        if row is not None:
            return _run(row)
        kinds = {KIND_OF_STATUS[status] for (status,) in kept if status in KIND_OF_STATUS}
        if len(kinds) != 1:
            raise NotFoundError(f"unknown run id: {run_id!r} (see `reverie runs`)")
        summary = {"note": "pruned from the run log (runs.keep_days, runs.keep_max); what undo needs is kept"}
        return RunRecord(run_id, kinds.pop(), "", "", None, "pruned", summary)

    def merges(self, run_id: str) -> list[MergeRecord]:
        with self._lock:
            rows = self._db.execute(
                "SELECT merge_id, run_id, status, detail FROM merges WHERE run_id=? ORDER BY rowid",
                (run_id,),
            ).fetchall()
        return [MergeRecord(m, r, s, json.loads(d)) for m, r, s, d in rows]

    def mark_gone(self, merge_ids: list[str], status: str) -> None:
        """Merges on record as applied whose points are gone: `deleted` with their
        originals (vanished.py), or `dropped` as an old layer by archive retention."""
        with self._lock:
            self._db.executemany(
                "UPDATE merges SET status=? WHERE merge_id=? AND status='applied'",
                [(status, m) for m in merge_ids],
            )

    def find_merge(self, merge_id: str) -> MergeRecord:
        """The run that applied `merge_id` (a merged point's id), or saved it (a blend)."""
        with self._lock:
            row = self._db.execute(
                "SELECT merge_id, run_id, status, detail FROM merges "
                "WHERE merge_id=? AND status IN ('applied', 'saved', 'undone') ORDER BY rowid DESC",
                (merge_id,),
            ).fetchone()
        if row is None:
            raise NotFoundError(f"unknown run or merge id: {merge_id!r} (see `reverie runs`)")
        return MergeRecord(row[0], row[1], row[2], json.loads(row[3]))

    def close(self) -> None:
        with self._lock:
            self._db.close()


def _marks(values: tuple[str, ...]) -> str:
    return ",".join("?" * len(values))


def _run(row: tuple[Any, ...]) -> RunRecord:
    run_id, kind, collection, started_at, finished_at, status, summary = row
    return RunRecord(run_id, kind, collection, started_at, finished_at, status, json.loads(summary))
