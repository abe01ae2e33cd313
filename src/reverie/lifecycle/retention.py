"""How strong a memory is: MemoryBank's forgetting curve with spaced reinforcement.

Retention R = exp(-dt / S), dt the days since the memory was last used (or written), S its
stability in days: `memory.stability_days` times one more than its spaced accesses (each at
least `memory.spacing_hours` after the one before; MemoryBank adds one to S per recall).
Used again and again over days, a memory fades ever more slowly; read five times in a
minute, it is as strong as read once. R never falls below `memory.floor`: a decay that reaches zero makes a
memory unrecallable for good (KiroCrew #12154). Computed when needed, never rewritten on
a timer: the payload keeps only what happened (`use`: count, last, spaced), so a change
of settings applies to every memory at once.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import numpy as np

from reverie.config import MemorySettings
from reverie.storage import payload as p

DAY = 86_400.0
STRENGTH_BINS = 10


@dataclass(frozen=True)
class Use:
    """What a memory's history of use comes to: stored under `_reverie.use`."""

    count: int  # accesses: search hits, direct reads, merges it was named in
    last: datetime  # the last access, or when it was written
    spaced: int  # accesses that came at least spacing_hours after the one before

    def stability(self, settings: MemorySettings) -> float:
        """S, in days."""
        return settings.stability_days * (1 + self.spaced)

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


def retention(use: Use, at: datetime, settings: MemorySettings) -> float:
    """R = exp(-dt/S), at least the floor; a clock that went backwards counts as dt = 0."""
    dt = max(0.0, (at - use.last).total_seconds()) / DAY
    return max(settings.floor, math.exp(-dt / use.stability(settings)))


def reinforced(use: Use, accesses: int, at: datetime, settings: MemorySettings) -> Use:
    """The use after `accesses` more, the latest at `at`: S grows once if they come spaced."""
    spaced = (at - use.last).total_seconds() >= settings.spacing_hours * 3600
    return Use(use.count + accesses, max(use.last, at), use.spaced + int(spaced))


def inherited(members: list[dict[str, Any]]) -> Use:
    """A merged point's use: its members' counts summed, their latest access, and the
    stability of the strongest (a fact learnt several ways is at least as strong)."""
    uses = [use_of(payload) for payload in members]
    return Use(sum(u.count for u in uses), max(u.last for u in uses), max(u.spaced for u in uses))


def strength_summary(
    payloads: Iterable[dict[str, Any]], at: datetime, settings: MemorySettings
) -> dict[str, Any]:
    """Retention of each memory now, as a 10-bin histogram over 0-1 (for stats and its plot)."""
    values = np.array([retention(use_of(payload), at, settings) for payload in payloads])
    counts = np.histogram(values, bins=STRENGTH_BINS, range=(0.0, 1.0))[0]
    return {
        "memories": int(values.size),
        "mean": round(float(values.mean()), 4) if values.size else None,
        "histogram": counts.tolist(),
    }
