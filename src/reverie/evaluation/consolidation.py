"""`reverie eval consolidation`: merge quality and retrieval on labelled paraphrase groups.

Input: JSONL (optionally gzipped), one group a line: {"group": id, "texts": {variant: text}}.
All variants but one are written as memories; the remaining one is used as queries.
Each configuration runs the real engine on a fresh embedded store in a temporary directory.

Truth: two memories belong together when they share a group, or their texts are
identical (the same sentence under two labels is a true duplicate too).
"""

from __future__ import annotations

import gzip
import hashlib
import itertools
import json
import tempfile
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import structlog
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components

from reverie.config import Settings
from reverie.errors import InvalidInputError
from reverie.ledger.lineage import store_lineage_map
from reverie.storage import payload as p

log = structlog.get_logger("reverie.eval")

EXAMPLES = 5

ALGORITHMS = {
    "agglomerative-complete": ("agglomerative", "complete"),
    "agglomerative-average": ("agglomerative", "average"),
    "dbscan": ("dbscan", "complete"),
}


@dataclass
class Dataset:
    groups: list[str]
    memory_texts: list[str]
    memory_groups: list[str]
    query_texts: list[str]
    query_groups: list[str]
    memory_variants: list[str]
    query_variant: str
    skipped: list[str] = field(default_factory=list)  # "line N (group G): why", groups left out


def load_dataset(path: Path, limit: int | None, query_variant: str | None) -> Dataset:
    """The file's groups; a group with a missing or empty variant (a verse a translation
    omits) is left out and counted, and a line that is no group is an error naming it."""
    opener = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rt", encoding="utf-8") as handle:  # type: ignore[operator]
            lines = [(n, line) for n, line in enumerate(itertools.islice(handle, limit), 1) if line.strip()]
    except (OSError, UnicodeDecodeError) as exc:
        raise InvalidInputError(f"cannot read {path}: {exc}") from None
    rows = [(n, _group_row(path, n, line)) for n, line in lines]
    if not rows:
        raise InvalidInputError(f'{path}: no groups (expected lines like {{"group": ..., "texts": {{...}}}})')
    variants = list(rows[0][1]["texts"])
    query = query_variant or variants[-1]
    if query not in variants or len(variants) < 2:
        raise InvalidInputError(f"{path}: query variant {query!r} not among {variants}")
    memory_variants = [v for v in variants if v != query]
    data = Dataset([], [], [], [], [], memory_variants, query)
    for number, row in rows:
        group, texts = str(row["group"]), row["texts"]
        empty = [v for v in variants if not isinstance(texts.get(v), str) or not texts[v].strip()]
        if empty:
            data.skipped.append(f"line {number} (group {group}): no text for {', '.join(empty)}")
            continue
        data.groups.append(group)
        for variant in memory_variants:
            data.memory_texts.append(texts[variant])
            data.memory_groups.append(group)
        data.query_texts.append(texts[query])
        data.query_groups.append(group)
    if data.skipped:
        log.warning("eval.groups_skipped", count=len(data.skipped), first=data.skipped[:3])
    return data


def _group_row(path: Path, number: int, line: str) -> dict[str, Any]:
    try:
        row = json.loads(line)
    except json.JSONDecodeError as exc:
        raise InvalidInputError(f"{path} line {number}: not JSON ({exc.msg})") from None
    if not isinstance(row, dict) or "group" not in row or not isinstance(row.get("texts"), dict):
        where = f" (group {row['group']})" if isinstance(row, dict) and "group" in row else ""
        raise InvalidInputError(
            f'{path} line {number}{where}: expected {{"group": ..., "texts": {{variant: text}}}}'
        )
    return row


def evaluate_file(
    path: Path,
    settings: Settings,
    algorithms: list[str] | None = None,
    thresholds: list[float] | None = None,
    limit: int | None = None,
    write: str | None = None,
    query_translation: str | None = None,
) -> list[dict[str, Any]]:
    data = load_dataset(path, limit, query_translation)
    c = settings.consolidation
    default_name = f"{c.algorithm}-{c.linkage}" if c.algorithm == "agglomerative" else "dbscan"
    names = algorithms or [default_name]
    for name in names:
        if name not in ALGORITHMS:
            raise InvalidInputError(f"unknown algorithm {name!r}: choose from {', '.join(ALGORITHMS)}")
    memories, queries = embed_dataset(data, settings)
    results = []
    for name in names:
        for threshold in thresholds or [c.threshold]:
            result = evaluate_config(data, memories, queries, settings, name, threshold)
            result["data"] = str(path)
            results.append(result)
            log.info("eval.result", **result)
    if write:
        from reverie.evaluation.consolidation_report import write_report

        write_report(results, Path(write))
    return results


