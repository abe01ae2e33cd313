"""Consolidation quality on a labelled paraphrase file: defaults, and a sweep.

    .venv/bin/python bench/consolidation_quality.py --data ../shared/data/bible-ot-paraphrases.jsonl.gz

1. The default settings on the whole file (the issue's targets).
2. Every algorithm (DBSCAN, agglomerative complete and average linkage) across a
   threshold sweep on the first --sweep-groups groups, drawn as a precision/recall plot.
Writes docs/consolidation-quality.md, docs/consolidation-pr.png and
bench/results/consolidation-quality.json. Embeddings are cached in reverie-data/eval-cache.
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path

from reverie.config import load_settings
from reverie.evaluation.consolidation import (
    ALGORITHMS,
    embed_dataset,
    evaluate_config,
    head,
    load_dataset,
    result_lines,
)
from reverie.evaluation.consolidation_report import write_report
from reverie.logs import configure_logging

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results" / "consolidation-quality.json"
THRESHOLDS = [0.70, 0.75, 0.78, 0.80, 0.82, 0.85, 0.88, 0.92]


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--data", type=Path, help="labelled JSONL(.gz); not needed with --render-only")
    parser.add_argument("--sweep-groups", type=int, default=3000)
    parser.add_argument("--skip-full", action="store_true", help="only the sweep")
    parser.add_argument("--render-only", action="store_true", help="redraw docs/ from bench/results")
    args = parser.parse_args()
    if args.render_only:
        render(json.loads(RESULTS.read_text()))
        return
    if args.data is None:
        parser.error("--data is required")
    settings = load_settings()
    settings.logging.level = "warning"
    configure_logging(settings.logging)
    data = load_dataset(args.data, None, None)
    started = time.perf_counter()
    memories, queries = embed_dataset(data, settings)
    print(f"embedded {len(memories) + len(queries)} texts in {time.perf_counter() - started:.0f} s")
    c = settings.consolidation
    default = f"{c.algorithm}-{c.linkage}" if c.algorithm == "agglomerative" else "dbscan"
    full = (
        [] if args.skip_full else [evaluate_config(data, memories, queries, settings, default, c.threshold)]
    )
    for line in result_lines(full):
        print(line)
    small, m, q = head(data, memories, queries, args.sweep_groups)
    sweep = []
    for name in ALGORITHMS:
        for threshold in THRESHOLDS:
            sweep.append(evaluate_config(small, m, q, settings, name, threshold))
            print(result_lines(sweep[-1:])[1], flush=True)
    results = {
        "data": str(args.data),
        "machine": platform.machine(),
        "sweep_groups": len(small.groups),
        "full": full,
        "sweep": sweep,
    }
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(results, indent=1) + "\n")
    render(results)


def render(results: dict) -> None:
    """docs/consolidation-quality.md and docs/consolidation-pr.png from the results."""
    write_report(results["sweep"], ROOT / "docs")
    (ROOT / "docs" / "consolidation-quality.md").write_text(_markdown(results))


def _examples(full: list[dict]) -> str:
    if not full:
        return "(not run)"
    blocks = []
    for cluster in full[0]["false_merge_examples"]:
        blocks.append("\n".join(f"- {text}" for text in cluster))
    return "\n\n".join(blocks)


def _markdown(results: dict) -> str:
    full, sweep = results["full"], results["sweep"]

    def table(rows: list[dict]) -> str:
        lines = [
            "| algorithm | threshold | precision | recall | F1 | F1 transitive | after/before "
            "| R@1 before | R@1 after | R@5 before | R@5 after | seconds |",
            "|---|---|---|---|---|---|---|---|---|---|---|---|",
        ]
        for r in rows:
            lines.append(
                f"| {r['algorithm']} | {r['threshold']:.2f} | {r['precision']:.3f} | {r['recall']:.3f} "
                f"| {r['f1']:.3f} | {r['transitive_f1']:.3f} | {r['compression']:.3f} "
                f"| {r['recall_at_1_before']:.3f} "
                f"| {r['recall_at_1_after']:.3f} | {r['recall_at_5_before']:.3f} "
                f"| {r['recall_at_5_after']:.3f} | {r['consolidate_seconds']:.1f} |"
            )
        return "\n".join(lines)

    groups = results["sweep_groups"]
    return f"""# Consolidation quality

Measured by `make eval` (`bench/consolidation_quality.py --data {results["data"]}`), on the real
engine (embedded qdrant-edge store, a default `consolidate` run: every memory is new, so
it takes the exact route), with the default
embedder all-MiniLM-L6-v2. Data: Old Testament verses in four public-domain translations;
three (WEB, KJV, ASV) are written as memories, the fourth (YLT, the most literal wording)
is used as queries. A merge pair is correct when both memories are the same verse, or the
same text word for word. Parallel passages (Kings/Chronicles, repeated formulas) are real
near-duplicates that the verse labels call different, so precision here is a lower bound.
"F1 transitive" closes that truth under transitivity (a verse's translations are one
thought, and so is every verse sharing one of those texts word for word): it asks more of
recall, e.g. that all 216 copies of "...spoke to Moses, saying" become one point.

## Defaults on the whole file

{table(full) if full else "(not run)"}

## "False" merges at the defaults (the first few, as the labels judge them)

{_examples(full)}

## Sweep (first {groups} verses)

![precision/recall](consolidation-pr.png)

{table(sweep)}
"""


if __name__ == "__main__":
    main()
