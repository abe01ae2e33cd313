"""Merge plans: what one merge will write, decided before anything is written."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any

import numpy as np

from reverie.consolidation.clustering import centroid
from reverie.ledger.usage import inherited
from reverie.storage import PointId, Record
from reverie.storage import payload as p
from reverie.storage.base import SparseVector, Vector
from reverie.storage.layouts import Layout

SPARSE_KEEP = 2.0  # a merged sparse vector keeps this many times its largest member's terms

# Merged ids are uuid5 names under this namespace, so one set of members always
# yields the same id and re-applying a plan cannot create a second merged point.
MERGE_NAMESPACE = uuid.UUID("6f1c2a8e-3b7d-5e90-a4c1-2d8f0b9e7a13")


def merged_id(member_ids: list[PointId]) -> str:
    return str(uuid.uuid5(MERGE_NAMESPACE, ",".join(sorted(str(i) for i in member_ids))))


@dataclass
class MergePlan:
    merge_id: str
    members: list[Record]
    vector: np.ndarray
    weight: float
    member_similarities: list[float]
    min_pair_similarity: float

    @property
    def member_ids(self) -> list[PointId]:
        return [m.id for m in self.members]

    def merged_record(self, run_id: str, layout: Layout, label: Label | None) -> Record:
        """The merged point as first written: state `committing`, with its lineage, in the
        writer's own shape (its text field holds the label until an inversion arrives)."""
        stamp: dict[str, Any] = {
            "kind": p.MERGED,
            "state": p.COMMITTING,
            "weight": self.weight,
            "merged_from": self.member_ids,
            "member_fingerprints": {str(m.id): p.fingerprint(m) for m in self.members},
            "run_id": run_id,
            "merged_at": p.now(),
            "text_source": p.PENDING if label is None else p.LABEL,
            "use": inherited([m.payload for m in self.members]).as_payload(),
        }
        if label is not None:
            stamp["label"] = {"id": label.source, "cosine": label.cosine}
        embedders = {p.meta(m.payload).get("embedder") for m in self.members}
        if len(embedders) == 1 and None not in embedders:
            stamp["embedder"] = embedders.pop()
        text = None if label is None else label.text
        payload = {
            **layout.merged_payload(self.members, text, self.merge_id, stamp["merged_at"]),
            p.KEY: stamp,
        }
        weights = np.array([p.weight(m.payload) for m in self.members], dtype=np.float64)
        record = Record(self.merge_id, self.vector, payload, merged_others(self.members, weights))
        stamp["fingerprint"] = p.fingerprint(record)  # an agent's rewrite of it shows (undo.py)
        return record

    def describe(self, layout: Layout) -> dict[str, Any]:
        """The plan as a run record and a log event show it."""
        return {
            "merge_id": self.merge_id,
            "size": len(self.members),
            "weight": self.weight,
            "min_pair_similarity": round(self.min_pair_similarity, 4),
            "members": [
                {
                    "id": m.id,
                    "weight": p.weight(m.payload),
                    "similarity": round(s, 4),
                    "text": _preview(layout.shown_text(m.payload)),
                }
                for m, s in zip(self.members, self.member_similarities, strict=True)
            ],
        }


def plan_merges(
    records: list[Record], unit: np.ndarray, weights: np.ndarray, groups: list[np.ndarray]
) -> list[MergePlan]:
    plans = []
    for group in groups:
        vector = centroid(unit, weights, group)
        sims = unit[group] @ vector
        pair = unit[group] @ unit[group].T
        members = [records[i] for i in group]
        plans.append(
            MergePlan(
                merge_id=merged_id([m.id for m in members]),
                members=members,
                vector=vector,
                weight=float(weights[group].sum()),
                member_similarities=[float(s) for s in sims],
                min_pair_similarity=float(pair.min()),
            )
        )
    return plans


@dataclass(frozen=True)
class Label:
    """The text a merged point shows until it is inverted: the original member text
    closest to its vector, with that member's id and cosine."""

    text: str
    source: PointId
    cosine: float


def merged_others(members: list[Record], weights: np.ndarray) -> dict[str, Vector]:
    """The merged point's other vectors: each named dense vector the members share as its
    weighted centroid, each sparse vector as the weighted mean of the members that have
    one, pruned to its strongest terms (so the writer's hybrid search finds it)."""
    out: dict[str, Vector] = {}
    for name in members[0].others:
        values = [m.others.get(name) for m in members]
        if all(isinstance(v, np.ndarray) for v in values):
            unit = np.stack([v / max(float(np.linalg.norm(v)), 1e-12) for v in values])  # type: ignore[operator]
            out[name] = centroid(unit, weights, np.arange(len(members)))
    sparse_names = {n for m in members for n, v in m.others.items() if isinstance(v, SparseVector)}
    for name in sorted(sparse_names):
        out[name] = _sparse_mean(
            [(m.others[name], w) for m, w in zip(members, weights, strict=True) if name in m.others]  # type: ignore[misc]
        )
    return out


def _sparse_mean(vectors: list[tuple[SparseVector, float]]) -> SparseVector:
    total = sum(w for _, w in vectors)
    indices = np.concatenate([v.indices for v, _ in vectors])
    values = np.concatenate([v.values * (w / total) for v, w in vectors])
    terms, where = np.unique(indices, return_inverse=True)
    summed = np.zeros(terms.size, dtype=np.float64)
    np.add.at(summed, where, values)
    keep = int(SPARSE_KEEP * max(v.indices.size for v, _ in vectors))
    if terms.size > keep:
        strongest = np.sort(np.argsort(-np.abs(summed), kind="stable")[:keep])
        terms, summed = terms[strongest], summed[strongest]
    return SparseVector(terms, summed.astype(np.float32))


def _preview(text: Any, limit: int = 80) -> str | None:
    if not isinstance(text, str):
        return None
    return text if len(text) <= limit else text[: limit - 1] + "…"
