"""The phrasebook: the sentences an inverter was trained on, to steer vectors with no text.

A vector with no member texts is written from a prompt that shows the texts nearest to it
("Say what these say"). In a running daemon its partition supplies them, but an imported
vector, a sparse partition or a blend of raw vectors has none close. A trained inverter
keeps its training sentences beside its weights, each with the sign bits of its embedding
(48 bytes for 384 dimensions): the nearest by Hamming distance are embedded again, and the
closest of them and of the partition's texts steer the prompt. They steer only: a
phrasebook sentence is never shown as a memory's text. Measured on domains left out of
training, the cosine of pure inversion rose from 0.77 to 0.82-0.83 (docs/inversion.md).
"""

from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np

from reverie.errors import InverterError
from reverie.whole_files import replaced_whole

TEXTS = "phrases.txt.gz"
CODES = "phrases-signs.npy"
SHORTLIST = 64  # nearest by Hamming distance, embedded again: 95% of the true nearest 3 are in it


def sign_codes(vectors: np.ndarray) -> np.ndarray:
    """(n, dimension / 8) bytes: one bit a dimension, set where the value is positive."""
    return np.packbits(np.asarray(vectors) > 0, axis=1)


class Phrasebook:
    def __init__(self, texts: list[str], codes: np.ndarray) -> None:
        if len(texts) != len(codes):
            raise InverterError(f"the phrasebook holds {len(texts)} sentences but {len(codes)} codes")
        self.texts, self.codes = texts, codes

    @classmethod
    def load(cls, directory: Path) -> Phrasebook | None:
        """The phrasebook saved beside an inverter's weights; None where there is none."""
        if not (directory / TEXTS).exists():
            return None
        try:
            with gzip.open(directory / TEXTS, "rt", encoding="utf-8") as f:
                texts = f.read().split("\n")
            return cls(texts, np.load(directory / CODES))
        except (OSError, ValueError, EOFError) as exc:
            raise InverterError(f"cannot read the phrasebook in {directory}: {exc}") from None

    def shortlist(self, vector: np.ndarray) -> list[str]:
        """The sentences whose sign bits differ least from the vector's: candidates for its
        nearest, to be embedded again (sign bits rank neighbours only roughly)."""
        distances = np.bitwise_count(self.codes ^ sign_codes(vector[None])).sum(axis=1, dtype=np.int32)
        count = min(SHORTLIST, len(self.texts))
        return [self.texts[i] for i in np.argpartition(distances, count - 1)[:count]]


def save_phrasebook(directory: Path, texts: list[str], vectors: np.ndarray) -> None:
    """Training sentences, one a line (a line break within one becomes a space), and their
    sign bits, each file replaced whole."""
    with replaced_whole(directory / TEXTS) as scratch, gzip.open(scratch, "wt", encoding="utf-8") as f:
        f.write("\n".join(" ".join(t.split()) for t in texts))
    with replaced_whole(directory / CODES) as scratch, open(scratch, "wb") as f:
        np.save(f, sign_codes(vectors))


def drop_phrasebook(directory: Path) -> None:
    """A model trained without one keeps none from an earlier run in the same directory."""
    for name in (TEXTS, CODES):
        (directory / name).unlink(missing_ok=True)
