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
from reverie.consolidation.eval_report import write_report
from reverie.consolidation.evaluation import (
    ALGORITHMS,
    embed_dataset,
    evaluate_config,
    head,
    load_dataset,
    result_lines,
)
from reverie.logs import configure_logging

ROOT = Path(__file__).resolve().parent.parent
THRESHOLDS = [0.70, 0.75, 0.78, 0.80, 0.82, 0.85, 0.88, 0.92]


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--data", type=Path, required=True)
    parser.add_argument("--sweep-groups", type=int, default=3000)
    parser.add_argument("--skip-full", action="store_true", help="only the sweep")
    args = parser.parse_args()
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
    write_report(sweep, ROOT / "docs")
    results = {"data": str(args.data), "machine": platform.machine(), "full": full, "sweep": sweep}
    out = ROOT / "bench" / "results"
    out.mkdir(parents=True, exist_ok=True)
    (out / "consolidation-quality.json").write_text(json.dumps(results, indent=1) + "\n")
    (ROOT / "docs" / "consolidation-quality.md").write_text(_markdown(args, full, sweep, small))


def _examples(full: list[dict]) -> str:
    if not full:
        return "(not run)"
    blocks = []
    for cluster in full[0]["false_merge_examples"]:
        blocks.append("\n".join(f"- {text}" for text in cluster))
    return "\n\n".join(blocks)


def _markdown(args: argparse.Namespace, full: list[dict], sweep: list[dict], small: object) -> str:
    def table(rows: list[dict]) -> str:
        lines = [
            "| algorithm | threshold | precision | recall | F1 | after/before | R@1 before | R@1 after "
            "| R@5 before | R@5 after | seconds |",
            "|---|---|---|---|---|---|---|---|---|---|---|",
        ]
        for r in rows:
            lines.append(
                f"| {r['algorithm']} | {r['threshold']:.2f} | {r['precision']:.3f} | {r['recall']:.3f} "
                f"| {r['f1']:.3f} | {r['compression']:.3f} | {r['recall_at_1_before']:.3f} "
                f"| {r['recall_at_1_after']:.3f} | {r['recall_at_5_before']:.3f} "
                f"| {r['recall_at_5_after']:.3f} | {r['consolidate_seconds']:.1f} |"
            )
        return "\n".join(lines)

    groups = len(small.groups)  # type: ignore[attr-defined]
    return f"""# Consolidation quality

Measured by `make eval` (`bench/consolidation_quality.py --data {args.data}`), on the real
engine (embedded qdrant-edge store, incremental run over fresh memories), with the default
embedder all-MiniLM-L6-v2. Data: Old Testament verses in four public-domain translations;
three (WEB, KJV, ASV) are written as memories, the fourth (YLT, the most literal wording)
is used as queries. A merge pair is correct when both memories are the same verse, or the
same text word for word. Parallel passages (Kings/Chronicles, repeated formulas) are real
near-duplicates that the verse labels call different, so precision here is a lower bound.

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
