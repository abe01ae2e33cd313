"""Inversion quality against CPU time: every search setting tried, on held-out text.

    .venv/bin/python bench/inversion_quality.py --run RUN [--sentences 60] [--groups 200] [--blends 200]

RUN is a `reverie inverter train` run directory: its holdout.txt holds the WordNet
sentences and the Bible verses it never trained on (whole verse groups held out), its
model/ the inverter (default: the builtin model, which was trained by such a run).
1. Pure inversion (no member texts) of the first --sentences held-out WordNet sentences and
   as many held-out verses, at each setting below (zero-shot included): token F1, cosine,
   seconds per vector.
2. Merged memories: the first --groups OT paraphrase groups consolidated for real, each
   merged memory read back: its text's fidelity against its label's.
3. Blends of --blends pairs of unrelated held-out sentences: fidelity against the better
   parent's cosine to the blend.
Writes the tables and a plot (fidelity against seconds per vector, per setting) into
docs/inversion.md and docs/inversion-settings.png, and bench/results/inversion-quality.json.
"""

from __future__ import annotations

import argparse
import json
import platform
from dataclasses import replace
from pathlib import Path
from typing import Any

import torch
from report import write_section

from reverie.evaluation.inversion import evaluate_blends, evaluate_merges, evaluate_sentences
from reverie.inversion.embedders import Embedder
from reverie.inversion.guided import SearchSettings
from reverie.inversion.inverter import BUILTIN, ZERO_SHOT, builtin_model_dir, open_inverter

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results" / "inversion-quality.json"
DOC = ROOT / "docs" / "inversion.md"
PLOT = ROOT / "docs" / "inversion-settings.png"
DEFAULT = SearchSettings()
SETTINGS = {  # name -> (model, search)
    "zero-shot, beam 4 x 6": (ZERO_SHOT, DEFAULT),
    "trained, beam 2 x 4": (BUILTIN, replace(DEFAULT, beam_width=2, expand=4)),
    "trained, beam 4 x 6 (default)": (BUILTIN, DEFAULT),
    "trained, beam 6 x 8": (BUILTIN, replace(DEFAULT, beam_width=6, expand=8)),
    "trained, no keywords in the prompt": (BUILTIN, replace(DEFAULT, keywords=0)),
    "trained, no token bias": (BUILTIN, replace(DEFAULT, bias=0.0)),
    "trained, no polish, no repeat penalty": (BUILTIN, replace(DEFAULT, polish=0, repeat_penalty=0.0)),
}


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--run", type=Path, required=True, help="the training run (its holdout.txt)")
    parser.add_argument("--model", default=None, help="inverter to measure (default: builtin)")
    parser.add_argument("--sentences", type=int, default=60, help="held-out sentences of each source")
    parser.add_argument("--groups", type=int, default=200, help="OT paraphrase groups to consolidate")
    parser.add_argument("--blends", type=int, default=200)
    parser.add_argument(
        "--paraphrases", type=Path, default=ROOT.parent / "shared/data/bible-ot-paraphrases.jsonl.gz"
    )
    parser.add_argument("--only", action="append", help="run only these settings (by name)")
    parser.add_argument("--holdout", type=int, default=1000, help="the run's --holdout (WordNet lines first)")
    parser.add_argument(
        "--resume", type=Path, help="the output of an interrupted run: its measured rows are kept, not redone"
    )
    args = parser.parse_args()
    from reverie.config import LoggingSettings
    from reverie.logs import configure_logging

    configure_logging(LoggingSettings(level="warning"))
    embedder = Embedder("sentence-transformers/all-MiniLM-L6-v2")
    held = [line.strip() for line in (args.run / "holdout.txt").read_text().splitlines() if line.strip()]
    # holdout.txt: the held-out WordNet sentences first (--holdout of them), then the verses
    wordnet, verses = held[: args.sentences], _verses(held[args.holdout :], args.sentences)
    model = args.model or BUILTIN
    loaded: dict[str, Any] = {}
    rows = _resumed(args.resume) if args.resume else []
    for name, (source, search) in SETTINGS.items():
        if (args.only and name not in args.only) or any(r["setting"] == name for r in rows):
            continue
        source = model if source == BUILTIN else source
        if source not in loaded:
            loaded[source] = open_inverter(source, embedder, search)
        for data_name, data in (("WordNet", wordnet), ("Bible", verses)):
            row = evaluate_sentences(loaded[source], data, [search])[0]
            rows.append({"setting": name, "data": data_name, **row})
            print(json.dumps({k: v for k, v in rows[-1].items() if k != "examples"}), flush=True)
    inverter = loaded.get(model) or open_inverter(model, embedder, DEFAULT)
    merges = evaluate_merges(inverter, args.paraphrases, args.groups)
    print(json.dumps({k: v for k, v in merges.items() if k != "examples"}), flush=True)
    blends = evaluate_blends(inverter, wordnet + verses, args.blends)
    print(json.dumps({k: v for k, v in blends.items() if k != "examples"}), flush=True)
    meta = json.loads(
        ((builtin_model_dir() if model == BUILTIN else Path(model)) / "inverter.json").read_text()
    )
    result = {
        "inverter": inverter.id,
        "machine": f"{platform.processor() or platform.machine()}, {torch.get_num_threads()} torch threads",
        "model": {
            k: meta.get(k)
            for k in ("base_lm", "embedder", "sentences", "word_epochs", "prefix_steps", "train_hours")
        },
        "sentences": rows,
        "merges": merges,
        "blends": blends,
        "command": f"bench/inversion_quality.py --run {args.run} --sentences {args.sentences} "
        f"--groups {args.groups} --blends {args.blends}",
    }
    RESULTS.write_text(json.dumps(result, indent=1) + "\n")
    _plot(rows)
    lines = report_lines(result)
    print("\n".join(lines))
    write_section(DOC, "inversion-quality", lines, "Inversion")


