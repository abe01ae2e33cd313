"""`reverie demo`: real paraphrased memories in, consolidation, a short readable result.

The sample: 24 Old Testament verses, each in three public-domain translations (WEB, KJV,
ASV), the same thought worded three ways, as agents write near-duplicates. It runs on the
embedded store in its own directory, with no server and no network.
"""

from __future__ import annotations

import json
import shutil
import time
from importlib import resources
from typing import Any

from reverie.config import Settings
from reverie.memory import Reverie

SHOWN_MERGES = 4
BLEND = (
    "quantum computing for accelerating drug discovery",
    "personalized medicine tailored to individual genetic profiles",
)


def sample() -> list[dict[str, Any]]:
    text = resources.files("reverie").joinpath("data/demo_memories.jsonl").read_text("utf-8")
    return [json.loads(line) for line in text.splitlines() if line.strip()]


def run_demo(settings: Settings, fresh: bool = True) -> None:
    local = settings.model_copy(deep=True)
    local.storage.url = None
    local.storage.data_dir = settings.storage.data_dir / "demo"
    if fresh and local.storage.data_dir.exists():
        shutil.rmtree(local.storage.data_dir)
    rows = sample()
    verses = len({r["verse"] for r in rows})
    c = local.consolidation
    print(f"reverie demo: {len(rows)} memories: {verses} Bible verses, each in 3 translations")
    print("(one thought worded three ways, the way agents write near-duplicates)\n")
    with Reverie.open(local) as rv:
        print(f"embedding with {local.embedder.model} ...")
        rv.remember([r["text"] for r in rows])
        print(f"consolidating: {c.algorithm}, {c.linkage} linkage, cosine >= {c.threshold:.2f}\n")
        started = time.perf_counter()
        report = rv.consolidate()
        seconds = time.perf_counter() - started
        print(
            f"before: {report.points_before} memories  ->  after: {report.points_after} memories"
            f"  ({report.merge_count} merges of {report.members_merged} memories, {seconds:.1f} s)\n"
        )
        if local.inversion.model != "none":
            print("loading the inverter, which reads merged vectors back as text ...\n", flush=True)
            rv.inverter()
        for merge in report.merges[:SHOWN_MERGES]:
            print(f"  {merge['size']} -> 1   (weight {merge['weight']:g})")
            for member in merge["members"]:
                print(f"      {member['text']}")
            merged, _ = rv.get(merge["merge_id"])
            print("    reads as: ", end="", flush=True)  # a few seconds of search follow
            print(rv.text(merged).shown())
        if report.merge_count > SHOWN_MERGES:
            print(f"  ... and {report.merge_count - SHOWN_MERGES} more merges")
        left = report.points_after - report.merge_count
        print(f"\n{left} memories were left alone: their wordings differ too much to be sure.")
        print("Every original is archived with its lineage; nothing was deleted.\n")
        blend = rv.blend(list(BLEND))
        print(f'blend: "{BLEND[0]}" + "{BLEND[1]}"')
        print(f"  reads as: {blend.text}  [{blend.source}, fidelity {blend.fidelity:.2f}]")
        print(
            "  each parent's cosine to the blend: "
            + ", ".join(f"{x.cosine:.2f}" for x in blend.parents)
            + "\n"
        )
    flags = f"--data-dir {local.storage.data_dir}"
    print("look closer (the demo keeps its own data directory):")
    print(f"  reverie {flags} runs show {report.run_id}")
    print(f'  reverie {flags} recall "a righteous nation"')
    print(f"  reverie {flags} undo {report.run_id}")
    print(f'  reverie {flags} blend "{BLEND[0]}" "{BLEND[1]}" --json')
    if rv.inverter_status != "not loaded" and not rv.inverter_status.startswith("loaded"):
        print(
            f"\nThe inverter is {rv.inverter_status}: merged memories show their labels (the member\n"
            "text closest to the merged vector), marked as such (docs/inversion.md)."
        )
