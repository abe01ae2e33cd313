"""Read raw vectors with payloads for `reverie import`, for agents that embed elsewhere.

Two forms:
  - JSONL with vectors: one object a line, {"vector": [...], "id": optional,
    "payload": {...}, "sparse": optional {name: {"indices": [...], "values": [...]}}}
    (without "payload", the other keys are the payload);
  - a .npy matrix plus a JSONL of payloads, line i for row i (an "id" key is the id).
Everything is parsed and checked before anything is written; errors name file and line.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from reverie.errors import InvalidInputError
from reverie.storage.base import as_vector
from reverie.storage.intake import NewMemory, parse_sparse


def read_import(path: Path, payloads: Path | None = None) -> list[NewMemory]:
    for given in (path, payloads):
        # a device or a pipe could be read forever (/dev/zero has no line ends)
        if given is not None and given.exists() and not given.is_file():
            raise InvalidInputError(f"{given} is not a regular file")
    if path.suffix == ".npy":
        return _read_npy(path, payloads)
    if payloads is not None:
        raise InvalidInputError("--payloads goes with a .npy vector file, not with JSONL")
    return [_from_object(obj, path, line) for line, obj in _jsonl(path)]


def _read_npy(path: Path, payloads: Path | None) -> list[NewMemory]:
    try:
        matrix = np.load(path, allow_pickle=False)
    except (OSError, ValueError) as exc:
        raise InvalidInputError(f"cannot read {path}: {exc}") from None
    if matrix.ndim != 2 or not np.issubdtype(matrix.dtype, np.number):
        raise InvalidInputError(f"{path}: expected a 2-D numeric matrix, got shape {matrix.shape}")
    rows = [obj for _, obj in _jsonl(payloads)] if payloads else [{}] * len(matrix)
    if len(rows) != len(matrix):
        raise InvalidInputError(f"{payloads}: {len(rows)} payload lines for {len(matrix)} vectors in {path}")
    memories = []
    for vector, row in zip(matrix, rows, strict=True):
        payload = dict(row)
        point_id = payload.pop("id", None)
        memories.append(NewMemory(np.asarray(vector, dtype=np.float32), payload, point_id))
    return memories


def _from_object(obj: Any, path: Path, line: int) -> NewMemory:
    if not isinstance(obj, dict) or "vector" not in obj:
        raise InvalidInputError(f'{path}:{line}: expected an object with a "vector" key')
    try:
        vector = as_vector(obj["vector"])
    except (TypeError, ValueError):
        raise InvalidInputError(f'{path}:{line}: "vector" is not a list of numbers') from None
    if vector.ndim != 1:
        raise InvalidInputError(f'{path}:{line}: "vector" must be a flat list of numbers')
    if "payload" in obj:
        payload = obj["payload"]
        if not isinstance(payload, dict):
            raise InvalidInputError(f'{path}:{line}: "payload" must be an object')
    else:
        payload = {k: v for k, v in obj.items() if k not in ("vector", "id", "sparse")}
    return NewMemory(
        vector, dict(payload), obj.get("id"), sparse=parse_sparse(obj.get("sparse"), f"{path}:{line}")
    )


def _jsonl(path: Path) -> Iterator[tuple[int, Any]]:
    try:
        with path.open(encoding="utf-8") as handle:
            lines = list(handle)
    except (OSError, UnicodeDecodeError) as exc:
        raise InvalidInputError(f"cannot read {path}: {exc}") from None
    for number, text in enumerate(lines, start=1):
        if not text.strip():
            continue
        try:
            yield number, json.loads(text)
        except json.JSONDecodeError as exc:
            raise InvalidInputError(f"{path}:{number}: not valid JSON ({exc.msg})") from None