def embed_dataset(data: Dataset, settings: Settings) -> tuple[np.ndarray, np.ndarray]:
    """Memory and query vectors, cached under data_dir/eval-cache (minutes on a CPU)."""
    from reverie.inversion.embedders import Embedder

    e = settings.embedder
    embedder = Embedder(e.model, e.device, e.batch_size)
    cache = settings.storage.data_dir / "eval-cache"
    return _embed_cached(embedder, data.memory_texts, cache), _embed_cached(embedder, data.query_texts, cache)


def head(
    data: Dataset, memories: np.ndarray, queries: np.ndarray, groups: int
) -> tuple[Dataset, np.ndarray, np.ndarray]:
    """The first `groups` groups of an embedded dataset (rows are stored group by group)."""
    per_group = len(data.memory_variants)
    m = groups * per_group
    small = Dataset(
        data.groups[:groups],
        data.memory_texts[:m],
        data.memory_groups[:m],
        data.query_texts[:groups],
        data.query_groups[:groups],
        data.memory_variants,
        data.query_variant,
    )
    return small, memories[:m], queries[:groups]


def evaluate_config(
    data: Dataset,
    memories: np.ndarray,
    queries: np.ndarray,
    settings: Settings,
    name: str,
    threshold: float,
) -> dict[str, Any]:
    from reverie.memory import NewMemory, Reverie

    algorithm, linkage = ALGORITHMS[name]
    with tempfile.TemporaryDirectory(prefix="reverie-eval-") as tmp:
        local = settings.model_copy(deep=True)
        local.storage.url = None
        local.storage.data_dir = Path(tmp)
        local.storage.layout = "reverie"
        local.consolidation.partition_keys = []
        with Reverie.open(local) as rv:
            rv.write(
                [
                    NewMemory(vector, rv.new_payload(text, {"group": group}, {}), index)
                    for index, (vector, text, group) in enumerate(
                        zip(memories, data.memory_texts, data.memory_groups, strict=True)
                    )
                ]
            )
            before = _retrieval(rv, queries, data)
            started = time.perf_counter()
            report = rv.consolidate(algorithm=algorithm, linkage=linkage, threshold=threshold)
            seconds = time.perf_counter() - started
            lineages = store_lineage_map(rv.store, rv.collection, rv.archive)
            after = _retrieval(rv, queries, data, lineages)
            clusters = list(lineages.values())
    precision, recall, f1 = pair_scores(clusters, data)
    t_precision, t_recall, t_f1 = _transitive_scores(clusters, data)
    return {
        "algorithm": name,
        "threshold": threshold,
        "groups": len(data.groups),
        "groups_skipped": len(data.skipped),
        "skipped_examples": data.skipped[:EXAMPLES],
        "memories": len(data.memory_texts),
        "queries_from": data.query_variant,
        "precision": round(precision, 4),
        "recall": round(recall, 4),
        "f1": round(f1, 4),
        "transitive_precision": round(t_precision, 4),
        "transitive_recall": round(t_recall, 4),
        "transitive_f1": round(t_f1, 4),
        "points_before": report.points_before,
        "points_after": report.points_after,
        "compression": round(report.points_after / max(report.points_before, 1), 4),
        "recall_at_1_before": before[0],
        "recall_at_5_before": before[1],
        "recall_at_1_after": after[0],
        "recall_at_5_after": after[1],
        "consolidate_seconds": round(seconds, 2),
        "stages": report.timings,
        "false_merge_examples": _false_merges(clusters, data, EXAMPLES),
    }


def pair_scores(clusters: list[list[Any]], data: Dataset) -> tuple[float, float, float]:
    """Pairwise precision, recall and F1; a pair is true when it shares a group or a text."""
    groups = data.memory_groups
    texts = [_norm(t) for t in data.memory_texts]

    def true_pairs(idx: list[int]) -> int:
        both = Counter((groups[i], texts[i]) for i in idx)
        return _pairs(Counter(groups[i] for i in idx)) + _pairs(Counter(texts[i] for i in idx)) - _pairs(both)

    return _scores(clusters, true_pairs(list(range(len(groups)))), true_pairs)


def _transitive_scores(clusters: list[list[Any]], data: Dataset) -> tuple[float, float, float]:
    """The same, with truth closed under transitivity: a verse's translations are one
    thought, and so is every verse that shares one of those texts word for word."""
    classes = _truth_classes(data)
    return _scores(clusters, _pairs(Counter(classes)), lambda idx: _pairs(Counter(classes[i] for i in idx)))


