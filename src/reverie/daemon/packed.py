"""The packed write format: vectors as raw little-endian float32, everything else as JSON.

JSON floats cost more to print and parse than the vectors are worth: 384 floats take about
3 KB as text and 1.5 KB packed, and numpy reads the packed bytes without a parse. A packed
body (media type `application/x-reverie-packed`, `POST /memories/packed`) is:

    b"RVP1" | header length (uint32, little-endian) | header (UTF-8 JSON) | vectors

The header is `{"dimension": d, "memories": [...], "partition": {...}}`, each memory as in
the JSON write without its vector (`id`, `text`, `payload`, `sparse`), and `"raw_payload":
true` where each payload is the whole point payload (`reverie import`); the vectors follow as
len(memories) rows of d float32, little-endian, in the order of the memories. Any language
writes it with a struct packer and a JSON encoder.
"""

from __future__ import annotations

import json
import struct
from typing import Any

import numpy as np

from reverie.errors import InvalidInputError

MEDIA_TYPE = "application/x-reverie-packed"
MAGIC = b"RVP1"
_LENGTH = struct.Struct("<I")
_FLOAT32 = np.dtype("<f4")


def pack(
    vectors: np.ndarray,
    memories: list[dict[str, Any]],
    partition: dict[str, Any] | None = None,
    raw_payload: bool = False,
) -> bytes:
    """A packed body: one row of `vectors` per memory (its other fields in `memories`);
    `raw_payload`: the payloads are whole point payloads, written as given."""
    matrix = np.ascontiguousarray(vectors, dtype=_FLOAT32)
    if matrix.ndim != 2 or matrix.shape[0] != len(memories):
        raise InvalidInputError(f"{len(memories)} memories need as many vector rows, got {matrix.shape}")
    header = {"dimension": matrix.shape[1], "memories": memories, "partition": partition or {}}
    if raw_payload:
        header["raw_payload"] = True
    encoded = json.dumps(header, separators=(",", ":")).encode()
    return MAGIC + _LENGTH.pack(len(encoded)) + encoded + matrix.tobytes()


def split(body: bytes) -> tuple[bytes, memoryview]:
    """A packed body's header (JSON bytes, for the API to validate) and its vector bytes."""
    start = len(MAGIC) + _LENGTH.size
    if body[: len(MAGIC)] != MAGIC or len(body) < start:
        raise InvalidInputError(f"a packed body starts with {MAGIC!r} and the header's length ({MEDIA_TYPE})")
    (length,) = _LENGTH.unpack_from(body, len(MAGIC))
    if start + length > len(body):
        raise InvalidInputError(f"packed header of {length} bytes runs past the body's {len(body) - start}")
    return body[start : start + length], memoryview(body)[start + length :]


def rows(raw: memoryview, count: int, dimension: int) -> np.ndarray:
    """`count` vectors of `dimension` float32 from the bytes after the header."""
    expected = count * dimension * _FLOAT32.itemsize
    if len(raw) != expected:
        raise InvalidInputError(
            f"{count} vectors of {dimension} float32 take {expected} bytes; the body holds {len(raw)}"
        )
    return np.frombuffer(raw, dtype=_FLOAT32).reshape(count, dimension).astype(np.float32)
