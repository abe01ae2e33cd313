"""The prompt's keywords, chosen by the embedder.

The trained part ranks the LM's tokens by how likely each is in the sentence, one token at
a time: its likeliest words name about a third of a left-out sentence's words, and several
of them say the same thing. The embedder can judge a set of words together: a bag of
words embeds near the sentence it was taken from. So the keywords are chosen greedily from
a wider pool (the trained part's likeliest words and the words of the texts closest to the
vector), each round adding the words that bring the bag closest to the vector
(docs/inversion.md, "Keywords chosen by the embedder").
"""

from __future__ import annotations

import re
from collections.abc import Sequence

import numpy as np

from reverie.inversion.embedders import Embedder

PER_ROUND = 3  # words added per round: each round embeds the bag with every word left once
_WORD = re.compile(r"[A-Za-z]+")


def words_of(texts: Sequence[str]) -> list[str]:
    """The words a keyword may be taken from: lower case, more than three letters, in order."""
    return list(dict.fromkeys(w.lower() for text in texts for w in _WORD.findall(text) if len(w) > 3))


def choose_keywords(
    embedder: Embedder, target: np.ndarray, pool: Sequence[str], count: int
) -> tuple[str, ...]:
    """`count` words of `pool` whose bag lies closest to the unit `target`, chosen greedily:
    each round adds the PER_ROUND words that, each added alone, bring the bag closest."""
    left, chosen = list(dict.fromkeys(pool)), []
    while left and len(chosen) < count:
        bags = [" ".join([*chosen, word]) for word in left]
        scores = embedder.encode(bags, ranking=True) @ target
        best = np.argsort(-scores, kind="stable")[: min(PER_ROUND, count - len(chosen))].tolist()
        chosen += [left[i] for i in best]
        taken = set(best)
        left = [word for i, word in enumerate(left) if i not in taken]
    return tuple(chosen)