def _truth_classes(data: Dataset) -> list[int]:
    """Connected components of memories linked through their group and their text."""
    n = len(data.memory_groups)
    group_ids = {g: i for i, g in enumerate(dict.fromkeys(data.memory_groups))}
    texts = [_norm(t) for t in data.memory_texts]
    text_ids = {t: i for i, t in enumerate(dict.fromkeys(texts))}
    rows = np.concatenate([np.arange(n), np.arange(n)])
    cols = np.concatenate(
        [
            n + np.array([group_ids[g] for g in data.memory_groups]),
            n + len(group_ids) + np.array([text_ids[t] for t in texts]),
        ]
    )
    size = n + len(group_ids) + len(text_ids)
    graph = coo_matrix((np.ones(rows.size), (rows, cols)), shape=(size, size))
    _, labels = connected_components(graph, directed=False)
    return labels[:n].tolist()


def _scores(
    clusters: list[list[Any]], true_total: int, true_in: Callable[[list[int]], int]
) -> tuple[float, float, float]:
    predicted = correct = 0
    for members in clusters:
        idx = [int(i) for i in members]
        predicted += len(idx) * (len(idx) - 1) // 2
        correct += true_in(idx)
    precision = correct / predicted if predicted else 1.0
    recall = correct / true_total if true_total else 1.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return precision, recall, f1


def _false_merges(clusters: list[list[Any]], data: Dataset, limit: int) -> list[list[str]]:
    """Merged groups that the labels call wrong (several verses, differing texts): the
    ones to read before tuning against them."""
    examples = []
    for members in clusters:
        idx = [int(i) for i in members]
        if (
            len({data.memory_groups[i] for i in idx}) > 1
            and len({_norm(data.memory_texts[i]) for i in idx}) > 1
        ):
            examples.append([f"[{data.memory_groups[i]}] {data.memory_texts[i]}" for i in idx[:6]])
            if len(examples) == limit:
                break
    return examples


def _pairs(counts: Counter[Any]) -> int:
    return sum(n * (n - 1) // 2 for n in counts.values())


def _norm(text: str) -> str:
    return " ".join(text.lower().split())


def _retrieval(
    rv: Any, queries: np.ndarray, data: Dataset, lineages: dict[str, list[Any]] | None = None
) -> tuple[float, float]:
    """Hit@1 and hit@5 of the queries; `lineages`: live id -> originals, once merged."""
    from reverie.storage import QueryRequest

    groups = data.memory_groups
    hits1 = hits5 = 0
    requests = [QueryRequest(q, 5, filter=p.searchable_filter()) for q in queries]
    for start in range(0, len(requests), 512):
        results = rv.store.query_batch(rv.collection, requests[start : start + 512])
        for offset, hits in enumerate(results):
            target = data.query_groups[start + offset]
            found = [
                any(groups[int(i)] == target for i in (lineages or {}).get(str(h.id), [h.id])) for h in hits
            ]
            hits1 += bool(found[:1] and found[0])
            hits5 += any(found)
    n = max(len(queries), 1)
    return round(hits1 / n, 4), round(hits5 / n, 4)


def _embed_cached(embedder: Any, texts: list[str], cache: Path) -> np.ndarray:
    """Embedding the whole file takes minutes on a CPU; a sweep reuses one embedding."""
    digest = hashlib.sha1(embedder.model_name.encode())
    for text in texts:
        digest.update(text.encode() + b"\0")
    path = cache / f"{digest.hexdigest()}.npy"
    if path.is_file():
        return np.load(path)
    vectors = embedder.encode(texts, progress=True)
    cache.mkdir(parents=True, exist_ok=True)
    np.save(path, vectors)
    return vectors


def result_lines(results: list[dict[str, Any]]) -> list[str]:
    head = (
        f"{'algorithm':<24}{'thr':>6}{'prec':>7}{'recall':>7}{'F1':>7}{'F1 tr.':>7}{'after/before':>13}"
        f"{'R@1 before':>11}{'R@1 after':>10}{'R@5 before':>11}{'R@5 after':>10}{'secs':>7}"
    )
    lines = [head]
    for r in results:
        lines.append(
            f"{r['algorithm']:<24}{r['threshold']:>6.2f}{r['precision']:>7.3f}{r['recall']:>7.3f}"
            f"{r['f1']:>7.3f}{r['transitive_f1']:>7.3f}{r['compression']:>13.3f}{r['recall_at_1_before']:>11.3f}"
            f"{r['recall_at_1_after']:>10.3f}{r['recall_at_5_before']:>11.3f}"
            f"{r['recall_at_5_after']:>10.3f}{r['consolidate_seconds']:>7.1f}"
        )
    skipped = results[0]["groups_skipped"] if results else 0
    if skipped:
        example = results[0]["skipped_examples"][0]
        lines.append(f"{skipped} group(s) left out for a missing or empty variant, e.g. {example}")
    return lines
