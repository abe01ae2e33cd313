"""Tenants never mix and every distance is honoured, measured through Qdrant's own search.

    .venv/bin/python bench/tenants_geometry.py [--groups 60] [--data PARAPHRASES.jsonl.gz]

Each case is a collection an agent's own client wrote (qdrant-client, local mode on disk;
in the LangChain cases, LangChain's QdrantVectorStore wrote it and searches it):
verse groups from the paraphrase file, three wordings each (web, kjv, asv), every group
owned by one tenant, and the first wording of a tenth of the groups written for the next
tenant too (identical texts of two tenants: they must never merge). The fourth wording
(ylt, never written) asks, with the asker's tenant filter, through the client's own query:
hit@1 is the top hit being of the asked group. Measured before consolidation, after it and
after undoing it: points, merges, cross-tenant merges (counted from the run's members),
hit@1, or the refusal a case must get. Writes bench/results/tenants-geometry.json and its
table into docs/integrations.md.
"""

from __future__ import annotations

import argparse
import gzip
import json
import sys
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
from qdrant_client import QdrantClient, models

sys.path.insert(0, str(Path(__file__).parent))
from report import write_section  # noqa: E402

from reverie.config import load_settings  # noqa: E402
from reverie.errors import ConfigError  # noqa: E402
from reverie.inversion.embedders import Embedder  # noqa: E402
from reverie.memory import Reverie  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
WORDINGS, ASKED = ("web", "kjv", "asv"), "ylt"
DIMENSION = 384  # all-MiniLM-L6-v2's
SHARED_EVERY = 10  # one group in ten: its first wording written for the next tenant too


@dataclass
class Case:
    name: str
    distance: models.Distance
    tenants: list[Any]
    langchain: bool = False  # metadata.user_id and page_content, two dense vectors
    library: bool = False  # written and searched through LangChain's QdrantVectorStore itself
    unit: bool = True
    tenant_key: bool = True
    env: dict[str, str] | None = None
    refused: str | None = None  # the error the run must give instead of merging


USERS = ["u1", "u2", "u3"]
NAMED_VECTOR = {"REVERIE_STORAGE__LAYOUT": '{vector = "dense"}'}  # the docs' recipe, alone


def through_langchain(name: str, distance: models.Distance, tenants: list[Any], **options: Any) -> Case:
    """A case LangChain's QdrantVectorStore writes and searches (two dense vectors: the
    layout names the one to merge)."""
    return Case(f"LangChain: {name}", distance, tenants, True, library=True, env=NAMED_VECTOR, **options)


CASES = [
    Case("explicit layout: `vector = NAME` alone", models.Distance.COSINE, USERS, True, env=NAMED_VECTOR),
    Case(
        "explicit layout: text, metadata, vector",
        models.Distance.COSINE,
        USERS,
        True,
        env={"REVERIE_STORAGE__LAYOUT": '{text = "page_content", metadata = "metadata", vector = "dense"}'},
    ),
    Case('typed tenant values 1, "1", true', models.Distance.COSINE, [1, "1", True]),
    Case("Cosine, unnormalised vectors", models.Distance.COSINE, USERS, unit=False),
    Case("Dot, unnormalised vectors", models.Distance.DOT, USERS, unit=False),
    Case("Euclid, unit vectors", models.Distance.EUCLID, USERS),
    Case(
        "Euclid, unnormalised vectors", models.Distance.EUCLID, USERS, unit=False, refused="not unit length"
    ),
    Case(
        "no tenant key in the points",
        models.Distance.COSINE,
        ["u1"],
        tenant_key=False,
        refused="carries a partition key",
    ),
    through_langchain("Dot, unnormalised vectors, `vector = NAME`", models.Distance.DOT, USERS, unit=False),
    through_langchain("Euclid, unit vectors", models.Distance.EUCLID, USERS),
    through_langchain('typed tenant values 1, "1", true', models.Distance.COSINE, [1, "1", True]),
    through_langchain(
        "no tenant key in the metadata",
        models.Distance.COSINE,
        ["u1"],
        tenant_key=False,
        refused="carries a partition key",
    ),
    Case(
        "no tenant key, single_tenant = true",
        models.Distance.COSINE,
        ["u1"],
        tenant_key=False,
        env={"REVERIE_CONSOLIDATION__SINGLE_TENANT": "true"},
    ),
]


