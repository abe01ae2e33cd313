"""`reverie inverter eval`: how well an inverter turns embeddings back into their text.

The metrics of the vec2text paper on held-out sentences: BLEU (sacrebleu), exact match,
token F1 (lower-cased words, bag overlap per sentence, averaged), and the cosine between
the re-embedded output and the target embedding; each at plain decoding and with its
search turned on (correction steps for the gtr-base corrector, a re-ranked beam for a
trained inverter). Then the case reverie meets in practice: centroids of paraphrase
groups, which no one ever wrote, compared with the best a label can do (the member text
closest to the centroid).
"""

from __future__ import annotations

import copy
import gzip
import json
import time
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np
from tqdm import tqdm

from reverie.errors import InvalidInputError
from reverie.inversion.inverter import Inverter, invert


def token_f1(prediction: str, reference: str) -> float:
    predicted, expected = Counter(prediction.lower().split()), Counter(reference.lower().split())
    overlap = sum((predicted & expected).values())
    if overlap == 0:
        return 0.0
    precision, recall = overlap / sum(predicted.values()), overlap / sum(expected.values())
    return 2 * precision * recall / (precision + recall)


def score(predictions: list[str], references: list[str], cosines: list[float]) -> dict[str, float]:
    import sacrebleu

    pairs = list(zip(predictions, references, strict=True))
    return {
        "bleu": round(sacrebleu.corpus_bleu(predictions, [references]).score, 2),
        "exact_match": _mean(p.strip() == r.strip() for p, r in pairs),
        "token_f1": _mean(token_f1(p, r) for p, r in pairs),
        "cosine": _mean(cosines),
    }


def _mean(values: Any) -> float:
    return round(float(np.mean(list(values))), 4)


def _batched_invert(
    inverter: Inverter, vectors: np.ndarray, batch: int, desc: str, progress: bool
) -> tuple[list[Any], float]:
    results: list[Any] = []
    started = time.perf_counter()
    for start in tqdm(range(0, len(vectors), batch), desc=desc, disable=not progress, unit="batch"):
        results.extend(invert(inverter, vectors[start : start + batch]))
    return results, time.perf_counter() - started


def evaluate_sentences(
    inverter: Any,
    sentences: list[str],
    searches: list[dict[str, int]],
    batch: int = 32,
    progress: bool = False,
) -> list[dict[str, Any]]:
    """One row per search setting (steps, beam_width) on the same sentences."""
    vectors = inverter.embedder.encode(sentences)
    rows = []
    for search in searches:
        configured = _with_search(inverter, search)
        results, seconds = _batched_invert(configured, vectors, batch, f"invert {search}", progress)
        texts = [r.text for r in results]
        rows.append(
            {
                **search,
                "sentences": len(sentences),
                **score(texts, sentences, [r.fidelity for r in results]),
                "ms_per_vector": round(1000 * seconds / len(sentences), 1),
                "examples": [
                    {"target": t, "inverted": r.text} for t, r in zip(sentences[:8], results[:8], strict=True)
                ],
            }
        )
    return rows


def evaluate_centroids(
    inverter: Any, groups_file: Path, limit: int, search: dict[str, int]
) -> dict[str, Any]:
    """Invert the centroid of each paraphrase group and compare its fidelity with that of
    the member text closest to the centroid (what a label shows)."""
    groups = _read_groups(groups_file, limit)
    embedder = inverter.embedder
    centroids, label_cosines, labels = [], [], []
    for texts in groups:
        vectors = embedder.encode(texts)
        centre = vectors.mean(axis=0)
        centre /= np.linalg.norm(centre)
        cosines = vectors @ centre
        centroids.append(centre)
        label_cosines.append(float(cosines.max()))
        labels.append(texts[int(cosines.argmax())])
    results = invert(_with_search(inverter, search), np.stack(centroids).astype(np.float32))
    return {
        **search,
        "groups": len(groups),
        "inversion_fidelity": _mean(r.fidelity for r in results),
        "label_fidelity": _mean(label_cosines),
        "inversion_beats_label": _mean(r.fidelity > c for r, c in zip(results, label_cosines, strict=True)),
        "examples": [
            {"label": label, "inverted": r.text, "fidelity": r.fidelity}
            for label, r in zip(labels[:8], results[:8], strict=True)
        ],
    }


def _with_search(inverter: Any, search: dict[str, int]) -> Any:
    """The same loaded model with other search settings (a shallow copy: no second load)."""
    configured = copy.copy(inverter)
    configured.beam_width = search.get("beam_width", 1)
    if hasattr(inverter, "steps"):
        configured.steps = search.get("steps", 0)
    return configured


def read_sentences(path: Path, limit: int | None) -> list[str]:
    opener = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rt", encoding="utf-8") as f:  # type: ignore[operator]
            sentences = [line.strip() for line in f if line.strip()]
    except (OSError, UnicodeDecodeError) as exc:
        raise InvalidInputError(f"cannot read {path}: {exc}") from None
    if not sentences:
        raise InvalidInputError(f"{path} holds no sentences (one a line)")
    return sentences[:limit] if limit else sentences


def _read_groups(path: Path, limit: int) -> list[list[str]]:
    groups = []
    with gzip.open(path, "rt", encoding="utf-8") as f:
        for line in f:
            texts = list(json.loads(line)["texts"].values())
            groups.append(texts)
            if len(groups) >= limit:
                break
    return groups


def result_lines(result: dict[str, Any]) -> list[str]:
    lines = [f"inverter {result['inverter']}"]
    columns = ("steps", 5), ("beam", 4), ("n", 6), ("BLEU", 6), ("exact", 6), ("tok F1", 6), ("cosine", 6)
    lines.append(" ".join(f"{name:>{width}}" for name, width in columns) + f" {'ms/vec':>7}")
    for row in result["sentences"]:
        lines.append(
            f"{row['steps']:>5} {row['beam_width']:>4} {row['sentences']:>6} {row['bleu']:>6.2f} "
            f"{row['exact_match']:>6.3f} {row['token_f1']:>6.3f} {row['cosine']:>6.3f} "
            f"{row['ms_per_vector']:>7.1f}"
        )
    for example in result["sentences"][-1]["examples"][:5]:
        lines.append(f"  {example['target']!r}\n    -> {example['inverted']!r}")
    centroids = result.get("centroids")
    if centroids:
        lines.append(
            f"centroids of {centroids['groups']} paraphrase groups: inversion fidelity "
            f"{centroids['inversion_fidelity']:.3f}, closest-member label {centroids['label_fidelity']:.3f} "
            f"(inversion closer in {100 * centroids['inversion_beats_label']:.0f}% of groups)"
        )
    return lines
