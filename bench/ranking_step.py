"""What ranking one step's candidates costs, with the embedder itself and with the ranking
copy this CPU makes (inversion/ranking_copy.py).

    .venv/bin/python bench/ranking_step.py [--texts 6 24 48 192] [--repeats 20]

A step of the search embeds every candidate continuation: 6 texts at the first token, 24
after (4 beams x 6 tokens), 192 in the invert job (8 vectors together). The candidates here
are WordNet sentences cut after 12-17 words (about 20 MiniLM tokens, as a search's are mid
way). Each count is timed both ways, alternately: the median of `--repeats` calls, and the
largest difference in cosine between the two. Prints a table and writes
bench/results/ranking-step.json, docs/ranking-step.png and a section of docs/inversion.md.
"""

from __future__ import annotations

import argparse
import gzip
import json
import shlex
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
from report import machine, plot_against, write_section  # noqa: E402

from reverie.inversion.embedders import Embedder  # noqa: E402
from reverie.inversion.ranking_copy import OnnxCopy  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
SENTENCES = ROOT.parent / "shared" / "data" / "wordnet-sentences.txt.gz"
RESULTS = ROOT / "bench" / "results" / "ranking-step.json"
PLOT = ROOT / "docs" / "ranking-step.png"
DOC = ROOT / "docs" / "inversion.md"
COMMAND = shlex.join(["bench/ranking_step.py", *sys.argv[1:]])


def candidates(count: int) -> list[str]:
    """`count` texts as a step's candidates read: 6 cuts of each long sentence."""
    with gzip.open(SENTENCES, "rt", encoding="utf-8") as f:
        long = [words for line in f if len(words := line.split()) >= 18][: count // 6 + 1]
    return [" ".join(long[i // 6][: 12 + i % 6]) for i in range(count)]


def timed(embedder: Embedder, texts: list[str], ranking: bool, repeats: int) -> float:
    """The median ms of embedding `texts` in one call."""
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        embedder.encode(texts, ranking=ranking)
        times.append((time.perf_counter() - started) * 1000)
    return statistics.median(times)


def measure(counts: list[int], repeats: int) -> tuple[str, list[dict[str, Any]]]:
    embedder = Embedder("sentence-transformers/all-MiniLM-L6-v2")
    with tempfile.TemporaryDirectory() as cache:  # a copy made afresh, as on a new machine
        embedder.load_ranking_copy(Path(cache))
        kind = copy_kind(embedder)
        results = []
        for count in counts:
            texts = candidates(count)
            exact, ranked = embedder.encode(texts), embedder.encode(texts, ranking=True)  # warm-up too
            model = copy = 0.0
            for _ in range(2):  # alternately, so a slower minute of the machine falls on both
                model += timed(embedder, texts, False, repeats) / 2
                copy += timed(embedder, texts, True, repeats) / 2
            results.append(
                {
                    "texts": count,
                    "model_ms": round(model, 1),
                    "copy_ms": round(copy, 1),
                    "max_cosine_difference": float(np.max(np.abs(1 - np.sum(exact * ranked, axis=1)))),
                }
            )
            print(json.dumps(results[-1]), flush=True)
    return kind, results


def copy_kind(embedder: Embedder) -> str:
    """Which ranking copy this CPU made (ranking_copy.py)."""
    made = embedder._ranking
    if made is embedder.model:
        return "none: the model itself"
    return "ONNX Runtime" if isinstance(made, OnnxCopy) else "bfloat16"


def report_lines(result: dict[str, Any]) -> list[str]:
    lines = [
        f"Measured by `{result['command']}` ({result['machine']}): all-MiniLM-L6-v2 embedding a "
        f"step's candidates (about 20 tokens each) in one call, the embedder itself against its "
        f"ranking copy ({result['copy']}), the median of {result['repeats']} calls each, twice "
        "alternately.",
        "",
        "| texts | model ms | ranking copy ms | faster | largest cosine difference |",
        "|---|---|---|---|---|",
    ]
    for r in result["rows"]:
        lines.append(
            f"| {r['texts']} | {r['model_ms']} | {r['copy_ms']} | {r['model_ms'] / r['copy_ms']:.2f}x | "
            f"{r['max_cosine_difference']:.1e} |"
        )
    return [*lines, "", "![ranking a step's candidates](ranking-step.png)"]


def plot(rows: list[dict[str, Any]], copy: str) -> None:
    ways = {
        "the model (PyTorch)": [r["model_ms"] for r in rows],
        f"the ranking copy ({copy})": [r["copy_ms"] for r in rows],
    }
    title = "ranking a step's candidates, all-MiniLM-L6-v2"
    plot_against(PLOT, [r["texts"] for r in rows], ways, "candidate texts", "ms a call (median)", title)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--texts", type=int, nargs="+", default=[6, 24, 48, 192])
    parser.add_argument("--repeats", type=int, default=20, help="calls timed for each count and copy")
    args = parser.parse_args()
    copy, rows = measure(args.texts, args.repeats)
    result = {"command": COMMAND, "machine": machine(), "copy": copy, "repeats": args.repeats, "rows": rows}
    RESULTS.write_text(json.dumps(result, indent=1) + "\n")
    plot(rows, copy)
    lines = report_lines(result)
    print("\n".join(lines))
    write_section(DOC, "ranking-step", lines, "Inversion")


if __name__ == "__main__":
    main()
