"""Layouts: which writer a collection has, where its tenants are, and the errors that name
what was seen. Collections are made with qdrant-client (local mode) as the writers make
them; reverie reads them through its own server adapter."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import structlog
from qdrant_client import QdrantClient, models

from reverie.config import Settings, load_settings
from reverie.errors import ConfigError, InvalidInputError, StorageError
from reverie.memory import NewMemory, Reverie
from reverie.storage import open_store
from reverie.storage.layouts import LAYOUTS, PayloadError, get_path, shared

DIM = 8


def vector(seed: int, jitter: float = 0.0) -> list[float]:
    rng = np.random.default_rng(seed)
    v = rng.normal(size=DIM) + jitter * np.random.default_rng(seed + 1000).normal(size=DIM)
    return (v / np.linalg.norm(v)).tolist()


def collection(path: Path, payloads: list[dict], vectors: models.VectorParams | dict | None = None) -> None:
    client = QdrantClient(path=str(path))
    config = vectors or models.VectorParams(size=DIM, distance=models.Distance.COSINE)
    client.create_collection("memories", vectors_config=config)
    named = isinstance(config, dict)
    points = []
    for i, payload in enumerate(payloads):
        v = vector(i // 2, jitter=0.01 * (i % 2))  # points 2k and 2k+1 are near-duplicates
        points.append(
            models.PointStruct(id=i + 1, vector={next(iter(config)): v} if named else v, payload=payload)
        )
    client.upsert("memories", points)
    client.close()


def opened(path: Path, **env: str) -> Reverie:
    settings = load_settings(environ={"REVERIE_STORAGE__URL": f"file:{path}", **env})
    settings.storage.data_dir = path.parent / "data"
    return Reverie.open(settings)


def test_each_writer_is_recognised_and_the_tenant_keys_follow_it(tmp_path: Path) -> None:
    payloads = {
        "langchain": {"page_content": "tea", "metadata": {"user_id": "u1"}},
        "mcp-server-qdrant": {"document": "tea", "metadata": {"user_id": "u1"}},
        "mem0": {"data": "tea", "hash": "x", "user_id": "u1"},
        "llamaindex": {
            "_node_content": json.dumps({"text": "tea"}),
            "_node_type": "TextNode",
            "user_id": "u1",
        },
        "reverie": {"text": "tea", "user_id": "u1"},
    }
    expected_tenants = {
        "langchain": ["metadata.agent_id", "metadata.user_id"],
        "mcp-server-qdrant": ["metadata.agent_id", "metadata.user_id"],
        "mem0": ["user_id", "agent_id", "run_id"],
        "llamaindex": ["agent_id", "user_id"],
        "reverie": ["agent_id", "user_id"],
    }
    for name, payload in payloads.items():
        path = tmp_path / name
        collection(path, [payload, payload])
        with opened(path) as rv:
            layout = rv.layout
            assert layout.name == name and list(layout.tenant_keys) == expected_tenants[name]
            assert layout.text_of(payload) == "tea" and layout.tenant(payload)[
                -1 if name != "mem0" else 0
            ] == ("str", "u1")
            assert rv.stats()["layout"]["layout"] == name


def test_operator_partition_keys_go_under_the_metadata_object_and_dotted_paths_stay(tmp_path: Path) -> None:
    collection(tmp_path / "q", [{"page_content": "tea", "metadata": {"user": {"id": "u1"}, "org": "a"}}] * 2)
    env = {"REVERIE_CONSOLIDATION__PARTITION_KEYS": '["org", "metadata.user.id"]'}
    with opened(tmp_path / "q", **env) as rv:
        assert rv.layout.tenant_keys == ("metadata.org", "metadata.user.id")
        assert rv.layout.tenant({"metadata": {"user": {"id": "u1"}, "org": "a"}}) == (
            ("str", "a"),
            ("str", "u1"),
        )


def test_a_partition_key_no_memory_carries_is_named(tmp_path: Path) -> None:
    collection(tmp_path / "q", [{"page_content": "tea", "metadata": {"user_id": "u1"}}] * 2)
    with (
        structlog.testing.capture_logs() as logs,
        opened(tmp_path / "q", REVERIE_CONSOLIDATION__PARTITION_KEYS='["tenant"]') as rv,
    ):
        assert rv.stats()["layout"]["absent_keys"] == ["metadata.tenant"]
    warned = [e for e in logs if e["event"] == "layout.partition_key_absent"]
    assert warned and warned[0]["key"] == "metadata.tenant" and warned[0]["log_level"] == "warning"


def test_a_collection_that_mixes_layouts_or_fits_none_is_an_error_naming_what_was_seen(
    tmp_path: Path,
) -> None:
    collection(
        tmp_path / "mixed", [{"page_content": "tea", "metadata": {}}, {"data": "tea", "hash": "h"}] * 2
    )
    with (
        opened(tmp_path / "mixed") as rv,
        pytest.raises(ConfigError, match=r"mixes layouts \(2 langchain, 2 mem0 of 4"),
    ):
        rv.consolidate()
    collection(tmp_path / "none", [{"body": "tea", "who": "u1"}] * 2)
    with (
        opened(tmp_path / "none") as rv,
        pytest.raises(ConfigError, match=r"cannot tell which tool.*\['body', 'who'\]"),
    ):
        rv.stats()
    # an explicit layout places it
    with opened(tmp_path / "none", REVERIE_STORAGE__LAYOUT='{text = "body", tenant_keys = ["who"]}') as rv:
        assert rv.layout.name == "explicit" and rv.layout.tenant({"who": "u1"}) == (("str", "u1"),)
        report = rv.consolidate(full=True)
        assert len(report.merges) == 1
        merged = next(r for r in rv.live_records() if r.payload["_reverie"]["kind"] == "merged")
        assert merged.payload["body"] == "tea" and merged.payload["who"] == "u1"


def test_a_detected_layout_is_remembered_when_a_plain_client_writes_another_shape(tmp_path: Path) -> None:
    """Once detected, the collection reopens as what it was, though a plain client has since
    written unadopted points of another shape (once a refusal to open at all)."""
    path = tmp_path / "q"
    collection(path, [{"page_content": "tea", "metadata": {"user_id": "u1"}}] * 2)
    with opened(path) as rv:
        assert rv.layout.name == "langchain"
    client = QdrantClient(path=str(path))
    other = [models.PointStruct(id=100 + i, vector=vector(50 + i), payload={"body": "x"}) for i in range(6)]
    client.upsert("memories", other)
    client.close()
    with opened(path) as rv:
        assert rv.layout.name == "langchain"
        report = rv.consolidate(full=True)
        assert len(report.merges) == 1 and report.adopted == 8  # the pair; the others have no text
    remembered = json.loads((tmp_path / "data" / "layouts.json").read_text())
    assert remembered == {f"file:{path} memories": "langchain"}


def test_named_vectors_are_read_by_name_and_a_missing_name_is_an_error(tmp_path: Path) -> None:
    named = {"fast-all-minilm-l6-v2": models.VectorParams(size=DIM, distance=models.Distance.COSINE)}
    collection(tmp_path / "q", [{"document": "tea", "metadata": {}}] * 4, named)
    one = {"REVERIE_CONSOLIDATION__SINGLE_TENANT": "true"}
    with opened(tmp_path / "q", **one) as rv:
        assert rv.layout.vector == "fast-all-minilm-l6-v2" and rv.store.vector_size(rv.collection) == DIM
        report = rv.consolidate(full=True)
        assert len(report.merges) == 2 and report.quarantined == 0
        assert rv.store.schema(rv.archive) == rv.store.schema(rv.collection), (
            "the archive mirrors the vectors"
        )
    explicit = {"REVERIE_STORAGE__LAYOUT": '{text = "document", vector = "dense"}', **one}
    with (
        opened(tmp_path / "q", **explicit) as rv,
        pytest.raises(ConfigError, match="names dense vector 'dense', which"),
    ):
        rv.consolidate()


def test_the_docs_recipe_for_two_dense_vectors_keeps_tenants_apart(tmp_path: Path) -> None:
    """docs/integrations.md: a collection with two dense vectors takes `[storage.layout]
    vector = NAME` (once refused: text was required), and an explicit layout's tenant keys
    default to agent_id and user_id under its metadata (they once fell back to the top
    level, which these points do not have: 20 merges joined two users)."""
    params = models.VectorParams(size=DIM, distance=models.Distance.COSINE)
    users = [{"page_content": "tea", "metadata": {"user_id": u}} for u in ("u1", "u2", "u1", "u2")]
    collection(tmp_path / "q", users, {"dense": params, "other": params})  # 0-1 and 2-3 near-duplicates
    recipes = [
        '{vector = "dense"}',
        '{text = "page_content", metadata = "metadata", vector = "dense"}',
    ]
    for recipe in recipes:
        with opened(tmp_path / "q", REVERIE_STORAGE__LAYOUT=recipe) as rv:
            assert rv.layout.tenant_keys == ("metadata.agent_id", "metadata.user_id")
            report = rv.consolidate(full=True, dry_run=True)
            assert report.merges == [], "u1 and u2 only share vectors across tenants"


def test_a_run_refuses_to_merge_when_no_memory_carries_a_tenant_key(tmp_path: Path) -> None:
    """A wrong path (or a store of one tenant: only the operator knows) once merged across
    users in silence. Now the run names the keys it looked for and merges nothing."""
    collection(tmp_path / "q", [{"page_content": "tea", "metadata": {"owner": u}} for u in "abab"])
    with opened(tmp_path / "q") as rv:
        with pytest.raises(ConfigError, match=r"looked for metadata.agent_id, metadata.user_id"):
            rv.consolidate(full=True)
        assert rv.stats()["merged"] == 0
    with opened(tmp_path / "q", REVERIE_CONSOLIDATION__PARTITION_KEYS='["owner"]') as rv:
        assert rv.consolidate(full=True).merges == []  # a-b pairs only: different tenants
    with opened(tmp_path / "q", REVERIE_CONSOLIDATION__SINGLE_TENANT="true") as rv:
        assert len(rv.consolidate(full=True).merges) == 2  # told: one tenant


def test_points_whose_vectors_differ_never_merge(tmp_path: Path) -> None:
    """Two named dense vectors, points holding one or both: only same-shaped points merge,
    and a merged point keeps the centroid of every vector its members share."""
    config = {n: models.VectorParams(size=DIM, distance=models.Distance.COSINE) for n in ("text", "image")}
    client = QdrantClient(path=str(tmp_path / "q"))
    client.create_collection("memories", vectors_config=config)
    both = [{"text": vector(0, 0.01 * i), "image": vector(5, 0.01 * i)} for i in range(2)]
    only_text = [{"text": vector(0, 0.02 + 0.01 * i)} for i in range(2)]
    points = [
        models.PointStruct(id=i + 1, vector=v, payload={"document": "tea", "metadata": {}})
        for i, v in enumerate(both + only_text)
    ]
    client.upsert("memories", points)
    client.close()
    layout = '{text = "document", metadata = "metadata", vector = "text"}'
    with opened(
        tmp_path / "q", REVERIE_STORAGE__LAYOUT=layout, REVERIE_CONSOLIDATION__SINGLE_TENANT="true"
    ) as rv:
        report = rv.consolidate(full=True)
        assert sorted(sorted(int(m["id"]) for m in merge["members"]) for merge in report.merges) == [
            [1, 2],
            [3, 4],
        ]
        merged = {tuple(sorted(r.others)): r for r in rv.live_records()}
        image = np.asarray(merged[("image",)].others["image"])
        assert np.isclose(np.linalg.norm(image), 1.0, atol=1e-5) and image @ np.asarray(vector(5)) > 0.99
        assert merged[()].others == {}


def test_bad_layout_input_names_the_problem(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="storage.layout.*unknown layout 'langchan'"):
        load_settings(environ={"REVERIE_STORAGE__LAYOUT": '"langchan"'})
    with pytest.raises(ConfigError, match="storage.layout.text"):
        load_settings(environ={"REVERIE_STORAGE__LAYOUT": '{text = "a..b"}'})
    with pytest.raises(ConfigError, match="consolidation.text_key moved to storage.layout"):
        load_settings(environ={"REVERIE_CONSOLIDATION__TEXT_KEY": '"page_content"'})
    with pytest.raises(PayloadError, match=r"metadata.user_id: 'metadata' holds a str, not an object"):
        get_path({"metadata": "u1"}, "metadata.user_id")
    # reverie's own writes into a LangChain collection: text and tenant in LangChain's places
    s = Settings()
    s.storage.data_dir = tmp_path / "data"
    s.storage.layout = "langchain"
    with Reverie.open(s) as rv:
        rv.write(
            [
                NewMemory(
                    np.asarray(vector(1), dtype=np.float32),
                    rv.new_payload("tea", {"src": "x"}, rv.partition_payload({"user_id": "u1"})),
                )
            ]
        )
        stored = next(iter(rv.live_records())).payload
        assert stored["page_content"] == "tea" and stored["metadata"] == {"src": "x", "user_id": "u1"}
        with pytest.raises(InvalidInputError, match="memory 0: page_content holds a int, not text"):
            rv.write([NewMemory(np.asarray(vector(2), dtype=np.float32), {"page_content": 7})])
        with pytest.raises(InvalidInputError, match="'team' is not a partition key"):
            rv.partition_payload({"team": "t"})


def test_shared_metadata_keeps_nested_tenant_keys() -> None:
    members = [
        {"metadata": {"user": {"id": "u1", "name": "Ann"}, "source": "a"}},
        {"metadata": {"user": {"id": "u1", "name": "Ann B."}, "source": "b"}},
    ]
    assert shared(members) == {"metadata": {"user": {"id": "u1"}}}


def test_a_merged_llamaindex_node_loads_in_llamaindex() -> None:
    from llama_index.core.schema import TextNode
    from llama_index.core.vector_stores.utils import metadata_dict_to_node, node_to_metadata_dict

    from reverie.storage import Record

    nodes = [TextNode(text=t, metadata={"user_id": "u1", "n": i}) for i, t in enumerate(["tea", "tea!"])]
    members = [Record(n.node_id, None, node_to_metadata_dict(n)) for n in nodes]
    payload = LAYOUTS["llamaindex"].merged_payload(
        members, "tea", "6f1c2a8e-3b7d-5e90-a4c1-2d8f0b9e7a13", "now"
    )
    node = metadata_dict_to_node(payload)
    assert node.node_id == "6f1c2a8e-3b7d-5e90-a4c1-2d8f0b9e7a13" and node.get_content() == "tea"
    assert node.metadata == {"user_id": "u1"} and payload["user_id"] == "u1" and "n" not in payload
    updated = {**payload, **LAYOUTS["llamaindex"].text_fields(payload, "an inversion")}
    assert metadata_dict_to_node(updated).get_content() == "an inversion"


def test_writes_with_sparse_vectors_through_the_api(tmp_path: Path, embedder) -> None:
    """An agent writing into a mem0 collection through reverie's API gives the bm25 slot
    a vector, so mem0's keyword search finds the memory; bad sparse input is named."""
    from reverie.daemon.api import create_app
    from reverie.daemon.service import Service

    from helpers import running

    s = Settings()
    s.storage.data_dir = tmp_path / "data"
    s.storage.layout = "mem0"
    bm25 = {"indices": [3, 11], "values": [1.0, 0.5]}
    with Reverie(s, open_store(s.storage), embedder) as rv, running(create_app(Service(rv))) as client:
        written = client.post(
            "/memories",
            json={"memories": [{"text": "tea", "sparse": {"bm25": bm25}}], "partition": {"user_id": "u1"}},
        )
        assert written.status_code == 200, written.text
        stored = rv.store.retrieve(rv.collection, written.json()["ids"])[0]
        assert stored.others["bm25"].indices.tolist() == [3, 11] and stored.payload["data"] == "tea"
        assert stored.payload["user_id"] == "u1" and len(stored.payload["hash"]) == 32
        negative = {"indices": [-1], "values": [1.0]}
        refused = client.post("/memories", json={"memories": [{"text": "tea", "sparse": {"bm25": negative}}]})
        assert (
            refused.status_code == 400
            and "memory 0: sparse vector 'bm25': negative index -1" in refused.json()["error"]
        )
        unknown = client.post("/memories", json={"memories": [{"text": "tea", "sparse": {"splade": bm25}}]})
        assert (
            unknown.status_code == 400
            and "no sparse vector named 'splade' (has: bm25)" in unknown.json()["error"]
        )
        assert rv.store.count(rv.collection) == 1, "refused writes stored nothing"


