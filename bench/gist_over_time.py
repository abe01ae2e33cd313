"""Gist over time, measured before it is offered: what `consolidation.age_threshold` merges.

    .venv/bin/python bench/gist_over_time.py [--groups 3000] [--age-threshold 0.72]

The OT paraphrase groups (three translations of a verse each) are written on day 0 on a
simulated clock. Half the verses, drawn at random, are used on day 89 (their memories are
read: an access each); the other half are never used. On day 120 a full consolidation
runs at the defaults, once as they are and once with gist over time (`age_threshold`,
reached after `age_days` = 90 unused). For each half: points after, and pairwise
precision and recall against the verse labels (a pair is right when it shares a verse or
a text), and examples of what only gist merged. Writes the section `gist-over-time` of
docs/memory-life.md and bench/results/gist-over-time.json.
"""

from __future__ import annotations

import argparse
import json
import random
import tempfile
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
from report import write_section

from reverie.config import LoggingSettings, Settings
from reverie.evaluation.consolidation import Dataset, embed_dataset, load_dataset, pair_scores
from reverie.ledger.lineage import store_lineage_map
from reverie.logs import configure_logging
from reverie.memory import NewMemory, Reverie
from reverie.storage import payload as p

ROOT = Path(__file__).resolve().parent.parent
DATA = ROOT.parent / "shared/data/bible-ot-paraphrases.jsonl.gz"
RESULTS = ROOT / "bench/results/gist-over-time.json"
DOC = ROOT / "docs/memory-life.md"
START = datetime(2026, 1, 1, tzinfo=UTC)
EXAMPLES = 8


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--groups", type=int, default=3000)
    parser.add_argument("--age-threshold", type=float, default=0.72)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    configure_logging(LoggingSettings(level="warning"))
    settings = Settings()
    data = load_dataset(DATA, args.groups, None)
    memories, _ = embed_dataset(data, settings)
    groups = list(dict.fromkeys(data.memory_groups))
    used_groups = set(random.Random(args.seed).sample(groups, len(groups) // 2))
    used = {i for i, g in enumerate(data.memory_groups) if g in used_groups}
    rows = []
    for gist in (None, args.age_threshold):
        clusters, after = _consolidate(data, memories, settings, used, gist)
        for name, rows_of in (
            ("used on day 89", used),
            ("unused since day 0", set(range(len(memories))) - used),
        ):
            within = [[i for i in c if i in rows_of] for c in clusters]
            precision, recall, _ = pair_scores(within, _subset(data, rows_of))
            rows.append(
                {
                    "age_threshold": gist,
                    "memories": name,
                    "before": len(rows_of),
                    "after": after[name == "used on day 89"],
                    "precision": round(precision, 4),
                    "recall": round(recall, 4),
                    "merges_across_halves": sum(1 for c in clusters if set(c) & used and set(c) - used),
                }
            )
            print(json.dumps(rows[-1]), flush=True)
        if gist is None:
            plain = {tuple(sorted(c)) for c in clusters}
        else:
            only_gist = [c for c in clusters if tuple(sorted(c)) not in plain]
    examples = [_example(c, data) for c in only_gist[:EXAMPLES]]
    wrong = sum(1 for c in only_gist if _example(c, data)["verses"] > 1)
    result = {
        "command": f"bench/gist_over_time.py --groups {args.groups} --age-threshold {args.age_threshold}",
        "rows": rows,
        "gist_only_merges": len(only_gist),
        "gist_only_across_verses": wrong,
        "examples": examples,
    }
    RESULTS.write_text(json.dumps(result, indent=1) + "\n")
    lines = _table(result)
    print("\n".join(lines))
    write_section(DOC, "gist-over-time", lines, "Living memory")


def _consolidate(
    data: Dataset, memories: np.ndarray, settings: Settings, used: set[int], gist: float | None
) -> tuple[list[list[int]], tuple[int, int]]:
    """Day 0 writes, day 89 uses half, day 120 a full run; the merged groups (as memory
    rows) and the live points standing for unused and used memories after."""
    clock = [START]
    p.set_clock(lambda: clock[0])
    try:
        with tempfile.TemporaryDirectory(prefix="reverie-gist-") as tmp:
            local = settings.model_copy(deep=True)
            local.storage.data_dir = Path(tmp)
            local.storage.layout = "reverie"
            local.consolidation.partition_keys = []
            local.consolidation.age_threshold = gist
            local.inversion.model = "none"
            with Reverie.open(local) as rv:
                rv.write(
                    [
                        NewMemory(vector, rv.new_payload(text, {"group": group}, {}), index)
                        for index, (vector, text, group) in enumerate(
                            zip(memories, data.memory_texts, data.memory_groups, strict=True)
                        )
                    ]
                )
                clock[0] = START + timedelta(days=89)
                for index in sorted(used):
                    rv.get(index)
                rv.flush_accesses()
                clock[0] = START + timedelta(days=120)
                rv.consolidate(full=True)
                lineages = store_lineage_map(rv.store, rv.collection, rv.archive)
    finally:
        p.set_clock(None)
    clusters = [[int(i) for i in members] for members in lineages.values() if len(members) > 1]
    standing = [[int(i) for i in members] for members in lineages.values()]
    unused_after = sum(1 for members in standing if not set(members) & used)
    return clusters, (unused_after, len(standing) - unused_after)


def _subset(data: Dataset, rows: set[int]) -> Dataset:
    """The memories of `rows` only, indexed as before (others blanked out of the truth)."""
    keep = [i in rows for i in range(len(data.memory_groups))]
    groups = [g if k else f"-{i}" for i, (g, k) in enumerate(zip(data.memory_groups, keep, strict=True))]
    texts = [t if k else f"-{i}" for i, (t, k) in enumerate(zip(data.memory_texts, keep, strict=True))]
    return Dataset(data.groups, texts, groups, [], [], data.memory_variants, data.query_variant)


def _example(cluster: list[int], data: Dataset) -> dict[str, Any]:
    return {
        "verses": len({data.memory_groups[i] for i in cluster}),
        "texts": [f"[{data.memory_groups[i]}] {data.memory_texts[i]}" for i in cluster[:4]],
    }


def _table(result: dict[str, Any]) -> list[str]:
    lines = [
        f"Measured by `{result['command']}`: verses written on day 0, half of them read on day 89, a full "
        "run on day 120.",
        "",
        "| age_threshold | memories | before | after | pair precision | pair recall |",
        "|---|---|---|---|---|---|",
    ]
    for r in result["rows"]:
        gist = "unset (0.80 for all)" if r["age_threshold"] is None else f"{r['age_threshold']} after 90 days"
        lines.append(
            f"| {gist} | {r['memories']} | {r['before']} | {r['after']} | {r['precision']:.3f} | "
            f"{r['recall']:.3f} |"
        )
    lines += [
        "",
        f"Gist alone made {result['gist_only_merges']} merges, "
        f"{result['gist_only_across_verses']} of them across verses (which may still be true duplicates: "
        "repeated formulas and parallel passages). Examples:",
        "",
    ]
    for example in result["examples"]:
        lines.append(f"- {example['verses']} verse(s): " + " / ".join(t[:90] for t in example["texts"]))
    return lines


if __name__ == "__main__":
    main()