@dataclass
class Row:
    case: str
    points_before: int
    points_after: int | None
    merges: int | None
    cross_tenant_merges: int | None
    hit1_before: int
    hit1_after: int | None
    hit1_after_undo: int | None
    questions: int
    refused: str | None


def run_case(case: Case, groups: list[dict], vectors: dict[str, np.ndarray], work: Path) -> Row:
    rng = np.random.default_rng(0)
    path = work / case.name.replace(" ", "_").replace("`", "").replace('"', "")[:40]
    client = QdrantClient(path=str(path))
    params = models.VectorParams(size=DIMENSION, distance=case.distance)
    config = {"dense": params, "other": params} if case.langchain else params
    client.create_collection("memories", vectors_config=config)
    points, owner, asked = [], {}, []
    for g, group in enumerate(groups):
        tenant = case.tenants[g % len(case.tenants)]
        writers = [(w, tenant) for w in WORDINGS]
        if g % SHARED_EVERY == 0 and len(case.tenants) > 1:
            writers.append((WORDINGS[0], case.tenants[(g + 1) % len(case.tenants)]))
        for wording, who in writers:
            vector = vectors[group["texts"][wording]] * (1.0 if case.unit else rng.uniform(0.5, 2.0))
            point_id = len(points) + 1
            owner[point_id] = who
            points.append(_point(case, point_id, group["texts"][wording], group["group"], who, vector))
        asked.append((group["group"], tenant, vectors[group["texts"][ASKED]]))
    if case.library:
        _langchain_write(client, case, points)
    else:
        client.upsert("memories", points)
    before = _hits(client, case, asked)
    client.close()
    env = {"REVERIE_STORAGE__URL": f"file:{path}", "REVERIE_INVERSION__MODEL": "none", **(case.env or {})}
    settings = load_settings(environ=env)
    settings.storage.data_dir = path.parent / f"{path.name}-data"
    row = Row(case.name, len(points), None, None, None, before, None, None, len(asked), None)
    with Reverie.open(settings) as rv:
        try:
            report = rv.consolidate(full=True)
        except ConfigError as exc:
            row.refused = str(exc)
            assert case.refused and case.refused in str(exc), (case.name, str(exc))
            return row
        assert not case.refused, f"{case.name}: merged where it must refuse"
        row.points_after, row.merges = report.points_after, report.merge_count
        row.cross_tenant_merges = sum(
            len({json.dumps(owner[int(m["id"])]) for m in merge["members"]}) > 1 for merge in report.merges
        )
        run_id = report.run_id
    row.hit1_after = _hits_at(path, case, asked)
    with Reverie.open(settings) as rv:
        rv.undo(run_id)
    row.hit1_after_undo = _hits_at(path, case, asked)
    return row


def _point(
    case: Case, point_id: int, text: str, group: str, tenant: Any, vector: np.ndarray
) -> models.PointStruct:
    who = {"user_id": tenant} if case.tenant_key else {}
    if case.langchain:
        payload = {"page_content": text, "metadata": {"group": group, **who}}
        other = vector[::-1].copy()  # a second dense vector, as a multi-vector writer keeps
        return models.PointStruct(
            id=point_id, vector={"dense": vector.tolist(), "other": other.tolist()}, payload=payload
        )
    return models.PointStruct(
        id=point_id, vector=vector.tolist(), payload={"text": text, "group": group, **who}
    )


def _langchain(client: QdrantClient, case: Case) -> Any:
    """LangChain's QdrantVectorStore over the case's collection (it checks the collection's
    vector name, size and distance); its embedding hands out the case's own vectors
    (unnormalised where the case is), queued in the order the texts are written."""
    from langchain_core.embeddings import Embeddings
    from langchain_qdrant import QdrantVectorStore, RetrievalMode

    class Given(Embeddings):
        queue: list[list[float]] = []

        def embed_documents(self, texts: list[str]) -> list[list[float]]:
            if len(self.queue) < len(texts):  # the store probing the size
                return [[0.0] * DIMENSION for _ in texts]
            taken = self.queue[: len(texts)]
            del self.queue[: len(texts)]
            return taken

        def embed_query(self, text: str) -> list[float]:
            raise NotImplementedError("the bench asks by vector")

    return QdrantVectorStore(
        client,
        "memories",
        embedding=Given(),
        vector_name="dense",
        distance=case.distance,
        retrieval_mode=RetrievalMode.DENSE,
    )


