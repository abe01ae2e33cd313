"""Blends: the normalised weighted mean of chosen vectors (the seed's A + B -> C), read back
as text the way a merged memory is.

A blend text is good when it lands closer to the blend than either parent does: each
parent's own text is a candidate (a hypothesis of the search), so the text shown is never
further from the blend than the better parent, and the search may find one closer.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from reverie.errors import InvalidInputError
from reverie.storage import Record
from reverie.storage import payload as p

if TYPE_CHECKING:  # torch: not for a blend read back by its label
    from reverie.inversion.inverter import Inverter


@dataclass
class Parent:
    """One parent: a memory (by id) or a text given as is."""

    name: str  # the id or the quoted text, as asked for
    vector: np.ndarray
    text: str | None
    memory_id: str | None = None
    cosine: float = 0.0  # to the blend, filled in by `blend`


@dataclass
class Blend:
    vector: np.ndarray
    parents: list[Parent]
    weights: list[float]
    text: str | None = None
    fidelity: float | None = None
    source: str = p.LABEL
    saved_id: str | None = None
    run_id: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    def as_json(self) -> dict[str, Any]:
        return {
            "text": self.text,
            "fidelity": self.fidelity,
            "text_source": self.source,
            "parents": [
                {
                    "parent": x.name,
                    "id": x.memory_id,
                    "text": x.text,
                    "cosine": round(x.cosine, 4),
                    "weight": w,
                }
                for x, w in zip(self.parents, self.weights, strict=True)
            ],
            "saved_id": self.saved_id,
            "run_id": self.run_id,
        }

    def record(self, point_id: str, run_id: str, payload: dict[str, Any], embedder: str) -> Record:
        """The blend as a memory of kind `blend`: its parents as lineage, in `payload`'s layout."""
        lineage = [
            {"parent": x.name, "id": x.memory_id, "weight": w, "cosine": round(x.cosine, 4)}
            for x, w in zip(self.parents, self.weights, strict=True)
        ]
        stamp = {
            "kind": p.BLEND,
            "state": p.LIVE,
            "weight": 1.0,
            "blended_from": lineage,
            "run_id": run_id,
            "created_at": p.now(),
            "text_source": self.source,
            "fidelity": self.fidelity,
            "embedder": embedder,
        }
        return Record(point_id, self.vector, {**payload, p.KEY: stamp})


def blend(parents: list[Parent], weights: list[float] | None = None) -> Blend:
    """normalize(sum w_i * unit(v_i)); each parent's cosine to the result filled in."""
    if len(parents) < 2:
        raise InvalidInputError(f"a blend needs at least two parents, got {len(parents)}")
    weights = [1.0 / len(parents)] * len(parents) if weights is None else list(weights)
    if len(weights) != len(parents):
        raise InvalidInputError(
            f"{len(weights)} weights for {len(parents)} parents: give one weight per parent"
        )
    if not all(np.isfinite(weights)) or any(w < 0 for w in weights) or sum(weights) <= 0:
        raise InvalidInputError(f"weights {weights}: each must be >= 0, finite, and their sum above 0")
    dimension = parents[0].vector.shape
    for parent in parents:
        problem = p.vector_problem(parent.vector, dimension[0] if dimension else None)
        if problem:
            raise InvalidInputError(f"parent {parent.name!r}: {problem}")
    units = np.stack([x.vector / np.linalg.norm(x.vector.astype(np.float64)) for x in parents])
    total = (np.asarray(weights)[:, None] * units).sum(axis=0)
    norm = float(np.linalg.norm(total))
    if norm < 1e-9:
        raise InvalidInputError("the weighted parents cancel out (their blend is the zero vector)")
    vector = (total / norm).astype(np.float32)
    for parent, unit in zip(parents, units, strict=True):
        parent.cosine = float(unit @ vector)
    return Blend(vector, parents, weights)


def read_back(result: Blend, inverter: Inverter | None) -> None:
    """The blend's text: inverted with the parents' texts as candidates, or, without an
    inverter, the parent text closest to it (a label)."""
    texts = [x.text for x in result.parents if x.text]
    if inverter is not None and result.vector.size != inverter.embedder.dimension:
        raise InvalidInputError(
            f"the blend is {result.vector.size}-dimensional, and the inverter ({inverter.id}) reads "
            f"{inverter.embedder.dimension}-dimensional vectors of {inverter.embedder_id}: set "
            'inversion.model to one for this collection\'s embedder, or "none" for labels'
        )
    if inverter is not None:
        found = inverter.invert(result.vector[None], [texts])[0]
        result.text, result.fidelity, result.source = found.text, found.fidelity, found.source
    elif texts:
        best = max((x for x in result.parents if x.text), key=lambda x: x.cosine)
        result.text, result.fidelity, result.source = best.text, round(best.cosine, 4), p.LABEL


def parse_weights(text: str | None) -> list[float] | None:
    """`--weights 0.5,0.5`."""
    if text is None:
        return None
    try:
        return [float(w) for w in text.split(",")]
    except ValueError:
        raise InvalidInputError(
            f"--weights {text!r}: expected numbers separated by commas, e.g. 0.5,0.5"
        ) from None
