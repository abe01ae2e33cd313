"""Merge plans: what one merge will write, decided before anything is written."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any

import numpy as np

from reverie.consolidation.clustering import centroid
from reverie.storage import PointId, Record
from reverie.storage import payload as p

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

    def merged_record(self, run_id: str, text_key: str) -> Record:
        """The merged point as first written: state `committing`, with its lineage."""
        stamp = {
            "kind": p.MERGED,
            "state": p.COMMITTING,
            "weight": self.weight,
            "merged_from": self.member_ids,
            "member_fingerprints": {str(m.id): p.fingerprint(m) for m in self.members},
            "run_id": run_id,
            "merged_at": p.now(),
            "text_source": "pending",
        }
        embedders = {p.meta(m.payload).get("embedder") for m in self.members}
        if len(embedders) == 1 and None not in embedders:
            stamp["embedder"] = embedders.pop()
        payload = {**common_payload(self.members, text_key), p.KEY: stamp}
        return Record(id=self.merge_id, vector=self.vector, payload=payload)

    def describe(self, text_key: str) -> dict[str, Any]:
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
                    "text": _preview(m.payload.get(text_key)),
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


def common_payload(members: list[Record], text_key: str) -> dict[str, Any]:
    """Agent keys whose value every member shares (partition keys among them)."""
    first = p.agent_payload(members[0].payload)
    return {
        key: value
        for key, value in first.items()
        if key != text_key and all(m.payload.get(key) == value for m in members[1:])
    }


def _preview(text: Any, limit: int = 80) -> str | None:
    if not isinstance(text, str):
        return None
    return text if len(text) <= limit else text[: limit - 1] + "…"
