"""Ranking by memory, not only by similarity: Generative Agents' retrieval score.

score = w_rel * relevance + w_rec * recency + w_imp * importance, each part min-max
normalised over the candidates (the nearest `recall.candidates` times k): relevance the
cosine to the query, recency `recall.recency_decay` per hour since the last access, and
importance the payload's `importance` where the writer gave one (0-1, or 1-10 as
Generative Agents rate it), else the memory's retention (retention.py): what is used
often and lately outranks a slightly closer memory nobody reads.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime
from typing import Any

import numpy as np

from reverie.config import MemorySettings, RecallSettings
from reverie.ledger.usage import use_of
from reverie.lifecycle.retention import retention
from reverie.storage import Hit
from reverie.storage import payload as p

HOUR = 3600.0
PARTS = ("relevance", "recency", "importance")


def importance(payload: dict[str, Any]) -> float | None:
    """The writer's own importance: a number in 0-1, or 1-10 (scaled); else None."""
    value = p.agent_payload(payload).get("importance")
    if value is None and isinstance(payload.get("metadata"), dict):
        value = payload["metadata"].get("importance")
    if not isinstance(value, int | float) or isinstance(value, bool) or not np.isfinite(value):
        return None
    return float(min(max(value / 10.0 if value > 1 else value, 0.0), 1.0))


def rank_by_memory(
    hits: list[Hit], k: int, recall: RecallSettings, memory: MemorySettings, at: datetime
) -> list[Hit]:
    """The k best of `hits` by the memory score, each with its parts (raw and weighted)."""
    if not hits:
        return []
    raw = np.array([_raw_parts(h, recall, memory, at) for h in hits], dtype=np.float64)
    span = raw.max(axis=0) - raw.min(axis=0)
    normalised = np.where(span > 0, (raw - raw.min(axis=0)) / np.where(span > 0, span, 1.0), 1.0)
    weights = np.array([recall.relevance_weight, recall.recency_weight, recall.importance_weight])
    scores = normalised @ weights
    order = np.argsort(-scores, kind="stable")[:k]
    ranked = []
    for row in order:
        parts = {name: round(float(raw[row, i]), 4) for i, name in enumerate(PARTS)}
        parts |= {f"{name}_normalised": round(float(normalised[row, i]), 4) for i, name in enumerate(PARTS)}
        ranked.append(replace(hits[row], score=round(float(scores[row]), 4), parts=parts))
    return ranked


def _raw_parts(hit: Hit, recall: RecallSettings, memory: MemorySettings, at: datetime) -> tuple[float, ...]:
    use = use_of(hit.payload)
    hours = max(0.0, (at - use.last).total_seconds()) / HOUR
    given = importance(hit.payload)
    return (
        hit.score,
        recall.recency_decay**hours,
        given if given is not None else retention(use, at, memory),
    )
