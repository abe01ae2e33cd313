"""Inverters: embedding vectors back to text, each with its fidelity and where it came from.

Fidelity is cosine(embed(text), vector): the text is embedded again with the real
embedder, so an operator sees how far a text stands from the memory it names. The source
says what the text is: `inversion` (written for the vector), `inversion from members`
(written from a merged memory's member texts, which were candidates too), or `label` (a
member's own text was closest: nothing written came nearer).

`inversion.model` picks one:
  - "builtin" (the default): the guided search with the model shipped in the package
    (trained for all-MiniLM-L6-v2, on SmolLM2-135M-Instruct);
  - a directory made by `reverie inverter train` (the same search, another model);
  - "zero-shot": the guided search on the LM alone, for any embedder;
  - "gtr-base", or a directory holding vec2text's gtr-base inversion/ and corrector/:
    vec2text's pretrained corrector (needs the hub or its cache);
  - "none": no inversion (labels only).
"""

from __future__ import annotations

import copy
import hashlib
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Protocol

import numpy as np

from reverie.config import InversionSettings
from reverie.errors import InverterError, ReverieError
from reverie.inversion.embedders import Embedder, embedder_id
from reverie.inversion.guided import GuidedSearch, SearchSettings, Steering, Task
from reverie.inversion.phrasebook import Phrasebook
from reverie.storage.payload import FROM_MEMBERS, INVERSION, LABEL

GTR_BASE = "sentence-transformers/gtr-t5-base"
BUILTIN = "builtin"
ZERO_SHOT = "zero-shot"
NONE = "none"


@dataclass(frozen=True)
class Inversion:
    text: str
    fidelity: float
    source: str = INVERSION


class Inverter(Protocol):
    id: str
    embedder: Embedder
    embedder_id: str  # the embedder whose vectors it inverts
    batches: bool  # whether vectors inverted together cost less than one at a time

    def invert(
        self,
        vectors: np.ndarray,
        hypotheses: list[list[str]] | None = None,
        context: list[list[str]] | None = None,
    ) -> list[Inversion]:
        """A text per vector. `hypotheses[i]`: texts that stand for vector i already (a
        merged memory's members, a blend's parents): candidates, and where the search starts.
        `context[i]`: texts near it that are not its own (other memories): steering only."""


def builtin_model_dir() -> Path:
    return Path(str(resources.files("reverie").joinpath("models/minilm-smollm2")))


class GuidedInverter:
    """The guided search (guided.py), steered by a trained model or zero-shot. Vectors
    inverted together share each LM step, which costs little more for several than for one."""

    batches = True

    def __init__(
        self,
        embedder: Embedder,
        model_dir: Path | None,
        base_lm: str,
        settings: SearchSettings,
        model_cache: Path | None = None,
    ) -> None:
        from reverie.inversion.base_lm import load_base_lm
        from reverie.inversion.conditioning import load, read_meta
        from reverie.inversion.few_rows import multiply_weight_first

        have = embedder_id(embedder.model_name)
        try:
            embedder.load()  # the search embeds every candidate: no embedder, no inverter
        except ReverieError as exc:
            raise InverterError(f"the inverter needs the embedder: {exc}") from None
        if model_dir is not None:
            wanted = read_meta(model_dir).get("embedder")
            if wanted != have:
                raise InverterError(
                    f"the inverter in {model_dir} was trained for embedder {wanted!r}, but this "
                    f"collection is embedded with {have!r}: train one for it (`reverie inverter train "
                    '--embedder ...`) or set inversion.model = "zero-shot"'
                )
        lm = load_base_lm(base_lm, model_cache)
        embedder.load_ranking_copy(model_cache)  # it ranks every candidate: ranking_copy.py
        self.conditioner, self.meta = load(model_dir, lm) if model_dir is not None else (None, {})
        multiply_weight_first(lm.model)  # the search's steps multiply a few rows: few_rows.py
        self.phrasebook = Phrasebook.load(model_dir) if model_dir is not None else None
        self.embedder, self.embedder_id, self.settings = embedder, have, settings
        self.search = GuidedSearch(lm, embedder, settings)
        if model_dir is None:
            self.id = f"zero-shot@{lm.id}"
        else:
            digest = hashlib.sha256((model_dir / "inverter.safetensors").read_bytes())
            if self.phrasebook is not None:  # it steers the writing too: part of what the id names
                digest.update(self.phrasebook.codes.tobytes())
            self.id = f"{model_dir.name}@{digest.hexdigest()[:12]}"

    def with_settings(self, settings: SearchSettings) -> GuidedInverter:
        """The same loaded models, searching with other settings."""
        configured = copy.copy(self)
        configured.settings, configured.search = (
            settings,
            GuidedSearch(self.search.lm, self.embedder, settings),
        )
        return configured

    def invert(
        self,
        vectors: np.ndarray,
        hypotheses: list[list[str]] | None = None,
        context: list[list[str]] | None = None,
    ) -> list[Inversion]:
        tasks = [
            self._task(vector, hypotheses[row] if hypotheses else [], context[row] if context else [])
            for row, vector in enumerate(np.asarray(vectors, dtype=np.float32))
        ]
        return [
            Inversion(
                found.text,
                round(found.cosine, 4),
                LABEL if found.from_hypothesis else FROM_MEMBERS if task.hypotheses else INVERSION,
            )
            for task, found in zip(tasks, self.search.run(tasks), strict=True)
        ]

    def keywords(self, vector: np.ndarray) -> tuple[str, ...]:
        """The words the search's prompt names for a vector with no texts of its own
        (bench/inverter_keywords.py measures them)."""
        return self.search.steered(self._task(np.asarray(vector, dtype=np.float32), [], [])).keywords

    def _task(self, vector: np.ndarray, given: list[str], near: list[str]) -> Task:
        steering = (
            Steering()
            if self.conditioner is None
            else self.conditioner.steering(vector, self.settings.keywords, self.settings.keyword_pool)
        )
        return Task(vector, steering, given, self._context(vector, given, near))

    def _context(self, vector: np.ndarray, given: list[str], near: list[str]) -> list[str]:
        """What steers a vector with no texts of its own: the texts near it (its partition's)
        and the phrasebook's sentences nearest to it; the search keeps the closest."""
        if any(h.strip() for h in given) or self.phrasebook is None:
            return near
        return [*near, *self.phrasebook.shortlist(vector)]


