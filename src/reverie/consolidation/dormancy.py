"""Waking a dormant memory: its archive copy back into the live collection as it was.

Forgetting (lifecycle/forgetting.py) revives with it, and a release (release.py) wakes what
an agent deletes or rewrites while it, or a merge above it, sleeps: a delete must reach a
memory whatever its state, and nothing may stay behind for revive or undo to restore.
Crash-safe by order: the live point is written first, then the copy goes; a copy whose id
is live is void, and forget recovery drops it.
"""

from __future__ import annotations

from typing import Any

import structlog

from reverie.consolidation.runs import RunLog
from reverie.storage import Filter, Match, Record, Store
from reverie.storage import payload as p

log = structlog.get_logger("reverie.dormancy")

DORMANT_ONLY = Filter(must=(Match(f"{p.KEY}.state", p.DORMANT),))


def wake(
    store: Store,
    collection: str,
    archive: str,
    run_log: RunLog,
    copy: Record,
    why: str,
    use: dict[str, Any] | None = None,
) -> Record:
    """`copy` (a dormant archive copy, with its vector) live again in the state it had;
    `use`, when given, replaces its use record (a read is an access). The forget run that
    put it to sleep records `why` it woke (`revived`, `released`), so its undo skips it."""
    dormant = p.meta(copy.payload).get("dormant", {})
    payload = p.with_meta(copy.payload, state=dormant.get("was", p.LIVE), dormant=None)
    if use is not None:
        payload = p.with_meta(payload, use=use)
    record = Record(copy.id, copy.vector, payload, copy.others)
    store.upsert(collection, [record])
    store.delete(archive, [copy.id], only=DORMANT_ONLY)
    if dormant.get("run_id"):
        run_log.set_merge_status(dormant["run_id"], str(copy.id), why)
    log.info("dormant.woken", id=copy.id, run_id=dormant.get("run_id"), why=why)
    return record