def _resumed(output: Path) -> list[dict[str, Any]]:
    """The rows an interrupted run printed (one JSON object a line), both data sets of a
    setting or neither."""
    rows = []
    for line in output.read_text().splitlines():
        if line.startswith('{"setting"'):
            rows.append(json.loads(line))
    done = {r["setting"] for r in rows if sum(x["setting"] == r["setting"] for x in rows) == 2}
    return [r for r in rows if r["setting"] in done]


def _verses(held: list[str], count: int) -> list[str]:
    """Held-out verses, about one wording per verse group (the wordings of a verse are
    consecutive and mostly begin alike), of at most 40 words."""
    verses, seen = [], set()
    for text in held:
        key = text.lower()[:24]
        if key not in seen and len(text.split()) <= 40:
            seen.add(key)
            verses.append(text)
    return verses[:count]


def report_lines(result: dict[str, Any]) -> list[str]:
    lines = [
        f"Measured by `{result['command']}` ({result['machine']}); inverter {result['inverter']}, "
        f"trained {result['model']}.",
        "",
        "| setting | held-out | sentences | token F1 | cosine | BLEU | s/vector (p90) |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in result["sentences"]:
        lines.append(
            f"| {r['setting']} | {r['data']} | {r['sentences']} | {r['token_f1']:.3f} | {r['cosine']:.3f} | "
            f"{r['bleu']:.1f} | {r['seconds_per_vector']:.2f} ({r['seconds_p90']:.2f}) |"
        )
    lines += ["", "![fidelity against seconds per vector](inversion-settings.png)", ""]
    m, b = result["merges"], result["blends"]
    lines += [
        f"**Merged memories** ({m['merges']} merges of the first {m['groups']} OT paraphrase groups, "
        f"consolidated at the defaults): shown text fidelity {m['shown_fidelity']:.3f} against the labels' "
        f"{m['label_fidelity']:.3f}; below its label: {m['below_label']}; a written text beat the label "
        f"in {100 * m['written_beats_label']:.0f}% of merges; {m['seconds_per_merge']:.2f} s per merge.",
        "",
        "| label | shown | source | fidelity (label's) |",
        "|---|---|---|---|",
    ]
    for e in m["examples"][:6]:
        fidelity = f"{e['fidelity']:.3f} ({e['label_fidelity']:.3f})"
        lines.append(f"| {e['label'][:70]} | {e['shown'][:70]} | {e['source']} | {fidelity} |")
    lines += [
        "",
        f"**Blends** of {b['pairs']} pairs of unrelated held-out sentences: fidelity to the blend "
        f"{b['blend_fidelity']:.3f} against the better parent's {b['better_parent_cosine']:.3f}; closer "
        f"than both parents in {100 * b['beats_both_parents']:.0f}% of pairs; {b['seconds_per_blend']:.2f} s "
        "per blend.",
        "",
        "| parent A | parent B | blend text | fidelity (better parent) |",
        "|---|---|---|---|",
    ]
    for e in b["examples"][:6]:
        fidelity = f"{e['fidelity']:.3f} ({e['better_parent']:.3f})"
        lines.append(f"| {e['a'][:50]} | {e['b'][:50]} | {e['blend'][:70]} | {fidelity} |")
    return lines


def _plot(rows: list[dict[str, Any]]) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(12, 4.5), sharey=False)
    for ax, metric, title in ((axes[0], "cosine", "fidelity (cosine)"), (axes[1], "token_f1", "token F1")):
        for marker, data in (("o", "WordNet"), ("s", "Bible")):
            for index, r in enumerate(x for x in rows if x["data"] == data):
                ax.scatter(
                    r["seconds_per_vector"],
                    r[metric],
                    marker=marker,
                    color=f"C{index}",
                    label=r["setting"] if data == "WordNet" and ax is axes[0] else None,
                )
        ax.set(xlabel="seconds per vector (2 CPU cores)", ylabel=title, title=f"{title}: o WordNet, s Bible")
        ax.grid(alpha=0.3)
    axes[0].axhline(0.85, color="grey", ls="--", lw=0.8)
    axes[1].axhline(0.40, color="grey", ls="--", lw=0.8)
    fig.legend(loc="lower center", ncol=4, fontsize=7)
    fig.tight_layout(rect=(0, 0.14, 1, 1))
    fig.savefig(PLOT, dpi=120)
    plt.close(fig)


if __name__ == "__main__":
    main()
