"""The agents' own collections, written and read by the real libraries: LangChain
(langchain-qdrant, hybrid with a sparse vector), LlamaIndex, mcp-server-qdrant's connector
and mem0 (`add(..., infer=False)`, no LLM call). Each writes paraphrased memories for two
tenants who share some of them, reverie consolidates the collection in place (layout
detected, not configured), and the same library reads it back through its own search:
merged memories come with text and metadata, each tenant sees only its own, the counts
went down, and `reverie undo` brings the library's view back to what it was.

The rounds are bench/agent_libraries.py's, on the packaged demo sample (24 verses, three
wordings each); the bench runs them on the paraphrase file. Storage is qdrant-client's
local mode on disk, which one client opens at a time: the library closes its client while
reverie works, as two processes sharing it would.
"""

from __future__ import annotations

import hashlib
import sys
from pathlib import Path

import pytest
from qdrant_client import QdrantClient, models

from reverie.demo import sample
from reverie.errors import ConfigError, InvalidInputError
from reverie.inversion.embedders import Embedder
from reverie.memory import Reverie

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "bench"))
from agent_libraries import (  # noqa: E402
    COLLECTION,
    LIBRARIES,
    LangChain,
    Library,
    Mem0,
    Scenario,
    round_trip,
    settings_for,
    unanswered,
    views,
    wrong_group,
)


def demo_scenario() -> Scenario:
    groups: dict[str, list[str]] = {}
    for row in sample():
        groups.setdefault(row["verse"], []).append(row["text"])
    return Scenario.of(list(groups.items()))


def consolidated_round(library: Library, embedder: Embedder) -> None:
    scenario = demo_scenario()
    result = round_trip(library, scenario, embedder)
    assert result.layout == library.layout, "detected from the collection, not configured"
    assert result.points_before == len(scenario.memories) and result.points_after < 0.6 * result.points_before
    assert result.answered_before == result.answered_after == result.questions, result.wrong
    assert result.right_group_before == result.right_group_after == result.questions, result.wrong
    if result.from_merged_after is not None:
        assert result.from_merged_after >= 0.75 * result.questions, "answers came from merged memories"
    assert result.undo_restores_points and result.same_answers_after_undo == result.questions


@pytest.mark.parametrize("name", sorted(LIBRARIES))
def test_a_library_reads_its_collection_after_consolidation_and_undo(
    name: str, tmp_path: Path, embedder: Embedder
) -> None:
    consolidated_round(LIBRARIES[name](tmp_path / "qdrant", embedder), embedder)


def test_merged_memories_carry_a_sparse_vector_for_hybrid_search(tmp_path: Path, embedder: Embedder) -> None:
    """The keyword side alone (LangChain's sparse retrieval mode) finds merged memories."""
    library = LangChain(tmp_path / "qdrant", embedder)
    scenario = demo_scenario()
    library.write(scenario.memories)
    with Reverie.open(settings_for(library.path), embedder) as rv:
        merged = {m["merge_id"] for m in rv.consolidate(full=True).merges}
        assert all("langchain-sparse" in r.others for r in rv.store.retrieve(rv.collection, list(merged)))
    search, close = library.reader(mode="SPARSE")
    found = views(search, scenario)
    close()
    assert unanswered(found) == [] and wrong_group(found, scenario) == []
    assert sum(hits[0].id in merged for hits in found.values()) >= 0.75 * len(found)


def test_mem0_bookkeeping_on_merged_memories(tmp_path: Path, embedder: Embedder) -> None:
    """mem0's own fields on a merged memory: the hash of its text, the earliest creation."""
    library = Mem0(tmp_path / "qdrant", embedder)
    library.write(demo_scenario().memories)
    with Reverie.open(settings_for(library.path), embedder) as rv:
        rv.consolidate(full=True)
        merged = [r for r in rv.live_records() if r.payload["_reverie"]["kind"] == "merged"]
        assert merged
        for record in merged:
            payload = record.payload
            assert payload["hash"] == hashlib.md5(payload["data"].encode()).hexdigest()
            members = rv.store.retrieve(rv.archive, payload["_reverie"]["merged_from"])
            assert payload["created_at"] == min(m.payload["created_at"] for m in members)
            assert payload["updated_at"] > payload["created_at"] and payload["user_id"] in ("u1", "u2")
        run_id, rewritten = rv.run_log.runs(limit=1)[0].run_id, merged[0].id
    # mem0 updates a merged memory with its own update(): undo then refuses to delete that update
    memory = library._memory()
    memory.update(str(rewritten), "The user now prefers coffee.")
    memory.vector_store.client.close()
    with Reverie.open(settings_for(library.path), embedder) as rv:
        with pytest.raises(
            InvalidInputError, match=f"merged memory {rewritten} was rewritten since the merge"
        ):
            rv.undo(run_id)
        assert (
            rv.store.retrieve(rv.collection, [rewritten])[0].payload["data"] == "The user now prefers coffee."
        )


UNREADABLE = {
    "langchain": ({"page_content": {"not": "text"}, "metadata": {}}, "page_content holds a dict, not text"),
    "llamaindex": ({"_node_content": "{oops", "_node_type": "TextNode"}, "_node_content is not a node JSON"),
}


@pytest.mark.parametrize("layout", sorted(UNREADABLE))
def test_unreadable_payloads_are_quarantined_with_the_reason(
    tmp_path: Path, embedder: Embedder, layout: str
) -> None:
    """A text path holding no string, a `_node_content` that is no JSON: kept, never merged;
    the readable near-duplicates beside them still merge."""
    from reverie.storage.layouts import LAYOUTS

    broken, reason = UNREADABLE[layout]
    client = QdrantClient(path=str(tmp_path / "qdrant"))
    client.create_collection(
        COLLECTION, vectors_config=models.VectorParams(size=384, distance=models.Distance.COSINE)
    )
    vector = embedder.encode(["The user prefers tea."])[0].tolist()
    readable = LAYOUTS[layout].new_payload("The user prefers tea.", {}, {})
    points = [models.PointStruct(id=i, vector=vector, payload=readable) for i in (1, 2)]
    client.upsert(COLLECTION, [*points, models.PointStruct(id=9, vector=vector, payload=broken)])
    client.close()
    settings = settings_for(tmp_path / "qdrant")
    # no memory names a tenant: refused until told
    with Reverie.open(settings, embedder) as rv, pytest.raises(ConfigError, match="carries a partition key"):
        rv.consolidate(full=True)
    settings.consolidation.single_tenant = True
    with Reverie.open(settings, embedder) as rv:
        report = rv.consolidate(full=True)
        assert report.layout["layout"] == layout and report.quarantined == 1 and len(report.merges) == 1
        assert report.merges[0]["size"] == 2
        stamp = rv.store.retrieve(rv.collection, [9])[0].payload["_reverie"]
        assert stamp["state"] == "quarantined" and reason in stamp["reason"]
        assert rv.store.count(rv.collection) == 2, "the quarantined point stays"
