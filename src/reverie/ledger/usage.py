"""A memory's record of use, kept in its payload (`_reverie.use`): what happened, never a score.

Written by reads (lifecycle/accesses.py) and inherited by merges (a merged point's use sums
its members'), so it belongs with the recorded changes; lifecycle/retention.py turns it into
a strength when someone asks.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from reverie.storage import payload as p

DAY = 86_400.0


@dataclass(frozen=True)
class Use:
    """What a memory's history of use comes to: stored under `_reverie.use`."""

    count: int  # accesses: search hits, direct reads, merges it was named in
    last: datetime  # the last access, or when it was written
    spaced: int  # accesses that came at least spacing_hours after the one before

    def as_payload(self) -> dict[str, Any]:
        return {
            "count": self.count,
            "last": self.last.isoformat(timespec="milliseconds"),
            "spaced": self.spaced,
        }


def parse_time(text: Any) -> datetime | None:
    if not isinstance(text, str):
        return None
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        return None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def use_of(payload: dict[str, Any]) -> Use:
    """A memory's use as recorded; one never used starts when it was written (or adopted)."""
    stamp = p.meta(payload)
    raw = stamp.get("use") if isinstance(stamp.get("use"), dict) else {}
    last = parse_time(raw.get("last"))
    if last is None:
        written = stamp.get("created_at") or stamp.get("merged_at") or stamp.get("adopted_at")
        last = parse_time(written) or p.utcnow()
    return Use(count=_counter(raw.get("count")), last=last, spaced=_counter(raw.get("spaced")))


def _counter(value: Any) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) and value >= 0 else 0


def inherited(members: list[dict[str, Any]]) -> Use:
    """A merged point's use: its members' counts summed, their latest access, and the
    stability of the strongest (a fact learnt several ways is at least as strong)."""
    uses = [use_of(payload) for payload in members]
    return Use(sum(u.count for u in uses), max(u.last for u in uses), max(u.spaced for u in uses))
