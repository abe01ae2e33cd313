"""Inverters: embedding vectors back to text, with the fidelity of each result.

Fidelity is cosine(embed(text), vector): the text is embedded again with the real
embedder, so an operator sees how far an inverted text stands from the memory it names.
Two kinds: a model trained by `reverie inverter train` (inversion only; with a beam, the
candidates are re-ranked by fidelity), and vec2text's pretrained gtr-base corrector
(inversion plus N correction steps).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import torch

from reverie.errors import InverterError
from reverie.inversion.embedders import Embedder, embedder_id
from reverie.inversion.vec2text_adapter import (
    WEIGHTS,
    invert_with_corrector,
    load_inversion_model,
    load_pretrained_corrector,
    read_meta,
)

GTR_BASE = "sentence-transformers/gtr-t5-base"


@dataclass(frozen=True)
class Inversion:
    text: str
    fidelity: float


class Inverter(Protocol):
    id: str
    embedder: Embedder
    embedder_id: str  # the embedder whose vectors it inverts

    def texts(self, vectors: np.ndarray) -> list[str]: ...


def invert(inverter: Inverter, vectors: np.ndarray) -> list[Inversion]:
    """Texts for unit or non-unit vectors, each with its fidelity."""
    vectors = np.asarray(vectors, dtype=np.float32)
    texts = inverter.texts(vectors)
    return [Inversion(t, f) for t, f in zip(texts, fidelity(inverter.embedder, texts, vectors), strict=True)]


def fidelity(embedder: Embedder, texts: list[str], vectors: np.ndarray) -> list[float]:
    unit = vectors / np.maximum(np.linalg.norm(vectors, axis=1, keepdims=True), 1e-12)
    scores = np.zeros(len(texts))
    present = [i for i, t in enumerate(texts) if t.strip()]  # an empty decode has fidelity 0
    if present:
        embedded = embedder.encode([texts[i] for i in present])
        scores[present] = np.sum(embedded * unit[present], axis=1)
    return [round(float(s), 4) for s in scores]


class TrainedInverter:
    """A model made by `reverie inverter train`."""

    def __init__(
        self, directory: Path, embedder: Embedder, beam_width: int = 1, max_length: int = 32
    ) -> None:
        meta = read_meta(directory)
        wanted, have = meta.get("embedder"), embedder_id(embedder.model_name)
        if wanted != have:
            raise InverterError(
                f"the inverter in {directory} was trained for embedder {wanted!r}, "
                f"but this collection is embedded with {have!r}: train one for it "
                "(`reverie inverter train --embedder ...`)"
            )
        self.meta, self.embedder, self.embedder_id = meta, embedder, have
        self.beam_width, self.max_length = beam_width, max_length
        self.model = load_inversion_model(directory, embedder.model)
        digest = hashlib.sha256((directory / WEIGHTS).read_bytes()).hexdigest()[:12]
        self.id = f"{directory.name}@{digest}"

    def texts(self, vectors: np.ndarray) -> list[str]:
        beams = self.beam_width
        with torch.no_grad():
            generated = self.model.generate(
                inputs={"frozen_embeddings": torch.from_numpy(vectors)},
                generation_kwargs={
                    "max_length": self.max_length,
                    "num_beams": beams,
                    "num_return_sequences": beams,
                    "do_sample": False,
                    "early_stopping": beams > 1,
                },
            )
        candidates = self.model.tokenizer.batch_decode(generated, skip_special_tokens=True)
        candidates = [c.strip() for c in candidates]
        if beams == 1:
            return candidates
        # vec2text's sequence-level beam: keep the candidate the embedder puts closest
        repeated = np.repeat(vectors, beams, axis=0)
        scores = np.array(fidelity(self.embedder, candidates, repeated)).reshape(-1, beams)
        return [candidates[row * beams + int(best)] for row, best in enumerate(scores.argmax(axis=1))]


class PretrainedCorrector:
    """vec2text's gtr-base inverter + corrector (hub, cache or a local directory)."""

    def __init__(self, source: str, embedder: Embedder, steps: int, beam_width: int = 1) -> None:
        if embedder_id(embedder.model_name) != GTR_BASE:
            raise InverterError(
                f"vec2text's gtr-base corrector inverts {GTR_BASE} embeddings only; "
                f"this collection is embedded with {embedder.model_name!r}"
            )
        self.embedder, self.steps, self.beam_width = embedder, steps, beam_width
        self.embedder_id = GTR_BASE
        self.corrector = load_pretrained_corrector(source)
        self.id = f"vec2text-gtr-base@{source}"

    def texts(self, vectors: np.ndarray) -> list[str]:
        return invert_with_corrector(self.corrector, torch.from_numpy(vectors), self.steps, self.beam_width)


def open_inverter(source: str, embedder: Embedder, steps: int = 0, beam_width: int = 1) -> Any:
    """`source`: "gtr-base", a directory with vec2text's gtr-base models, or a directory
    made by `reverie inverter train` (or its `model/` folder)."""
    path = Path(source).expanduser()
    if source == "gtr-base" or (path / "corrector").is_dir():
        return PretrainedCorrector(source, embedder, steps, beam_width)
    if (path / "model").is_dir() and not (path / WEIGHTS).exists():
        path = path / "model"
    if steps:
        raise InverterError(
            f"the inverter in {path} has no corrector: set inversion.steps = 0 "
            "(inversion.beam_width re-ranks candidates instead)"
        )
    return TrainedInverter(path, embedder, beam_width)
