"""Where benchmarks put what they measured: one marked section of a markdown file each, so
several scripts share docs/benchmarks.md and a rerun replaces only its own section; and what
every bench's report needs besides (the machine's name, a plotter that needs no display)."""

from __future__ import annotations

import platform
from pathlib import Path
from typing import Any


def write_section(path: Path, name: str, lines: list[str], title: str) -> None:
    begin, end = f"<!-- {name}: begin -->", f"<!-- {name}: end -->"
    text = path.read_text() if path.exists() else f"# {title}\n"
    if begin not in text:
        text = text.rstrip("\n") + f"\n\n{begin}\n{end}\n"
    head, _, rest = text.partition(begin)
    _, _, tail = rest.partition(end)
    path.write_text(head + "\n".join([begin, *lines, end]) + tail)


def machine() -> str:
    """The machine a table was measured on, as its caption names it."""
    import torch

    return f"{platform.processor() or platform.machine()}, {torch.get_num_threads()} torch threads"


def pyplot() -> Any:
    """matplotlib's pyplot drawing into files (no display: benches run on servers too)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def plot_against(
    path: Path, counts: list[int], ways: dict[str, list[float]], xlabel: str, ylabel: str, title: str
) -> None:
    """A timing against a count, a line for each way it was done (benches that compare two
    ways of one step): log axes, a tick for each count."""
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(6, 4))
    for label, values in ways.items():
        ax.plot(counts, values, marker="o", label=label)
    ax.set(xscale="log", yscale="log", xlabel=xlabel, ylabel=ylabel, title=title)
    ax.set_xticks(counts, [str(c) for c in counts])
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
