"""`reverie inverter eval`: how well an inverter turns vectors back into text, and how fast.

Three measurements, each on real text:
- sentences: pure inversion of held-out sentences (no hypotheses), with the metrics of the
  vec2text paper: token F1 (lower-cased words, bag overlap per sentence, averaged), BLEU,
  exact match, and the cosine of the re-embedded text to the target; how well the texts
  read: the LM's perplexity of them against its perplexity of the sentences themselves
  (inversion/fluency.py); per search setting, with the seconds each vector took;
- merges: paraphrase groups consolidated for real (a temporary embedded store), each
  merged memory read back; its shown text against its label (the closest member text),
  which the search must never fall below;
- blends: pairs of unrelated sentences blended; the text's cosine to the blend against
  the better parent's (a blend text is good when it beats both parents).
"""

from __future__ import annotations

import gzip
import json
import tempfile
import time
from collections import Counter
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np

from reverie.errors import InvalidInputError
from reverie.inversion.base_lm import BaseLM, load_base_lm
from reverie.inversion.fluency import perplexity
from reverie.inversion.guided import SearchSettings
from reverie.inversion.inverter import GuidedInverter, Inverter
from reverie.progress import with_progress

EXAMPLES = 8


def token_f1(prediction: str, reference: str) -> float:
    predicted, expected = Counter(prediction.lower().split()), Counter(reference.lower().split())
    overlap = sum((predicted & expected).values())
    if overlap == 0:
        return 0.0
    precision, recall = overlap / sum(predicted.values()), overlap / sum(expected.values())
    return 2 * precision * recall / (precision + recall)


def _mean(values: Any) -> float:
    return round(float(np.mean(list(values))), 4)


def evaluate_sentences(
    inverter: Inverter,
    sentences: list[str],
    settings: list[SearchSettings | None],
    progress: bool = False,
    batch: int = 1,
) -> list[dict[str, Any]]:
    """One row per search setting (None: the inverter's own) on the same sentences,
    inverted `batch` at a time (1: as a first read is; the invert job's batch_size: as the
    job is); the seconds of a vector are its batch's over the batch's size."""
    import sacrebleu

    vectors = inverter.embedder.encode(sentences)
    reader = _reader(inverter)
    reference = perplexity(reader, sentences)
    rows = []
    batches = [vectors[start : start + batch] for start in range(0, len(vectors), batch)]
    for setting in settings:
        configured = _configured(inverter, setting)
        results, seconds = [], []
        for chunk in with_progress(batches, "inverting", "batch", progress):
            started = time.perf_counter()
            results += configured.invert(chunk)
            seconds += [(time.perf_counter() - started) / len(chunk)] * len(chunk)
        texts = [r.text for r in results]
        rows.append(
            {
                "search": asdict(setting) if setting else "default",
                "batch": batch,
                "sentences": len(sentences),
                "token_f1": _mean(token_f1(t, s) for t, s in zip(texts, sentences, strict=True)),
                "cosine": _mean(r.fidelity for r in results),
                "bleu": round(sacrebleu.corpus_bleu(texts, [sentences]).score, 2),
                "exact_match": _mean(t.strip() == s.strip() for t, s in zip(texts, sentences, strict=True)),
                "perplexity": perplexity(reader, texts),
                "reference_perplexity": reference,
                "seconds_per_vector": round(float(np.mean(seconds)), 3),
                "seconds_p90": round(float(np.percentile(seconds, 90)), 3),
                "examples": [
                    {"target": s, "inverted": t} for s, t in zip(sentences[:EXAMPLES], texts, strict=False)
                ],
            }
        )
    return rows


def _reader(inverter: Inverter) -> BaseLM:
    """The LM that judges how well texts read: the guided inverter's own, else SmolLM2."""
    return inverter.search.lm if isinstance(inverter, GuidedInverter) else load_base_lm()


def evaluate_merges(
    inverter: Inverter, groups_file: Path, groups: int, progress: bool = False
) -> dict[str, Any]:
    """Consolidate the first `groups` paraphrase groups for real and read every merged
    memory back: the text shown against its label."""
    from reverie.config import Settings
    from reverie.inversion.lazy import cached_text
    from reverie.memory import Reverie
    from reverie.storage import payload as p

    texts = [t for group in read_groups(groups_file, groups) for t in group]
    settings = Settings()
    settings.storage.layout = "reverie"
    settings.consolidation.partition_keys = []
    rows = []
    with tempfile.TemporaryDirectory(prefix="reverie-inverter-eval-") as tmp:
        settings.storage.data_dir = Path(tmp)
        with Reverie.open(settings, inverter.embedder, inverter) as rv:
            rv.remember(texts)
            rv.consolidate(full=True)
            merged = [r for r in rv.live_records() if p.meta(r.payload).get("kind") == p.MERGED]
            for record in with_progress(merged, "merged memories", "merge", progress):
                label = cached_text(record, rv.layout)
                started = time.perf_counter()
                shown = rv.text(record)
                seconds = time.perf_counter() - started
                rows.append((label, shown, seconds, p.weight(record.payload)))
    if not rows:
        raise InvalidInputError(f"the first {groups} groups of {groups_file} gave no merges to read back")
    return {
        "groups": groups,
        "merges": len(rows),
        "label_fidelity": _mean(label.fidelity for label, *_ in rows),
        "shown_fidelity": _mean(shown.fidelity for _, shown, *_ in rows),
        "below_label": sum(shown.fidelity < label.fidelity - 1e-4 for label, shown, *_ in rows),
        "written_beats_label": _mean(shown.source != "label" for _, shown, *_ in rows),
        "seconds_per_merge": _mean(seconds for *_, seconds, _ in rows),
        "seconds_p50": round(float(np.median([seconds for *_, seconds, _ in rows])), 3),
        "examples": [
            {
                "label": label.text,
                "label_fidelity": label.fidelity,
                "shown": shown.text,
                "source": shown.source,
                "fidelity": shown.fidelity,
                "members": weight,
            }
            for label, shown, _, weight in rows[:EXAMPLES]
        ],
    }


