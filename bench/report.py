"""Where benchmarks put what they measured: one marked section of a markdown file each, so
several scripts share docs/benchmarks.md and a rerun replaces only its own section."""

from __future__ import annotations

from pathlib import Path


def write_section(path: Path, name: str, lines: list[str], title: str) -> None:
    begin, end = f"<!-- {name}: begin -->", f"<!-- {name}: end -->"
    text = path.read_text() if path.exists() else f"# {title}\n"
    if begin not in text:
        text = text.rstrip("\n") + f"\n\n{begin}\n{end}\n"
    head, _, rest = text.partition(begin)
    _, _, tail = rest.partition(end)
    path.write_text(head + "\n".join([begin, *lines, end]) + tail)
