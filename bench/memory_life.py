"""Does living memory help an agent? A simulated agent over months, on real reworded facts.

    .venv/bin/python bench/memory_life.py [--days 120] [--groups-per-day 8] [--interests 20]

Each fact is an Old Testament verse: its wordings in four translations are one fact
written and asked about in different words (../shared/data/bible-ot-paraphrases.jsonl.gz).
The agent, day by day on a simulated clock (`payload.set_clock`):
- writes `--groups-per-day` new facts it never touches again (written once);
- keeps `--core` facts in use throughout, and `--interests` more that change every
  `--phase` days (interests drift): on the day one becomes an interest it is written, then
  asked about every day (a search: the hits count as accesses), and now and then written
  again in another translation (repeated, reworded facts for consolidation to merge);
- consolidates every day, and in the forgetting variants runs the forget job.
At the end of each phase: the live points, and recall@1/@5 of queries (the KJV wording,
never stored) about the facts in use now and about old facts (written once 30+ days ago,
or interests of an earlier phase), searched without counting as accesses.
Variants: keeping everything, forgetting at the defaults, ranking by memory, both.
Writes bench/results/memory-life.json, docs/memory-life.md (section) and docs/memory-life.png.
"""

from __future__ import annotations

import argparse
import gzip
import json
import random
import tempfile
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from report import pyplot, write_section

from reverie.config import LoggingSettings, Settings
from reverie.inversion.embedders import Embedder
from reverie.logs import configure_logging
from reverie.memory import NewMemory, Reverie
from reverie.storage import QueryRequest
from reverie.storage import payload as p

ROOT = Path(__file__).resolve().parent.parent
DATA = ROOT.parent / "shared/data/bible-ot-paraphrases.jsonl.gz"
RESULTS = ROOT / "bench/results/memory-life.json"
DOC = ROOT / "docs/memory-life.md"
PLOT = ROOT / "docs/memory-life.png"
STORED = ("web", "asv", "ylt")  # wordings the agent writes, in this order
ASKED = "kjv"  # the wording it asks with (never stored)
REWRITE_CHANCE = 0.15  # per interest per day
START = datetime(2026, 1, 1, 8, tzinfo=UTC)


@dataclass(frozen=True)
class Variant:
    name: str
    forget: bool
    rank: str


VARIANTS = (
    Variant("keep everything", False, "similarity"),
    Variant("forget", True, "similarity"),
    Variant("rank by memory", False, "memory"),
    Variant("forget + rank by memory", True, "memory"),
)


@dataclass
class Plan:
    """Who writes and asks what, when: the same for every variant."""

    once: dict[int, list[str]] = field(default_factory=dict)  # day -> groups written once
    core: list[str] = field(default_factory=list)
    phases: list[list[str]] = field(default_factory=list)  # interests per phase
    rewrites: dict[int, list[str]] = field(default_factory=dict)  # day -> groups written again


class Clock:
    def __init__(self) -> None:
        self.now = START

    def __call__(self) -> datetime:
        return self.now


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--days", type=int, default=120)
    parser.add_argument("--phase", type=int, default=30, help="days between changes of interest")
    parser.add_argument("--groups-per-day", type=int, default=8, help="facts written once a day")
    parser.add_argument("--interests", type=int, default=20)
    parser.add_argument("--core", type=int, default=10)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    configure_logging(LoggingSettings(level="warning"))
    texts = _facts()
    plan = _plan(args, list(texts), random.Random(args.seed))
    used = sorted(
        {g for day in plan.once.values() for g in day}
        | set(plan.core)
        | {g for ph in plan.phases for g in ph}
    )
    embedder = Embedder("sentence-transformers/all-MiniLM-L6-v2")
    started = time.perf_counter()
    wordings = [(g, w) for g in used for w in (*STORED, ASKED)]
    vectors = embedder.encode([texts[g][w] for g, w in wordings], progress=True)
    vector = {key: v for key, v in zip(wordings, vectors, strict=True)}
    print(f"embedded {len(wordings)} wordings of {len(used)} facts in {time.perf_counter() - started:.0f} s")
    rows = [row for v in VARIANTS for row in _live_through(v, args, plan, texts, vector)]
    result = {
        "command": _command(args),
        "rows": rows,
        "params": vars(args),
        "memory": Settings().memory.model_dump(),
        "forget": Settings().forget.model_dump(),
    }
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(result, indent=1) + "\n")
    lines = _table(result)
    print("\n".join(lines))
    _plot(rows)
    write_section(DOC, "memory-life", lines, "Living memory")


def _facts() -> dict[str, dict[str, str]]:
    facts = {}
    with gzip.open(DATA, "rt") as f:
        for line in f:
            row = json.loads(line)
            wordings = row["texts"]
            if (
                all(wordings.get(w, "").strip() for w in (*STORED, ASKED))
                and len(wordings["web"].split()) <= 40
            ):
                facts[row["group"]] = wordings
    return facts


