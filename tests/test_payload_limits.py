"""Whatever reverie accepts, the engine reads back after a restart (storage/limits.py).

A payload nested ~120 levels deep was once stored and then made the embedded engine's
write-ahead log unreadable: every memory out of reach. Now every write path checks the
payload first, and agents' own points past the limits are quarantined."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from reverie.config import Settings
from reverie.errors import InvalidInputError
from reverie.memory import NewMemory, Reverie
from reverie.storage import payload as p
from reverie.storage.edge import EdgeStore
from reverie.storage.limits import MAX_DEPTH, payload_problem

VECTOR = np.array([1.0, 0.0, 0.0, 0.0], dtype=np.float32)


def nested(depth: int, leaf: Any = 1, as_list: bool = True) -> Any:
    value = leaf
    for _ in range(depth):
        value = [value] if as_list else {"a": value}
    return value


# any character, lone surrogates among them (hypothesis's text() leaves them out by itself)
characters = st.one_of(st.characters(), st.integers(0xD800, 0xDFFF).map(chr))
texts = st.text(characters, max_size=20)
keys = st.text(characters, max_size=8)
scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=True, allow_infinity=True),
    texts,
)
values = st.recursive(
    scalars,
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(characters, max_size=8), inner, max_size=4)
    ),
    max_leaves=20,
)
deep = st.builds(nested, st.integers(0, 140), scalars, st.booleans())
payloads = st.dictionaries(keys, values | deep, max_size=5)


def open_edge(root: Path) -> Reverie:
    settings = Settings()
    settings.storage.data_dir = root / "data"
    return Reverie(settings, EdgeStore(root / "collections"))


@given(batch=st.lists(payloads, min_size=1, max_size=12))
# PAYLOAD_FUZZ_EXAMPLES: more cases for docs/reliability.md's figure (CI runs 40)
@settings(
    max_examples=int(os.environ.get("PAYLOAD_FUZZ_EXAMPLES", "40")),
    deadline=None,
    suppress_health_check=list(HealthCheck),
)
def test_any_accepted_payload_reads_back_equal_after_a_restart(
    batch: list[dict[str, Any]], tmp_path_factory: pytest.TempPathFactory
) -> None:
    root = tmp_path_factory.mktemp("edge")
    accepted: dict[int, dict[str, Any]] = {}
    with open_edge(root) as rv:
        for index, payload in enumerate(batch):
            try:
                rv.write([NewMemory(VECTOR, payload, index)])
            except InvalidInputError as exc:
                assert payload_problem(payload) or "bytes is over the limit" in str(exc), str(exc)
                continue
            assert payload_problem(payload) is None
            accepted[index] = payload
    with open_edge(root) as rv:  # the engine replays its log: every accepted payload
        if accepted:
            found = {
                r.id: p.agent_payload(r.payload) for r in rv.store.retrieve(rv.collection, list(accepted))
            }
            assert found.keys() == accepted.keys()
            for point_id, payload in accepted.items():
                assert same_json(found[point_id], payload), (found[point_id], payload)


def same_json(a: Any, b: Any) -> bool:
    """Equal, but floats within 2 ulp: the engine's log replay parses some floats one ulp
    off what was written (found by this test: 1.1095060215963673e-76 came back ...672e-76)."""
    if isinstance(a, float) and isinstance(b, float):
        return a == b or math.isclose(a, b, rel_tol=4.5e-16, abs_tol=0.0)
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(same_json(a[k], b[k]) for k in a)
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(same_json(x, y) for x, y in zip(a, b, strict=True))
    return type(a) is type(b) and a == b


@pytest.mark.parametrize(
    ("payload", "problem"),
    [
        ({"x": nested(130)}, f"nests deeper than {MAX_DEPTH} levels"),
        ({"x": nested(MAX_DEPTH + 1, as_list=False)}, f"nests deeper than {MAX_DEPTH} levels"),
        ({"x": float("nan")}, "payload value at x is nan"),
        ({"x": [1, float("inf")]}, "payload value at x[1] is inf"),
        ({"x": 2**64}, "integer outside 64 bits"),
        ({"x": "\ud800"}, "payload value at x is not valid UTF-8"),
        ({"\udfff": 1}, "is not a string of valid UTF-8"),
        ({"x": {1, 2}}, "is a set, not a JSON value"),
    ],
)
def test_payloads_past_the_limits_are_named(payload: dict[str, Any], problem: str) -> None:
    assert problem in (payload_problem(payload) or "")


def test_the_deepest_accepted_payload_still_reads_back(tmp_path: Path) -> None:
    payload = {"x": nested(MAX_DEPTH), "y": nested(MAX_DEPTH - 1, as_list=False)}
    assert payload_problem(payload) is None
    with open_edge(tmp_path) as rv:
        rv.write([NewMemory(VECTOR, payload, 1)])
    with open_edge(tmp_path) as rv:
        assert p.agent_payload(rv.store.retrieve(rv.collection, [1])[0].payload) == payload


def test_every_write_path_refuses_a_deep_payload_and_the_store_reopens(tmp_path: Path) -> None:
    """HTTP (422 naming the limit), the CLI's import, and the library; then a restart."""
    from reverie.daemon.api import create_app
    from reverie.daemon.service import Service

    from helpers import running

    deep = {"x": nested(130)}
    settings = Settings()
    settings.storage.data_dir = tmp_path / "data"
    settings.inversion.model = "none"
    with Reverie.open(settings) as rv, running(create_app(Service(rv))) as client:
        good = client.post("/memories", json={"memories": [{"vector": VECTOR.tolist(), "id": 1}]})
        assert good.status_code == 200
        body = {"memories": [{"vector": VECTOR.tolist(), "payload": {"n": 1}}] * 3}
        body["memories"].append({"vector": VECTOR.tolist(), "payload": deep})
        refused = client.post("/memories", json=body)
        assert refused.status_code == 422 and f"deeper than {MAX_DEPTH} levels" in refused.json()["error"]
        nan = client.post(
            "/memories",
            content=b'{"memories": [{"vector": [1, 0, 0, 0], "payload": {"x": NaN}}]}',
            headers={"content-type": "application/json"},
        )
        assert nan.status_code == 422 and "is nan" in nan.json()["error"]
        assert client.get("/stats").json()["live"] == 1  # nothing of a refused batch was stored
    lines = tmp_path / "deep.jsonl"
    lines.write_text(json.dumps({"vector": VECTOR.tolist(), "payload": deep}) + "\n")
    command = [
        sys.executable,
        "-m",
        "reverie.cli",
        "--data-dir",
        str(tmp_path / "data"),
        "import",
        str(lines),
    ]
    imported = subprocess.run(command, capture_output=True, text=True, timeout=120)
    assert imported.returncode == 1 and f"deeper than {MAX_DEPTH} levels" in imported.stderr
    with Reverie.open(settings) as rv:  # reopens: the engine never saw the deep payload
        assert rv.store.count(rv.collection) == 1


def test_an_agents_own_deep_payload_is_quarantined_not_merged(tmp_path: Path) -> None:
    """A point an agent wrote with its own client (a Qdrant server's limits are its own):
    adoption quarantines it with the reason."""
    from reverie.storage.base import Record, VectorSchema
    from reverie.storage.server import ServerStore

    settings = Settings()
    settings.storage.data_dir = tmp_path
    settings.consolidation.single_tenant = True  # the agent's points name no tenant
    store = ServerStore.connect(":memory:")
    store.ensure_collection("memories", VectorSchema.single(4))
    deep, plain = {"text": "deep", "x": nested(40)}, {"text": "plain", "x": 1}
    store.upsert("memories", [Record(1, VECTOR, deep), Record(2, VECTOR, plain)])
    with Reverie(settings, store) as rv:
        report = rv.consolidate()
        assert report.quarantined == 1 and not report.merges
        stamp = p.meta(rv.store.retrieve(rv.collection, [1])[0].payload)
        assert stamp["state"] == p.QUARANTINED and "deeper than" in stamp["reason"]
