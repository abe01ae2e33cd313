"""Build plain-sentence training files for `reverie inverter train` from text that installs
offline, so an inverter learns ordinary English of many registers, not only glosses.

Sources (Debian packages; `apt-get install fortunes python3-doc`):
- fortunes: quotations, jokes, anecdotes, definitions, verse (`/usr/share/games/fortunes`);
- python-docs: the prose of Python's tutorial, how-tos and library reference (its .rst sources).

Each source becomes one `NAME.txt.gz` (one sentence a line, 3-32 words, deduplicated) in
`--out`. A fortune of up to 32 words is kept whole (a two-sentence anecdote is a memory too);
a longer one is split into sentences. The Bible and the demo's agent memories are not
sources: they are the domains evaluations leave out of training.

    .venv/bin/python bench/inverter_corpus.py --out /work/runs/corpus
"""

from __future__ import annotations

import argparse
import gzip
import re
from collections.abc import Iterable, Iterator
from pathlib import Path

FORTUNES = Path("/usr/share/games/fortunes")
PYTHON_DOCS = Path("/usr/share/doc/python3.11/html/_sources")
NOT_PROSE = {"ascii-art"}  # fortune files of pictures, not sentences

MIN_WORDS, MAX_WORDS = 3, 32
SENTENCE_END = re.compile(r"(?<=[.!?])[\"')\]]*\s+(?=[\"'(\[]?[A-Z])")
RST_ROLE = re.compile(r":[\w:.-]+:`~?(?:[^`<]*<)?([^`>]+)>?`")
RST_LINK = re.compile(r"`([^`<]+?)\s*<[^`>]+>`_+")


def sentences(text: str) -> list[str]:
    return [s.strip() for s in SENTENCE_END.split(" ".join(text.split())) if s.strip()]


def looks_like_prose(sentence: str) -> bool:
    """A sentence a person would write: enough words, mostly letters, no markup left."""
    words = sentence.split()
    if not MIN_WORDS <= len(words) <= MAX_WORDS or any(c in sentence for c in "`|{}<>_=\\#*~^@$"):
        return False
    letters = sum(c.isalpha() or c.isspace() for c in sentence)
    tidy = sentence[0].isupper() and not sentence.endswith(":") and ".." not in sentence
    return tidy and letters / len(sentence) >= 0.85


def fortunes(root: Path) -> Iterator[str]:
    for path in sorted(root.iterdir()):
        if path.suffix or path.name in NOT_PROSE or not path.is_file():
            continue
        for entry in path.read_text(encoding="utf-8", errors="replace").split("\n%\n"):
            lines = [line for line in entry.splitlines() if not line.strip().startswith("--")]
            text = " ".join(" ".join(lines).split())
            if len(text.split()) <= MAX_WORDS:
                yield text
            else:
                yield from sentences(text)


def python_docs(root: Path) -> Iterator[str]:
    for path in sorted(root.rglob("*.txt")):
        for paragraph in _rst_paragraphs(path.read_text(encoding="utf-8", errors="replace")):
            yield from sentences(paragraph)


def _rst_paragraphs(source: str) -> Iterator[str]:
    """Unindented prose paragraphs, markup reduced to its words: code blocks, directives,
    tables and headings dropped."""
    for block in re.split(r"\n\s*\n", source):
        lines = block.splitlines()
        if not lines or lines[0][:1].isspace() or lines[0].startswith(("..", ">>>", "+", "=", "-", "*")):
            continue
        if len(lines) > 1 and set(lines[1].strip()) <= set("=-~^*#+"):
            continue  # a heading
        text = RST_LINK.sub(r"\1", RST_ROLE.sub(r"\1", " ".join(lines)))
        yield text.replace("``", "").replace("**", "")


def write(path: Path, texts: Iterable[str]) -> int:
    kept = list(dict.fromkeys(t for t in texts if looks_like_prose(t)))
    with gzip.open(path, "wt", encoding="utf-8") as f:
        f.write("\n".join(kept) + "\n")
    return len(kept)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--fortunes", type=Path, default=FORTUNES)
    parser.add_argument("--python-docs", type=Path, default=PYTHON_DOCS)
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    print("| source | sentences |\n|---|---|")
    sources = (("fortunes", args.fortunes, fortunes), ("python-docs", args.python_docs, python_docs))
    for name, root, read in sources:
        if not root.is_dir():
            raise SystemExit(f"{root} not found: apt-get install fortunes python3-doc")
        print(f"| {name} | {write(args.out / f'{name}.txt.gz', read(root)):,} |")


if __name__ == "__main__":
    main()