def _plan(args: argparse.Namespace, groups: list[str], rng: random.Random) -> Plan:
    rng.shuffle(groups)
    pool = iter(groups)
    plan = Plan(core=[next(pool) for _ in range(args.core)])
    for _ in range(0, args.days, args.phase):
        plan.phases.append([next(pool) for _ in range(args.interests)])
    for day in range(args.days):
        plan.once[day] = [next(pool) for _ in range(args.groups_per_day)]
        phase = plan.phases[day // args.phase]
        plan.rewrites[day] = [g for g in [*plan.core, *phase] if rng.random() < REWRITE_CHANCE]
    return plan


def _live_through(
    variant: Variant, args: argparse.Namespace, plan: Plan, texts: dict[str, dict[str, str]], vector: dict
) -> list[dict[str, Any]]:
    clock = Clock()
    p.set_clock(clock)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        settings = Settings()
        settings.storage.data_dir = Path(tmp)
        settings.inversion.model = "none"
        settings.recall.rank = variant.rank  # type: ignore[assignment]
        rv = Reverie.open(settings)
        written: dict[str, int] = {}  # group -> wordings written
        first_written: dict[str, int] = {}
        cost = 0.0
        for day in range(args.days):
            clock.now = START + timedelta(days=day)
            phase = day // args.phase
            in_use = [*plan.core, *plan.phases[phase]]
            new = [g for g in in_use if g not in written] + plan.once[day] + plan.rewrites[day]
            memories = []
            for group in new:
                index = written.get(group, 0)
                if index >= len(STORED):
                    continue
                written[group] = index + 1
                first_written.setdefault(group, day)
                text = texts[group][STORED[index]]
                memories.append(
                    NewMemory(vector[(group, STORED[index])], rv.new_payload(text, {"group": group}, {}))
                )
            if memories:
                rv.write(memories)
            clock.now += timedelta(hours=2)
            for group in in_use:  # the agent asks about what it is working on
                rv.recall(vector[(group, ASKED)], k=5)
            rv.flush_accesses()
            clock.now += timedelta(hours=12)
            started = time.perf_counter()
            rv.consolidate()
            if variant.forget:
                rv.forget_faded()
            cost += time.perf_counter() - started
            if (day + 1) % args.phase == 0 or day + 1 == args.days:
                rows.append(
                    _measure(rv, variant, day + 1, plan, phase, first_written, vector, cost / (day + 1))
                )
                print(json.dumps(rows[-1]), flush=True)
        rv.close()
    p.set_clock(None)
    return rows


def _measure(
    rv: Reverie,
    variant: Variant,
    day: int,
    plan: Plan,
    phase: int,
    first: dict[str, int],
    vector: dict,
    cost: float,
) -> dict[str, Any]:
    current = [*plan.core, *plan.phases[phase]]
    earlier = [g for ph in plan.phases[:phase] for g in ph]
    old = earlier + [g for g, d in first.items() if d <= day - 30 and g not in current and g not in earlier]
    stats = rv.stats()
    return {
        "variant": variant.name,
        "day": day,
        "live": stats["live"],
        "dormant": stats["dormant"],
        "archived": stats["archived"],
        "current": _recall(rv, current, vector, variant.rank),
        "old": _recall(rv, old, vector, variant.rank),
        "seconds_per_day": round(cost, 3),
    }


def _recall(rv: Reverie, groups: list[str], vector: dict, rank: str) -> dict[str, float]:
    """recall@1/@5 of the KJV wording of each fact, searched as `recall` does but without
    counting as an access (measuring must not change what it measures)."""
    from reverie.lifecycle.ranking import rank_by_memory

    at1 = at5 = 0
    s = rv.settings
    for group in groups:
        wanted = 5 * s.recall.candidates if rank == "memory" else 5
        hits = rv.store.query(
            rv.collection, QueryRequest(vector[(group, "kjv")], wanted, filter=p.searchable_filter())
        )
        if rank == "memory":
            hits = rank_by_memory(hits, 5, s.recall, s.memory, p.utcnow())
        found = [rv.layout.metadata_of(h.payload).get("group") for h in hits]
        at1 += bool(found) and found[0] == group
        at5 += group in found[:5]
    n = max(len(groups), 1)
    return {"queries": len(groups), "at1": round(at1 / n, 3), "at5": round(at5 / n, 3)}


def _command(args: argparse.Namespace) -> str:
    flags = ("days", "phase", "groups_per_day", "interests", "core", "seed")
    return "bench/memory_life.py " + " ".join(f"--{f.replace('_', '-')} {getattr(args, f)}" for f in flags)


def _table(result: dict[str, Any]) -> list[str]:
    lines = [
        f"Measured by `{result['command']}`; memory settings {result['memory']}, forget {result['forget']}.",
        "",
        "| variant | day | live | dormant | current R@1 | current R@5 | old R@1 | old R@5 | s/day |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in result["rows"]:
        c, o = r["current"], r["old"]
        lines.append(
            f"| {r['variant']} | {r['day']} | {r['live']} | {r['dormant']} | {c['at1']:.3f} | "
            f"{c['at5']:.3f} | {o['at1']:.3f} | {o['at5']:.3f} ({o['queries']}) | "
            f"{r['seconds_per_day']:.2f} |"
        )
    lines += ["", "![live points and recall over the simulated days](memory-life.png)"]
    return lines


def _plot(rows: list[dict[str, Any]]) -> None:
    plt = pyplot()

    fig, axes = plt.subplots(1, 3, figsize=(14, 4))
    for index, variant in enumerate(dict.fromkeys(r["variant"] for r in rows)):
        mine = [r for r in rows if r["variant"] == variant]
        days = [r["day"] for r in mine]
        style = {"color": f"C{index}", "marker": "o", "label": variant}
        axes[0].plot(days, [r["live"] for r in mine], **style)
        axes[1].plot(days, [r["current"]["at1"] for r in mine], **style)
        axes[2].plot(days, [r["old"]["at1"] for r in mine], **style)
    for ax, title in zip(axes, ("live points", "recall@1, facts in use", "recall@1, old facts"), strict=True):
        ax.set(xlabel="simulated day", title=title)
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(PLOT, dpi=110)
    plt.close(fig)


if __name__ == "__main__":
    main()
