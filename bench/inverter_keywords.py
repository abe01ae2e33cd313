"""How many of a sentence's words the trained part names, for one or more inverters: a
minute's check of a change to the word part (more epochs, another training option) before
the search's quality table, which takes 25 minutes a model.

    .venv/bin/python bench/inverter_keywords.py --model builtin --model runs/more/model \
        [--run RUN] [--sentences 40] [--left-out facts=runs/pkgs/randfacts/safe.txt]

The sets are bench/inversion_quality.py's: the run's held-out sentences (with --run) and
the left-out domains. For each sentence, the words of more than three letters (the kind the
prompt names) less a few function words: the share named (recall) and the share of the named
that are its words (precision), for the trained part's likeliest words and for the keywords
the search's prompt names (chosen by the embedder among more of them and the words of the
nearest phrasebook sentences: inversion/keywords.py); and the average precision of its LM
tokens in the trained part's ranking of all 49,152 (1.0: its tokens ranked first). Writes
the table into docs/inversion.md (section inverter-keywords) and
bench/results/inverter-keywords.json.
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys

import numpy as np
import torch
from inversion_quality import DEFAULT, DOC, ROOT, add_set_arguments, chosen_sets
from report import machine, write_section

from reverie.errors import InverterError
from reverie.inversion.conditioning import read_meta
from reverie.inversion.embedders import Embedder
from reverie.inversion.inverter import open_inverter, trained_model_dir
from reverie.inversion.keywords import words_of

RESULTS = ROOT / "bench" / "results" / "inverter-keywords.json"
COMMAND = shlex.join(["bench/inverter_keywords.py", *sys.argv[1:]])
_FUNCTION_WORDS = """that this with from they them their there then than were have been will would
what when which while your into about over also just only very more most some such these those
each other upon unto shall said says"""
SCORES = ("likeliest_recall", "likeliest_precision", "chosen_recall", "chosen_precision", "average_precision")
FUNCTION_WORDS = frozenset(_FUNCTION_WORDS.split())  # not counted: keywords are never meant to name them


def content_words(text: str) -> set[str]:
    """The words a keyword may name (keywords.words_of), less the function words."""
    return set(words_of([text])) - FUNCTION_WORDS


def average_precision(logits: torch.Tensor, token_ids: list[int]) -> float:
    """How near the top of the ranking the sentence's own tokens sit."""
    order = torch.argsort(logits, descending=True)
    rank = torch.empty_like(order)
    rank[order] = torch.arange(len(order))
    ranks = np.sort(rank[sorted(set(token_ids))].numpy()) + 1
    return float(np.mean(np.arange(1, len(ranks) + 1) / ranks))


def measure(model: str, embedder: Embedder, sets: dict[tuple[str, str], list[str]]) -> list[dict]:
    """One row a set: what `model`'s trained part names of its sentences."""
    inverter = open_inverter(model, embedder, DEFAULT)
    conditioner = inverter.conditioner
    tokenizer = conditioner.lm.tokenizer
    rows = []
    for (name, domain), texts in sets.items():
        vectors = embedder.encode(texts)
        scores: dict[str, list[float]] = {key: [] for key in SCORES}
        for text, vector in zip(texts, vectors, strict=True):
            words = content_words(text)
            for kind, named in (
                ("likeliest", set(conditioner.steering(vector, DEFAULT.keywords).keywords)),
                ("chosen", set(inverter.keywords(vector))),
            ):
                scores[f"{kind}_recall"].append(len(named & words) / max(1, len(words)))
                scores[f"{kind}_precision"].append(len(named & words) / max(1, len(named)))
            with torch.no_grad():
                logits = conditioner.token_logits(torch.from_numpy(np.asarray(vector, np.float32))[None])
            token_ids = tokenizer(text, add_special_tokens=False)["input_ids"]
            scores["average_precision"].append(average_precision(logits[0], token_ids))
        rows.append(
            {
                "model": inverter.id,
                "data": name,
                "domain": domain,
                **{key: round(float(np.mean(values)), 3) for key, values in scores.items()},
            }
        )
        print(json.dumps(rows[-1]), flush=True)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--model", action="append", required=True, help="builtin or a model directory")
    add_set_arguments(parser)
    args = parser.parse_args()
    models = [trained_model_dir(model) for model in args.model]
    for model in models:
        try:
            read_meta(model)  # only a trained guided model has a word part to measure
        except InverterError as exc:
            parser.error(str(exc))
    embedder = Embedder("sentence-transformers/all-MiniLM-L6-v2")
    sets = chosen_sets(args, models[0])
    rows = [row for model in models for row in measure(str(model), embedder, sets)]
    RESULTS.write_text(json.dumps({"machine": machine(), "command": COMMAND, "rows": rows}, indent=1) + "\n")
    lines = [
        f"Measured by `{COMMAND}` ({machine()}): keyword recall and precision of the trained "
        "part's likeliest words and of the keywords the embedder chooses (the search's prompt, "
        f"`keyword_pool` {DEFAULT.keyword_pool}), and the average precision of each sentence's tokens "
        "in the trained part's ranking (no search).",
        "",
        "| model | set | domain | likeliest: recall / precision | chosen: recall / precision "
        "| token average precision |",
        "|---|---|---|---|---|---|",
        *(
            f"| {r['model']} | {r['data']} | {r['domain']} "
            f"| {r['likeliest_recall']:.3f} / {r['likeliest_precision']:.3f} "
            f"| {r['chosen_recall']:.3f} / {r['chosen_precision']:.3f} | {r['average_precision']:.3f} |"
            for r in rows
        ),
    ]
    print("\n".join(lines))
    write_section(DOC, "inverter-keywords", lines, "Inversion")


if __name__ == "__main__":
    main()