class PretrainedCorrector:
    """vec2text's gtr-base inverter + corrector (hub, cache or a local directory)."""

    batches = True

    def __init__(self, source: str, embedder: Embedder, steps: int, beam_width: int = 1) -> None:
        from reverie.inversion.vec2text_adapter import load_pretrained_corrector

        if embedder_id(embedder.model_name) != GTR_BASE:
            raise InverterError(
                f"vec2text's gtr-base corrector inverts {GTR_BASE} embeddings only; "
                f"this collection is embedded with {embedder.model_name!r}"
            )
        self.embedder, self.steps, self.beam_width = embedder, steps, beam_width
        self.embedder_id = GTR_BASE
        self.corrector = load_pretrained_corrector(source)
        self.id = f"vec2text-gtr-base@{source}"

    def invert(
        self,
        vectors: np.ndarray,
        hypotheses: list[list[str]] | None = None,
        context: list[list[str]] | None = None,
    ) -> list[Inversion]:
        import torch

        from reverie.inversion.vec2text_adapter import invert_with_corrector

        texts = invert_with_corrector(self.corrector, torch.from_numpy(vectors), self.steps, self.beam_width)
        out = []
        for row, (text, vector) in enumerate(zip(texts, vectors, strict=True)):
            candidates = [text, *(hypotheses[row] if hypotheses else [])]
            scores = fidelity(self.embedder, candidates, np.repeat(vector[None], len(candidates), axis=0))
            best = int(np.argmax(scores))
            out.append(Inversion(candidates[best], scores[best], INVERSION if best == 0 else LABEL))
        return out


def fidelity(embedder: Embedder, texts: list[str], vectors: np.ndarray) -> list[float]:
    """cosine(embed(text), vector) per pair; an empty text has fidelity 0."""
    unit = vectors / np.maximum(np.linalg.norm(vectors, axis=1, keepdims=True), 1e-12)
    scores = np.zeros(len(texts))
    present = [i for i, t in enumerate(texts) if t.strip()]
    if present:
        embedded = embedder.encode([texts[i] for i in present])
        scores[present] = np.sum(embedded * unit[present], axis=1)
    return [round(float(s), 4) for s in scores]


def configured_inverter(
    settings: InversionSettings, embedder: Embedder, model: str | None = None
) -> Inverter | None:
    """The inverter the `[inversion]` settings name (`model` in place of inversion.model)."""
    s = settings
    return open_inverter(model or s.model, embedder, SearchSettings.of(s), s.base_lm, s.steps, s.model_cache)


def open_inverter(
    source: str,
    embedder: Embedder,
    settings: SearchSettings | None = None,
    base_lm: str | None = None,
    steps: int = 0,
    model_cache: Path | None = None,
) -> Inverter | None:
    """The inverter `inversion.model` names (None for "none"); see the module docstring.
    `model_cache`: where the base LM is converted (`inversion.model_cache`)."""
    from reverie.inversion.base_lm import SMOLLM2

    settings = settings or SearchSettings()
    base_lm = base_lm or SMOLLM2
    if source == NONE:
        return None
    path = Path(source).expanduser()
    if source == "gtr-base" or (path / "corrector").is_dir():
        return PretrainedCorrector(source, embedder, steps or 20, settings.beam_width)
    if source == ZERO_SHOT:
        return GuidedInverter(embedder, None, base_lm, settings, model_cache)
    return GuidedInverter(embedder, trained_model_dir(source), base_lm, settings, model_cache)


def trained_model_dir(source: str) -> Path:
    """The directory of a trained model: the builtin's for "builtin", a run directory's
    exported `model/`, or the directory given."""
    if source == BUILTIN:
        return builtin_model_dir()
    path = Path(source).expanduser()
    if (path / "model").is_dir() and not (path / "inverter.json").exists():
        return path / "model"  # a run directory: its exported model
    return path
