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
from datetime import datetime
from typing import Any

import numpy as np

from reverie.config import MemorySettings
from reverie.ledger.usage import DAY, Use, use_of

STRENGTH_BINS = 10


def stability(use: Use, settings: MemorySettings) -> float:
    """S, in days."""
    return settings.stability_days * (1 + use.spaced)


def retention(use: Use, at: datetime, settings: MemorySettings) -> float:
    """R = exp(-dt/S), at least the floor; a clock that went backwards counts as dt = 0."""
    dt = max(0.0, (at - use.last).total_seconds()) / DAY
    return max(settings.floor, math.exp(-dt / stability(use, settings)))


def reinforced(use: Use, accesses: int, at: datetime, settings: MemorySettings) -> Use:
    """The use after `accesses` more, the latest at `at`: S grows once if they come spaced."""
    spaced = (at - use.last).total_seconds() >= settings.spacing_hours * 3600
    return Use(use.count + accesses, max(use.last, at), use.spaced + int(spaced))


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