def evaluate_blends(
    inverter: Inverter, sentences: list[str], pairs: int, seed: int = 0, progress: bool = False
) -> dict[str, Any]:
    """Blends of `pairs` pairs of unrelated sentences (cosine under 0.3): the text's cosine
    to the blend against the better parent's."""
    vectors = inverter.embedder.encode(sentences)
    rng = np.random.default_rng(seed)
    chosen: list[tuple[int, int]] = []
    while len(chosen) < pairs:
        a, b = (int(i) for i in rng.choice(len(sentences), size=2, replace=False))
        if float(vectors[a] @ vectors[b]) < 0.3:
            chosen.append((a, b))
    rows = []
    for a, b in with_progress(chosen, "blends", "blend", progress):
        blend = vectors[a] + vectors[b]
        blend /= np.linalg.norm(blend)
        started = time.perf_counter()
        found = inverter.invert(blend[None], [[sentences[a], sentences[b]]])[0]
        parent = max(float(vectors[a] @ blend), float(vectors[b] @ blend))
        rows.append((a, b, found, parent, time.perf_counter() - started))
    return {
        "pairs": pairs,
        "blend_fidelity": _mean(found.fidelity for _, _, found, *_ in rows),
        "better_parent_cosine": _mean(parent for *_, parent, _ in rows),
        "beats_both_parents": _mean(found.fidelity > parent + 1e-4 for _, _, found, parent, _ in rows),
        "seconds_per_blend": _mean(seconds for *_, seconds in rows),
        "examples": [
            {
                "a": sentences[a],
                "b": sentences[b],
                "blend": found.text,
                "fidelity": found.fidelity,
                "better_parent": round(parent, 4),
            }
            for a, b, found, parent, _ in rows[:EXAMPLES]
        ],
    }


def _configured(inverter: Inverter, settings: SearchSettings | None) -> Inverter:
    if settings is None or not hasattr(inverter, "with_settings"):
        return inverter
    return inverter.with_settings(settings)


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


def read_groups(path: Path, limit: int) -> list[list[str]]:
    """The first `limit` paraphrase groups with every variant non-empty."""
    groups = []
    with gzip.open(path, "rt", encoding="utf-8") if path.suffix == ".gz" else path.open() as f:
        for line in f:
            texts = [t for t in json.loads(line)["texts"].values() if isinstance(t, str) and t.strip()]
            if len(texts) > 1:
                groups.append(texts)
            if len(groups) >= limit:
                break
    return groups


def result_lines(result: dict[str, Any]) -> list[str]:
    lines = [f"inverter {result['inverter']}"]
    lines.append(
        f"{'search':<40} {'n':>5} {'tok F1':>7} {'cosine':>7} {'BLEU':>6} {'s/vec':>6} "
        f"{'perplexity (source)':>20}"
    )
    for row in result["sentences"]:
        search = row["search"] if isinstance(row["search"], str) else _short(row["search"])
        lines.append(
            f"{search:<40} {row['sentences']:>5} {row['token_f1']:>7.3f} {row['cosine']:>7.3f} "
            f"{row['bleu']:>6.2f} {row['seconds_per_vector']:>6.2f} "
            f"{row['perplexity']:>10.1f} ({row['reference_perplexity']:.1f})"
        )
    for example in result["sentences"][-1]["examples"][:5]:
        lines.append(f"  {example['target']!r}\n    -> {example['inverted']!r}")
    merges = result.get("merges")
    if merges:
        m = merges
        lines.append(
            f"{m['merges']} merged memories: shown fidelity {m['shown_fidelity']:.3f} against their labels' "
            f"{m['label_fidelity']:.3f}; below the label: {m['below_label']}; a written text beat the label "
            f"in {100 * m['written_beats_label']:.0f}%"
        )
    blends = result.get("blends")
    if blends:
        b = blends
        lines.append(
            f"{b['pairs']} blends of unrelated sentences: fidelity {b['blend_fidelity']:.3f} against the "
            f"better parent's {b['better_parent_cosine']:.3f}; closer than both parents in "
            f"{100 * b['beats_both_parents']:.0f}%"
        )
    return lines


def _short(search: dict[str, Any]) -> str:
    keys = {
        "beam_width": "beam",
        "expand": "expand",
        "patience": "patience",
        "keywords": "kw",
        "polish": "polish",
    }
    return " ".join(f"{short} {search[key]}" for key, short in keys.items())
