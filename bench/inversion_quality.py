"""Inverter quality and CPU latency on held-out sentences, and fidelity on centroids.

    .venv/bin/python bench/inversion_quality.py --model DIR [--data DIR/holdout.txt] \\
        [--paraphrases ../shared/data/bible-ot-paraphrases.jsonl.gz]

The inverter is one made by `reverie inverter train` (its run directory holds holdout.txt,
the sentences training never saw). Prints the table of `reverie inverter eval`, writes
bench/results/inversion-quality.json and the measured section of docs/inversion.md
(between the markers), and says whether the model meets the bar for shipping in the
package: token F1 >= 0.40, mean cosine >= 0.80, weights <= 30 MB.
"""

from __future__ import annotations

import argparse
import json
import platform
from pathlib import Path

import torch
from report import write_section

from reverie.inversion.embedders import Embedder
from reverie.inversion.evaluation import evaluate_centroids, evaluate_sentences, read_sentences, result_lines
from reverie.inversion.inverter import open_inverter

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results" / "inversion-quality.json"
DOC = ROOT / "docs" / "inversion.md"
SHIP = {"token_f1": 0.40, "cosine": 0.80, "megabytes": 30.0}


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--model", required=True, help="run directory of `reverie inverter train`")
    parser.add_argument("--data", help="held-out sentences (default: MODEL/holdout.txt)")
    parser.add_argument("--paraphrases", help="paraphrase groups for centroid fidelity")
    parser.add_argument("--groups", type=int, default=300)
    parser.add_argument("--beam-width", type=int, default=4)
    parser.add_argument("--limit", type=int, default=1000)
    parser.add_argument("--render-only", action="store_true", help="redraw docs from the saved results")
    args = parser.parse_args()
    if args.render_only:
        result = json.loads(RESULTS.read_text())
        _write_doc(result, result_lines(result))
        return

    run = Path(args.model)
    embedder = Embedder("sentence-transformers/all-MiniLM-L6-v2")
    inverter = open_inverter(str(run), embedder)
    sentences = read_sentences(Path(args.data) if args.data else run / "holdout.txt", args.limit)
    searches = [{"steps": 0, "beam_width": 1}, {"steps": 0, "beam_width": args.beam_width}]
    result = {
        "inverter": inverter.id,
        "machine": f"{platform.processor() or platform.machine()}, {torch.get_num_threads()} torch threads",
        "training": inverter.meta,
        "last_logged_loss": _last_loss(run / "model" / "train-log.json"),
        "megabytes": round((run / "model" / "inverter.safetensors").stat().st_size / 1e6, 1),
        "sentences": evaluate_sentences(inverter, sentences, searches, progress=True),
    }
    if args.paraphrases:
        result["centroids"] = evaluate_centroids(inverter, Path(args.paraphrases), args.groups, searches[-1])
    best = max(result["sentences"], key=lambda row: row["token_f1"])
    result["ships"] = (
        best["token_f1"] >= SHIP["token_f1"]
        and best["cosine"] >= SHIP["cosine"]
        and result["megabytes"] <= SHIP["megabytes"]
    )
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(result, indent=2))
    lines = result_lines(result)
    for line in lines:
        print(line)
    _write_doc(result, lines)


def _last_loss(log: Path) -> float | None:
    losses = [entry["loss"] for entry in json.loads(log.read_text()) if "loss" in entry]
    return losses[-1] if losses else None


def _write_doc(result: dict, lines: list[str]) -> None:
    t = result["training"]
    o = t["options"]
    measured = [
        f"Model `{result['inverter']}`: T5 d_model {o['d_model']}, {o['layers']}+{o['layers']} layers, "
        f"BPE vocabulary {o['vocab_size']}, {result['megabytes']} MB (float16); trained {t['steps']} steps "
        f"of {o['batch_size']} in {t['train_seconds'] / 60:.0f} min on {t['sentences']:,} sentences "
        f"(training loss: mean {t['train_loss']}, last logged {result.get('last_logged_loss')}). "
        f"Measured on {result['machine']}.",
        "",
        "| search | sentences | BLEU | exact match | token F1 | cosine | ms per vector (CPU) |",
        "|---|---|---|---|---|---|---|",
    ]
    for row in result["sentences"]:
        search = "greedy" if row["beam_width"] == 1 else f"beam {row['beam_width']}, re-ranked by cosine"
        measured.append(
            f"| {search} | {row['sentences']} | {row['bleu']:.2f} | {row['exact_match']:.3f} | "
            f"{row['token_f1']:.3f} | {row['cosine']:.3f} | {row['ms_per_vector']:.1f} |"
        )
    examples = [line for line in lines if line.startswith("  '") or line.lstrip().startswith("->")]
    measured += ["", "Examples (held out, beam search):", "", "```", *examples, "```", ""]
    centroids = result.get("centroids")
    if centroids:
        measured += [
            f"Centroids of {centroids['groups']} paraphrase groups (bible-ot-paraphrases, 4 translations "
            f"each): inversion fidelity {centroids['inversion_fidelity']:.3f}; the closest member text "
            f"(a label) {centroids['label_fidelity']:.3f}; the inversion is closer in "
            f"{100 * centroids['inversion_beats_label']:.0f}% of groups.",
            "",
        ]
    ship = "meets" if result["ships"] else "does not meet"
    measured.append(
        f"Shipping bar (token F1 >= {SHIP['token_f1']}, cosine >= {SHIP['cosine']}, "
        f"<= {SHIP['megabytes']:.0f} MB): this model {ship} it."
    )
    write_section(DOC, "measured", measured, "Inversion")


if __name__ == "__main__":
    main()
