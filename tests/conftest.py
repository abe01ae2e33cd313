"""Shared fixtures: real engines (qdrant-edge, qdrant-client local mode), the real embedder."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from reverie.config import Settings
from reverie.inversion.embedders import Embedder
from reverie.memory import Reverie
from reverie.storage import Store
from reverie.storage.edge import EdgeStore
from reverie.storage.server import ServerStore

STORE_KINDS = ["edge", "client-local"]

# The suite never reaches the network: a library that would fetch a model from the hub
# (mem0's fastembed BM25) fails at once instead of retrying with growing sleeps.
os.environ.setdefault("HF_HUB_OFFLINE", "1")


def make_store(kind: str, root: Path) -> Store:
    if kind == "edge":
        return EdgeStore(root / "collections")
    return ServerStore.connect(":memory:")


@pytest.fixture(params=STORE_KINDS)
def store_kind(request: pytest.FixtureRequest) -> str:
    return request.param


@pytest.fixture
def store(store_kind: str, tmp_path: Path) -> Iterator[Store]:
    s = make_store(store_kind, tmp_path)
    yield s
    s.close()


@pytest.fixture(scope="session")
def embedder() -> Embedder:
    """The packaged all-MiniLM-L6-v2, loaded once for the whole session."""
    e = Embedder("sentence-transformers/all-MiniLM-L6-v2")
    assert e.dimension == 384
    return e


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    s = Settings()
    s.storage.data_dir = tmp_path / "data"
    return s


@pytest.fixture
def rv(store_kind: str, settings: Settings, tmp_path: Path) -> Iterator[Reverie]:
    """A Reverie over either real engine, for tests that write vectors themselves."""
    r = Reverie(settings, make_store(store_kind, tmp_path))
    yield r
    r.close()