def test_config_show_says_which_layout_auto_found(tmp_path: Path, capsys, monkeypatch) -> None:
    from reverie.cli import main

    monkeypatch.setenv("REVERIE_STORAGE__URL", f"file:{tmp_path / 'q'}")
    monkeypatch.setenv("REVERIE_STORAGE__DATA_DIR", str(tmp_path / "data"))
    assert main(["config", "show"]) == 0
    assert "# storage.layout auto: collection 'memories' does not exist yet" in capsys.readouterr().out
    collection(tmp_path / "q", [{"page_content": "tea", "metadata": {"user_id": "u1"}}] * 2)
    assert main(["config", "show"]) == 0
    shown = capsys.readouterr().out
    assert '# storage.layout auto: collection \'memories\' reads as {"layout": "langchain"' in shown
    assert '"tenant_keys": ["metadata.agent_id", "metadata.user_id"]' in shown


def test_a_folder_an_agents_local_client_holds_is_named(tmp_path: Path) -> None:
    """qdrant-client's local mode takes one process at a time: the agent's own client holding
    the folder was a traceback, now an error naming the setting."""
    collection(tmp_path / "q", [{"page_content": "tea", "metadata": {}}] * 2)
    holder = QdrantClient(path=str(tmp_path / "q"))
    try:
        with pytest.raises(StorageError, match=r"\(storage.url\): Storage folder .* is already accessed"):
            opened(tmp_path / "q")
    finally:
        holder.close()
