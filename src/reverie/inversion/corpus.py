"""Training text for inverters, split so that nothing held out was ever trained on.

A corpus file is either plain text (one sentence a line, gzip or not) or a paraphrase
file (JSONL, `{"group": id, "texts": {variant: text}}` a line). A paraphrase group is held
out whole: a verse kept back for evaluation has no other wording of it in training. A
text that appears in a held-out group is dropped from training too (repeated formulas).
"""

from __future__ import annotations

import gzip
import json
import random
from dataclasses import dataclass
from pathlib import Path

from reverie.errors import InvalidInputError


@dataclass
class Corpus:
    train: list[str]
    held_out: list[str]
    origins: list[int]  # for each training sentence, the first corpus file (its index) that holds it


def load_corpus(paths: list[Path], holdout: int, seed: int, limit: int | None = None) -> Corpus:
    """Each file's groups, shuffled with `seed`; its last `holdout` groups are held out."""
    if not paths:
        raise InvalidInputError("no corpus file given")
    train: dict[str, int] = {}  # each training text, in order, and the first file that holds it
    held_out: list[str] = []
    for index, path in enumerate(paths):
        groups = read_groups(path)[:limit] if limit else read_groups(path)
        if holdout >= len(groups):
            raise InvalidInputError(f"{path}: holdout {holdout} leaves nothing to train on ({len(groups)})")
        random.Random(seed).shuffle(groups)
        cut = len(groups) - holdout
        for text in (t for g in groups[:cut] for t in g):
            train.setdefault(text, index)
        held_out += [t for g in groups[cut:] for t in g]
    kept_back = set(held_out)
    kept = {text: index for text, index in train.items() if text not in kept_back}
    return Corpus(list(kept), list(dict.fromkeys(held_out)), list(kept.values()))


def read_groups(path: Path) -> list[list[str]]:
    """The file's texts in groups (a plain text file: one sentence each), in file order."""
    opener = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rt", encoding="utf-8") as f:  # type: ignore[operator]
            lines = [line.strip() for line in f]
    except (OSError, UnicodeDecodeError) as exc:
        raise InvalidInputError(f"cannot read corpus {path}: {exc}") from None
    if ".jsonl" in path.suffixes:
        groups = [_texts(line, path, number) for number, line in enumerate(lines, 1) if line]
    else:
        groups = [[line] for line in dict.fromkeys(lines) if line]
    groups = [g for g in groups if g]
    if not groups:
        raise InvalidInputError(f"corpus {path} holds no sentences")
    return groups


def _texts(line: str, path: Path, number: int) -> list[str]:
    try:
        texts = json.loads(line)["texts"]
        return list(dict.fromkeys(t.strip() for t in texts.values() if isinstance(t, str) and t.strip()))
    except (ValueError, KeyError, TypeError, AttributeError):
        raise InvalidInputError(
            f'{path} line {number}: expected {{"group": ..., "texts": {{variant: text}}}}'
        ) from None
