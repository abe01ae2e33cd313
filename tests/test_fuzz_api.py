"""Hostile input on the HTTP API, sent to a real server on loopback: requests generated
from its own OpenAPI schema (schemathesis; valid ones and deliberately invalid ones),
and writes with hypothesis-drawn vectors and texts (NaN, infinities, huge and tiny
values, wrong dimensions, empty and oversized text). Nothing may answer 5xx, a refused
write stores nothing, and the store keeps every invariant afterwards."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import numpy as np
import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.errors import Unsatisfiable

from reverie.config import Settings
from reverie.daemon import packed
from reverie.daemon.api import create_app
from reverie.daemon.service import Service
from reverie.inversion.embedders import Embedder
from reverie.memory import NewMemory, Reverie

from helpers import near_duplicates, running

EXAMPLES = 40  # per operation and mode: about a thousand requests, well under a minute
DELETED: set[object] = set()  # ids a generated DELETE removed (acknowledged with 200)
QUICK = settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck))


@schemathesis.serializer(packed.MEDIA_TYPE)
def packed_bytes(ctx: object, value: object) -> bytes:
    """A packed write's body as generated (binary): sent as it is, to be refused cleanly."""
    return value if isinstance(value, bytes) else str(value).encode()


@pytest.fixture(scope="module")
def daemon(
    tmp_path_factory: pytest.TempPathFactory, embedder: Embedder
) -> Iterator[tuple[Reverie, httpx.Client]]:
    config = Settings()
    config.storage.data_dir = tmp_path_factory.mktemp("fuzz") / "data"
    config.inversion.model = "none"  # labels: the requests stay fast; inversion has its own tests
    config.daemon.max_batch = 20
    config.daemon.max_body_bytes = 64 * 1024
    config.daemon.max_text_chars = 200
    with Reverie.open(config, embedder) as rv:
        vectors, _ = near_duplicates(groups=4, per_group=3, dim=embedder.dimension)
        rv.write([NewMemory(v, {"text": f"memory {i}"}, i) for i, v in enumerate(vectors)])
        with running(create_app(Service(rv))) as client:
            yield rv, client


@pytest.mark.parametrize("mode", list(schemathesis.GenerationMode), ids=lambda m: m.value)
def test_no_generated_request_gets_a_server_error(
    daemon: tuple[Reverie, httpx.Client], mode: schemathesis.GenerationMode
) -> None:
    """Every operation, EXAMPLES requests each (schemathesis' pytest plugin does not load
    under pytest 9, so its strategies run under hypothesis directly)."""
    schema = schemathesis.openapi.from_url(f"{daemon[1].base_url}/openapi.json")
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) >= 10, "the schema lost its routes"
    fuzzed = 0
    for operation in operations:

        @given(case=operation.as_strategy(generation_mode=mode))
        @QUICK
        def never_5xx(case: schemathesis.Case) -> None:
            response = case.call()
            assert response.status_code < 500, (
                f"{case.method} {case.path}: {response.status_code} {response.text}"
            )
            if case.method == "DELETE" and response.status_code == 200:
                DELETED.update(response.json()["deleted"])

        try:
            never_5xx()
        except Unsatisfiable:  # no invalid request exists for a route without inputs
            assert mode == schemathesis.GenerationMode.NEGATIVE
            continue
        fuzzed += 1
    assert fuzzed >= 8, f"only {fuzzed} operations fuzzed"


floats = st.floats(allow_nan=True, allow_infinity=True, width=32) | st.sampled_from([1e38, -1e38, 1e-45, 0.0])
vectors = st.lists(floats, min_size=0, max_size=400)
texts = st.text(max_size=300) | st.sampled_from(["", " ", "\x00", "a" * 201])


@given(vector=vectors | st.none(), text=texts | st.none())
@QUICK
def test_a_write_is_stored_whole_or_refused_with_a_4xx(
    daemon: tuple[Reverie, httpx.Client], vector, text
) -> None:
    rv, api = daemon
    memory = {k: v for k, v in (("vector", vector), ("text", text)) if v is not None}
    before = rv.stats()["live"]
    try:
        response = api.post("/memories", json={"memories": [memory]})
    except ValueError:  # NaN/inf cannot even be sent as JSON: nothing to test
        return
    assert response.status_code in (200, 400, 413, 422), response.text
    if response.status_code == 200:
        stored, _ = rv.get(response.json()["ids"][0])
        assert np.isfinite(stored.vector).all() and abs(np.linalg.norm(stored.vector) - 1) < 1e-5
        assert rv.stats()["live"] == before + 1
    else:
        assert response.json()["error"], "a refusal says why"
        assert rv.stats()["live"] == before


def test_the_store_holds_its_invariants_after_the_fuzzing(daemon: tuple[Reverie, httpx.Client]) -> None:
    rv = daemon[0]
    assert not rv.invariant_problems(must_hold=set(range(12)) - DELETED)
