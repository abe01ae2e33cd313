"""The collection's distance, honoured: merges must stand where the agents' own search
looks for them.

Thresholds are cosine similarities on every distance (pairs are compared on unit vectors),
so they mean the same whatever the collection searches by. What differs is the merged
vector and the neighbour query:
- Cosine: the normalised weighted centroid (Qdrant normalises on write anyway);
- Dot: the same direction at the members' weighted mean length, so a dot-product search
  ranks the merged memory as it ranked its members; neighbour queries take no score
  threshold (scores are dot products, not cosines) and pairs are judged by cosine after;
- Euclid, Manhattan: honoured where the vectors are unit length (then distance orders as
  cosine does); on vectors of other lengths a merge would stand where the search does not
  look for its members, so the run refuses, naming the distance and the lengths it saw.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from reverie.errors import ConfigError
from reverie.storage import Record

COSINE, DOT = "Cosine", "Dot"
UNIT_TOLERANCE = 1e-3  # an agent's float32 unit vectors are unit to about 1e-7


@dataclass(frozen=True)
class Geometry:
    distance: str
    collection: str

    @property
    def keeps_length(self) -> bool:
        """Whether a merged vector keeps its members' weighted mean length (Dot)."""
        return self.distance == DOT

    def score_threshold(self, cosine: float) -> float | None:
        """The threshold a neighbour query may give the index: only a cosine index's
        scores are cosines."""
        return cosine if self.distance == COSINE else None

    def check(self, records: list[Record]) -> None:
        """Refuse vectors whose geometry a merge cannot honour (see the module docstring)."""
        if self.distance in (COSINE, DOT):
            return
        norms = np.array([np.linalg.norm(r.vector) for r in records if r.vector is not None])
        off = norms[np.abs(norms - 1.0) > UNIT_TOLERANCE]
        if off.size:
            raise ConfigError(
                f"collection {self.collection!r} is searched by {self.distance} distance and "
                f"{off.size} of its vectors are not unit length (lengths {off.min():.3g} to "
                f"{off.max():.3g}): a merged vector would stand where that search does not look "
                "for its members, so reverie merges nothing here. Normalise the vectors, or use a "
                "Cosine or Dot collection"
            )

    def scaled(self, vector: np.ndarray, members: list[Record], weights: np.ndarray) -> np.ndarray:
        """The merged vector: a unit centroid, at the members' weighted mean length on Dot."""
        if not self.keeps_length:
            return vector
        lengths = np.array([np.linalg.norm(np.asarray(m.vector, dtype=np.float64)) for m in members])
        return (vector * float(weights @ lengths / weights.sum())).astype(np.float32)
