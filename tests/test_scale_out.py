"""Server mode: agents write with plain qdrant-client calls; two daemons split partitions."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest
from qdrant_client import QdrantClient, models

from reverie.config import Settings
from reverie.consolidation.replica import Replica
from reverie.errors import ConfigError
from reverie.memory import Reverie
from reverie.storage import payload as p
from reverie.storage.buckets import bucket_of
from reverie.storage.server import ServerStore

PARAPHRASES = [
    ("The user prefers green tea in the morning.", "In the morning the user likes green tea."),
    ("Alice's birthday is on the 3rd of May.", "Alice was born on May 3rd."),
    ("The deploy key lives in the team vault.", "The team vault holds the deploy key."),
]
AGENTS = [f"agent-{i}" for i in range(8)]


def agent_writes(client: QdrantClient, embedder) -> dict[int, str]:
    """What an agent does with Qdrant alone: create a collection and upsert points."""
    client.create_collection(
        "memories", vectors_config=models.VectorParams(size=384, distance=models.Distance.COSINE)
    )
    texts = [t for pair in PARAPHRASES for t in pair]
    vectors = embedder.encode(texts)
    points, owner = [], {}
    for a, agent in enumerate(AGENTS):
        for t, (text, vector) in enumerate(zip(texts, vectors, strict=True)):
            point_id = a * 100 + t
            owner[point_id] = agent
            points.append(
                models.PointStruct(
                    id=point_id, vector=vector.tolist(), payload={"agent_id": agent, "text": text}
                )
            )
    client.upsert("memories", points=points)
    return owner


def daemon(client: QdrantClient, tmp_path: Path, replica: str) -> Reverie:
    settings = Settings()
    settings.storage.data_dir = tmp_path / replica.replace("/", "-")
    settings.consolidation.replica = replica
    return Reverie(settings, ServerStore(client))


def test_two_daemons_adopt_plain_points_and_never_share_a_partition(tmp_path: Path, embedder) -> None:
    client = QdrantClient(location=":memory:")  # one Qdrant, seen by the agent and both daemons
    owner = agent_writes(client, embedder)
    first, second = daemon(client, tmp_path, "0/2"), daemon(client, tmp_path, "1/2")
    mine = {agent for agent in AGENTS if bucket_of((("str", agent), None), 2) == 0}
    assert 0 < len(mine) < len(AGENTS), "the hash should split eight agents between two replicas"

    report = first.consolidate()
    touched = {owner[m["id"]] for merge in report.merges for m in merge["members"]}
    assert touched == mine and len(report.merges) == 3 * len(mine)
    for point in client.scroll("memories", limit=1000)[0]:
        if point.payload.get("agent_id") not in mine:
            assert p.KEY not in point.payload, "the first daemon touched another replica's point"

    report = second.consolidate()
    touched = {owner[m["id"]] for merge in report.merges for m in merge["members"]}
    assert touched == set(AGENTS) - mine and len(report.merges) == 3 * len(touched)
    stats = first.stats()
    assert stats["live"] == 3 * len(AGENTS) and stats["merged"] == 3 * len(AGENTS) and stats["fresh"] == 0
    for rv in (first, second):
        assert rv.consolidate().merges == []  # nothing left for either
        rv.run_log.close()


class ShardKeyRecorder(QdrantClient):
    """Local mode has no shards and drops the shard key it is given: this client notes the
    key each upsert carries, then stores the points as local mode does."""

    def __init__(self) -> None:
        super().__init__(location=":memory:")
        self.upserts: list[tuple[str, str | None, list[dict]]] = []

    def upsert(self, collection_name: str, points, shard_key_selector=None, **kwargs):  # type: ignore[override]
        self.upserts.append((collection_name, shard_key_selector, [dict(pt.payload) for pt in points]))
        return super().upsert(collection_name, points, shard_key_selector=shard_key_selector, **kwargs)


def test_with_shard_buckets_every_write_goes_to_its_tenants_shard_key(tmp_path: Path, embedder) -> None:
    """A custom-sharded collection (storage.shard_buckets): the merged points, the archive
    copies and the restored originals of an undo each go to their tenant's bucket, the
    bucket consolidation replicas split tenants by."""
    client = ShardKeyRecorder()
    agent_writes(client, embedder)  # on a sharded server the agent's tool would name keys too
    client.upserts.clear()
    settings = Settings()
    settings.storage.data_dir = tmp_path
    rv = Reverie(settings, ServerStore(client, local=True, shard_buckets=4))
    report = rv.consolidate()
    assert report.merge_count == len(PARAPHRASES) * len(AGENTS)
    rv.undo(report.merges[0]["merge_id"])
    written = {(collection, key) for collection, key, _ in client.upserts}
    assert {collection for collection, _ in written} == {"memories", "memories__archive"}
    assert len({key for _, key in written}) > 1, "eight agents should fall into several buckets"
    for _, key, payloads in client.upserts:
        for payload in payloads:
            assert key == f"bucket-{bucket_of((('str', payload['agent_id']), None), 4)}"
    rv.run_log.close()


TYPED = [("int", 1), ("str", "1"), ("bool", True), ("float", 1.0)]


def test_replica_hash_is_stable_and_covers_every_partition() -> None:
    partitions = [(("str", f"agent-{i}"), None) for i in range(1000)]
    owners = [[Replica(i, 3).owns(partition) for i in range(3)] for partition in partitions]
    assert all(sum(row) == 1 for row in owners)
    # a text tenant keeps the slot it had before tenants were typed (daemons upgrade one by one)
    before = int.from_bytes(hashlib.sha256(b'["agent-1",null]').digest()[:8], "big") % 3
    assert bucket_of((("str", "agent-1"), None), 3) == before
    assert len({bucket_of(((kind, value),), 1000) for kind, value in TYPED}) == len(TYPED)
    assert 250 < sum(row[0] for row in owners) < 420


@pytest.mark.parametrize("spec", ["2/2", "1/0", "a/b", "1"])
def test_a_bad_replica_names_the_key(spec: str) -> None:
    from reverie.config import load_settings

    with pytest.raises(ConfigError, match="consolidation.replica"):
        load_settings(environ={"REVERIE_CONSOLIDATION__REPLICA": f'"{spec}"'})