def _langchain_write(client: QdrantClient, case: Case, points: list[models.PointStruct]) -> None:
    """The points written by LangChain's own add_texts (its payload: page_content, metadata)."""
    store = _langchain(client, case)
    store.embeddings.queue = [p.vector["dense"] for p in points]  # type: ignore[index]
    store.add_texts(
        [p.payload["page_content"] for p in points],  # type: ignore[index]
        metadatas=[p.payload["metadata"] for p in points],  # type: ignore[index]
        ids=[p.id for p in points],
    )


def _hits_at(path: Path, case: Case, asked: list) -> int:
    client = QdrantClient(path=str(path))
    try:
        return _hits(client, case, asked)
    finally:
        client.close()


def _hits(client: QdrantClient, case: Case, asked: list) -> int:
    """The library's own filtered search: the asker's tenant, the top hit's group."""
    right = 0
    prefix = "metadata." if case.langchain else ""
    library = _langchain(client, case) if case.library else None
    for group, tenant, vector in asked:
        must = (
            [models.FieldCondition(key=f"{prefix}user_id", match=models.MatchValue(value=tenant))]
            if case.tenant_key
            else []
        )
        if library is not None:
            docs = library.similarity_search_by_vector(vector.tolist(), k=1, filter=models.Filter(must=must))
            right += bool(docs) and docs[0].metadata.get("group") == group
            continue
        hits = client.query_points(
            "memories",
            query=vector.tolist(),
            using="dense" if case.langchain else None,
            query_filter=models.Filter(must=must),
            limit=1,
        ).points
        payload = hits[0].payload if hits else {}
        found = (payload.get("metadata") or {}).get("group") if case.langchain else payload.get("group")
        right += found == group
    return right


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--groups", type=int, default=60)
    parser.add_argument(
        "--data", default=str(ROOT.parent / "shared" / "data" / "bible-ot-paraphrases.jsonl.gz")
    )
    args = parser.parse_args()
    with gzip.open(args.data, "rt") as lines:
        rows = [json.loads(line) for line in lines]
    # held out from everything reverie tuned on: spread over the whole book, every 97th verse
    groups = [r for r in rows[::97] if all(r["texts"].get(w) for w in (*WORDINGS, ASKED))][: args.groups]
    texts = sorted({g["texts"][w] for g in groups for w in (*WORDINGS, ASKED)})
    embedder = Embedder("sentence-transformers/all-MiniLM-L6-v2")
    vectors = dict(zip(texts, embedder.encode(texts), strict=True))
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        for case in CASES:
            row = run_case(case, groups, vectors, Path(tmp))
            results.append(row)
            print(row)
    table = [
        f"`bench/tenants_geometry.py --groups {args.groups}`: {len(groups)} held-out verse groups "
        "(every 97th verse), three wordings written, the fourth asking through qdrant-client's own "
        "filtered query; the LangChain cases were written by LangChain's `QdrantVectorStore.add_texts` and "
        "ask through its `similarity_search_by_vector` with a `metadata.user_id` filter.",
        "",
        "| case | points before | after | merges | cross-tenant merges | hit@1 before | after | after undo |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in results:
        asked = f"{r.hit1_before}/{r.questions}"
        if r.refused:
            table.append(f"| {r.case} | {r.points_before} | refused: {r.refused[:90]}… | | | {asked} | | |")
            continue
        after, undone = f"{r.hit1_after}/{r.questions}", f"{r.hit1_after_undo}/{r.questions}"
        table.append(
            f"| {r.case} | {r.points_before} | {r.points_after} | {r.merges} | {r.cross_tenant_merges} | "
            f"{asked} | {after} | {undone} |"
        )
    print("\n".join(table))
    out = ROOT / "bench" / "results" / "tenants-geometry.json"
    out.write_text(json.dumps([asdict(r) for r in results], indent=1))
    write_section(ROOT / "docs" / "integrations.md", "tenants-geometry", table, "Integrations")


if __name__ == "__main__":
    main()
