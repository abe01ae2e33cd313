"""Synthetic memories for benchmarks: clustered unit vectors that look like sentence embeddings.

Real sentence embeddings are not isotropic: unrelated sentences still share a cosine of
0.1-0.4 (a common direction and topics). So every point is a mix of a shared direction, one
of a few hundred topic directions and its own noise; near-duplicates are groups of varied
size (2-12, mostly small) and tightness (pairwise cosine about 0.83-0.98) around a point
built the same way.

    python bench/datagen.py --n 100000 --out data.npy    # also data.labels.npy
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from pathlib import Path

import numpy as np

DIM = 384


@dataclass
class Dataset:
    vectors: np.ndarray  # float32, unit rows
    labels: np.ndarray  # group id of near-duplicates, -1 for a point with none


def generate(n: int, duplicate_fraction: float = 0.3, seed: int = 0, dim: int = DIM) -> Dataset:
    rng = np.random.default_rng(seed)
    shared = unit(rng.normal(size=dim))
    topics = unit(rng.normal(size=(256, dim)))

    def base(count: int) -> np.ndarray:
        topic = topics[rng.integers(0, len(topics), count)]
        return unit(0.45 * shared + 0.55 * topic + 0.9 * unit(rng.normal(size=(count, dim))))

    sizes = []
    duplicates = int(n * duplicate_fraction)
    while sum(sizes) < duplicates:
        sizes.append(int(min(12, 2 + rng.geometric(0.45) - 1)))
    sizes[-1] -= sum(sizes) - duplicates
    sizes = [s for s in sizes if s >= 2]
    in_groups = sum(sizes)
    centres = base(len(sizes))
    labels = np.repeat(np.arange(len(sizes)), sizes)
    # noise scale per group: pairwise cosine of its members from about 0.98 down to 0.83
    spread = rng.uniform(0.10, 0.45, len(sizes))[labels]
    members = unit(centres[labels] + spread[:, None] * unit(rng.normal(size=(in_groups, dim))))
    singles = base(n - in_groups)
    vectors = np.concatenate([members, singles]).astype(np.float32)
    labels = np.concatenate([labels, np.full(n - in_groups, -1)])
    order = rng.permutation(n)
    return Dataset(vectors[order], labels[order])


def unit(x: np.ndarray) -> np.ndarray:
    return x / np.linalg.norm(x, axis=-1, keepdims=True)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--n", type=int, required=True)
    parser.add_argument("--duplicate-fraction", type=float, default=0.3)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", required=True)
    args = parser.parse_args()
    data = generate(args.n, args.duplicate_fraction, args.seed)
    out = Path(args.out)
    np.save(out, data.vectors)
    np.save(out.with_suffix(".labels.npy"), data.labels)
    print(f"{args.n} vectors ({(data.labels >= 0).sum()} in {data.labels.max() + 1} groups) -> {out}")


if __name__ == "__main__":
    main()
