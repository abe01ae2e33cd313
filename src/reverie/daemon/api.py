"""The HTTP API (FastAPI): write and search memories, review and undo runs, run jobs.

Errors are JSON `{"error": message}` with a 4xx status that says whose problem it is;
nothing a client sends may produce a 500 or a stack trace.
"""

from __future__ import annotations

import hmac
import time
from collections.abc import Sequence
from contextlib import nullcontext
from datetime import UTC, datetime
from typing import Annotated, Any, Literal

import numpy as np
import structlog
from apscheduler.schedulers.base import BaseScheduler
from fastapi import APIRouter, Depends, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.openapi.docs import get_redoc_html, get_swagger_ui_html
from fastapi.responses import HTMLResponse, JSONResponse, Response
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from prometheus_client import CONTENT_TYPE_LATEST, Histogram
from pydantic import BaseModel, ConfigDict, Field, StrictInt, StrictStr, ValidationError
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException as StarletteHTTPException

from reverie import __version__
from reverie.config.settings import Ranking
from reverie.daemon import packed
from reverie.daemon.fastjson import FastJSONRoute
from reverie.daemon.guards import HostCheck
from reverie.daemon.service import Service
from reverie.daemon.turns import TurnLock
from reverie.display import forget_json, memory_json, score_json
from reverie.errors import (
    ConflictError,
    InvalidInputError,
    InvalidPayloadError,
    ModelError,
    NotFoundError,
    ReverieError,
    StorageError,
    StorageFullError,
    StorageUnreachableError,
    TooLargeError,
    UnauthorizedError,
)
from reverie.inversion.embedders import embedder_id
from reverie.inversion.lazy import cached_text
from reverie.memory import Reverie
from reverie.storage.base import as_vector
from reverie.storage.intake import NewMemory, parse_sparse, with_tenant

log = structlog.get_logger("reverie.api")

PartitionValue = str | int
# A write of new memories whose vectors take up to this many bytes may run on the event loop
# (write_in_turn): 1,365 memories of 384 dimensions, about 0.1 s of work on this project's
# build machine, so other requests wait no longer than that.
LOOP_WRITE_BYTES = 2 * 1024 * 1024


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid")


class SparseIn(_Body):
    indices: list[int]
    values: list[float]


class MemoryFields(_Body):
    """A memory as written, but its vector."""

    text: str | None = None
    payload: dict[str, Any] = Field(default_factory=dict)
    id: StrictInt | StrictStr | None = None  # `true` is no id 1
    sparse: dict[str, SparseIn] | None = None  # by name, for a collection searched hybrid


class MemoryIn(MemoryFields):
    vector: list[float] | None = None


class PackedHeader(_Body):
    """The JSON header of a packed write (daemon/packed.py): its vectors follow it."""

    dimension: int = Field(ge=1)
    memories: list[MemoryFields] = Field(min_length=1)
    partition: dict[str, PartitionValue] = Field(default_factory=dict)
    raw_payload: bool = Field(
        default=False,
        description="Each payload is the whole point payload, written as given (`reverie import`), "
        "not metadata put in the collection's layout; a memory then carries no separate text.",
    )


class WriteRequest(_Body):
    memories: list[MemoryIn] = Field(min_length=1)
    partition: dict[str, PartitionValue] = Field(default_factory=dict)


class SearchRequest(_Body):
    text: str | None = None
    vector: list[float] | None = None
    k: int = Field(default=5, ge=1, le=1000)
    partition: dict[str, PartitionValue] = Field(default_factory=dict)
    rank: Ranking | None = Field(default=None, description="similarity or memory (default: recall.rank)")


class FadeRequest(_Body):
    dry_run: bool = False


class BlendRequest(_Body):
    parents: list[str] = Field(min_length=1, description="memory ids or texts")
    weights: list[float] | None = None
    save: bool = False
    partition: dict[str, PartitionValue] = Field(default_factory=dict)


class RunRequest(_Body):
    full: bool = False
    dry_run: bool = False
    algorithm: Literal["agglomerative", "dbscan"] | None = None
    linkage: Literal["complete", "average"] | None = None
    threshold: float | None = None


class BodyLimit:
    """Refuse request bodies over `limit` bytes, by Content-Length when declared and by
    counting while reading otherwise (a chunked upload never sits in memory whole)."""

    def __init__(self, app: Any, limit: int) -> None:
        self.app, self.limit = app, limit

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        declared = dict(scope["headers"]).get(b"content-length", b"0")
        if declared.isascii() and declared.isdigit() and int(declared) > self.limit:
            response = JSONResponse({"error": self._message(int(declared))}, status_code=413)
            return await response(scope, receive, send)
        received, refused = 0, False

        async def counted() -> dict[str, Any]:
            nonlocal received, refused
            message = await receive()
            received += len(message.get("body", b""))
            if received > self.limit and not refused:
                refused = True
                response = JSONResponse({"error": self._message(received)}, status_code=413)
                await response(scope, receive, send)
                return {"type": "http.disconnect"}  # the app stops reading; what it answers is dropped
            return message

        async def unless_refused(message: dict[str, Any]) -> None:
            if not refused:
                await send(message)

        await self.app(scope, counted, unless_refused)

    def _message(self, size: int) -> str:
        return f"request body of {size} bytes is over the limit of {self.limit} (daemon.max_body_bytes)"


STATUS = {  # most specific first
    TooLargeError: 413,
    InvalidPayloadError: 422,
    InvalidInputError: 400,
    UnauthorizedError: 401,
    NotFoundError: 404,
    ConflictError: 409,
    StorageFullError: 507,
    StorageError: 503,
    ModelError: 503,
}


class RequestTimer:
    """Each request's seconds into the API's histogram, by method, route and status. Plain
    ASGI: starlette's `@app.middleware("http")` runs every request in a task of its own and
    streams its answer through a queue, a fixed cost a small batch of writes felt."""

    def __init__(self, app: Any, histogram: Histogram) -> None:
        self.app, self.histogram = app, histogram

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        started, status = time.perf_counter(), 500  # an error no handler answered

        async def noting_status(message: dict[str, Any]) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, noting_status)
        finally:
            path = getattr(scope.get("route"), "path", "unmatched")
            self.histogram.labels(scope["method"], path, status).observe(time.perf_counter() - started)


def create_app(service: Service, scheduler: BaseScheduler | None = None) -> FastAPI:
    rv = service.rv
    settings = rv.settings
    # the API's description is served behind the key like every route but health
    app = FastAPI(title="reverie", version=__version__, openapi_url=None, docs_url=None, redoc_url=None)
    app.add_middleware(BodyLimit, limit=settings.daemon.max_body_bytes)
    app.add_middleware(HostCheck, allowed=settings.daemon.allowed_hosts)
    app.add_middleware(RequestTimer, histogram=service.metrics.api_seconds)  # outermost: times refusals too
    # every route but health needs the API key (when one is configured)
    protected = APIRouter(
        dependencies=[Depends(_authorizer(settings.daemon.api_key))], route_class=FastJSONRoute
    )
    # One write at a time: a write is Python work that holds the GIL, so writes side by side
    # only hand it back and forth (and starve the event loop). 8 clients wrote 15-20% more
    # a second through the packed route once they queued here, in turn (daemon/turns.py),
    # and more again once small writes ran on the event loop itself (write_in_turn).
    writing = TurnLock()
    app.state.writing = writing  # the turn, for what must take it beside the routes (tests)

    @app.exception_handler(ReverieError)
    async def reverie_error(request: Request, exc: ReverieError) -> JSONResponse:
        status = next((code for kind, code in STATUS.items() if isinstance(exc, kind)), 400)
        return JSONResponse({"error": str(exc)}, status_code=status)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        """The framework's own answers (no such route, method not allowed) in the same shape."""
        return JSONResponse({"error": str(exc.detail)}, status_code=exc.status_code, headers=exc.headers)

    @app.exception_handler(RequestValidationError)
    async def invalid_body(request: Request, exc: RequestValidationError) -> JSONResponse:
        problems = [
            f"{'.'.join(str(part) for part in e['loc'] if part != 'body') or 'body'}: {e['msg']}"
            for e in exc.errors()
        ]
        return JSONResponse({"error": "; ".join(problems)}, status_code=422)

    @app.exception_handler(Exception)
    async def unexpected(request: Request, exc: Exception) -> JSONResponse:
        log.error("api.unexpected_error", path=request.url.path, error=repr(exc))
        return JSONResponse({"error": "internal error (logged)"}, status_code=500)

    @protected.get("/metrics")
    def metrics() -> Response:
        return Response(service.metrics.render(rv.stats()), media_type=CONTENT_TYPE_LATEST)

    @app.get("/healthz")
    def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/readyz")
    def readyz() -> JSONResponse:
        """Ready: storage open and recovery done (serve finishes both before it listens),
        and the storage answering and keeping writes now (a Qdrant server can go away, an
        embedded store's directory can be removed or turn read-only). Models load in the
        background; `models` says when each is loaded."""
        body: dict[str, Any] = {"ready": True, "collection": rv.collection, "models": dict(service.models)}
        try:
            rv.store.collection_exists(rv.collection)
            problem = rv.store.problem()
        except StorageUnreachableError as exc:
            problem = str(exc)
        if problem:
            body.update(ready=False, storage=problem)
        return JSONResponse(body, status_code=200 if body["ready"] else 503)

    def write_memories(
        items: Sequence[MemoryFields],
        partition: dict[str, Any],
        vectors: np.ndarray | None,
        raw_payload: bool = False,
        turn_taken: bool = False,
    ) -> dict[str, Any]:
        """`turn_taken`: the caller holds `writing` already."""
        if len(items) > settings.daemon.max_batch:
            raise TooLargeError(
                f"batch of {len(items)} memories is over the limit of {settings.daemon.max_batch} "
                "(daemon.max_batch)"
            )
        tenant = rv.partition_payload(partition)
        for index, memory in enumerate(items):
            rv.check_text(memory.text, f"memory {index}")  # before the batch is embedded
        with nullcontext() if turn_taken else writing:
            return {"ids": rv.write(_memories(items, tenant, rv, vectors, raw_payload))}

    async def write_in_turn(
        items: Sequence[MemoryFields],
        partition: dict[str, Any],
        vectors: np.ndarray | None,
        raw_payload: bool,
        vector_bytes: int | None,
    ) -> dict[str, Any]:
        """`vector_bytes`: what the vectors take as float32, None when some are to be
        embedded. A write of new memories whose vectors are all given and take at most
        LOOP_WRITE_BYTES runs right here on the event loop, when no other write is running
        or waiting: handed to a worker thread, the loop and the worker traded the GIL for
        the whole write, and 8 clients at batches of 100 wrote 10-37% more a second once it
        ran here (paired runs of bench/write_speed.py, docs/design-notes.md). The loop waits
        for nothing then: not its turn (it is free), not a merge (new ids cannot be members
        of one), not the embedder. Any other write takes its turn in a worker thread."""
        write = (items, partition, vectors, raw_payload)
        small = vector_bytes is not None and vector_bytes <= LOOP_WRITE_BYTES
        on_loop = small and all(m.id is None for m in items)
        if on_loop and writing.take_if_free():
            try:
                return write_memories(*write, turn_taken=True)
            finally:
                writing.release()
        return await run_in_threadpool(write_memories, *write)

    @protected.post("/memories")
    async def write(body: WriteRequest) -> dict[str, Any]:
        given = [m.vector for m in body.memories if m.vector is not None]
        vector_bytes = 4 * sum(map(len, given)) if len(given) == len(body.memories) else None
        return await write_in_turn(body.memories, dict(body.partition), None, False, vector_bytes)

    @protected.post(
        "/memories/packed",
        openapi_extra={
            "requestBody": {
                "required": True,
                "description": "RVP1, header length, JSON header, float32 vectors (daemon/packed.py)",
                "content": {packed.MEDIA_TYPE: {"schema": {"type": "string", "format": "binary"}}},
            }
        },
    )
    async def write_packed(request: Request) -> dict[str, Any]:
        """The write with vectors packed as float32 (daemon/packed.py): no float parsing."""
        if request.headers.get("content-type", "").split(";")[0].strip() != packed.MEDIA_TYPE:
            raise StarletteHTTPException(415, f"send the packed body as {packed.MEDIA_TYPE}")
        header, vectors = _unpacked(await request.body())  # parsed here, as the JSON write's body
        return await write_in_turn(
            header.memories, dict(header.partition), vectors, header.raw_payload, vectors.nbytes
        )

    @protected.post("/search")
    def search(body: SearchRequest) -> dict[str, Any]:
        if (body.text is None) == (body.vector is None):
            raise InvalidInputError("give exactly one of text or vector")
        query = body.text if body.text is not None else as_vector(body.vector)
        hits = rv.recall(query, k=body.k, partition=dict(body.partition), rank=body.rank)
        layout = rv.layout
        return {"hits": [memory_json(h, cached_text(h, layout)) | score_json(h) for h in hits]}

    @protected.get("/memories/{point_id}")
    def get(point_id: str) -> dict[str, Any]:
        record, archived = rv.get(point_id)
        text = cached_text(record, rv.layout) if archived else rv.text(record)
        return memory_json(record, text) | {"archived": archived, "lineage": rv.lineage(record)}

    @protected.delete("/memories/{point_id}")
    def forget(point_id: str) -> dict[str, Any]:
        """Delete a memory wherever it is: merged away, the merges above it are undone
        first (a `release` run); a merged point goes with all its originals."""
        released = rv.forget([point_id])
        return {"deleted": released.ids, "run_id": released.run_id, "undone": released.undone}

    @protected.post("/blend")
    def blend(body: BlendRequest) -> dict[str, Any]:
        """The weighted mean of memories or texts, read back as text; `save` keeps it."""
        result = rv.blend(body.parents, body.weights, body.save, dict(body.partition))
        return result.as_json()

    @protected.get("/runs")
    def runs(limit: int = 20) -> dict[str, Any]:
        return {"runs": [vars(r) for r in rv.run_log.runs(limit=max(1, min(limit, 1000)))]}

    @protected.get("/runs/{run_id}")
    def run_detail(run_id: str) -> dict[str, Any]:
        run = rv.run_log.get_run(run_id)
        return vars(run) | {"merges": [vars(m) for m in rv.run_log.merges(run_id)]}

    @protected.post("/runs")
    def trigger(body: RunRequest) -> dict[str, Any]:
        report = service.consolidate(**body.model_dump())
        return report.summary() | {"merges": report.merges, "skipped": report.skipped}

    @protected.post("/fade")
    def fade(body: FadeRequest) -> dict[str, Any]:
        """Memories faded long enough go dormant (a run of kind `forget`; `reverie undo RUN`)."""
        return forget_json(service.forget_faded(body.dry_run))

    @protected.post("/memories/{point_id}/revive")
    def revive(point_id: str) -> dict[str, Any]:
        """A dormant memory back into the live collection (an access)."""
        record = rv.revive(point_id)
        return memory_json(record, cached_text(record, rv.layout))

    @protected.post("/undo/{target}")
    def undo(target: str) -> dict[str, Any]:
        report = service.undo(target)
        return {"run_id": report.run_id, "target": report.target, "undone": report.undone}

    @protected.get("/jobs")
    def jobs() -> dict[str, Any]:
        listed = scheduler.get_jobs() if scheduler else []
        return {
            "jobs": [
                {"id": j.id, "next_run_time": j.next_run_time, "trigger": str(j.trigger)} for j in listed
            ]
        }

    @protected.post("/jobs/{job_id}/run", status_code=202)
    def run_job(job_id: str) -> dict[str, str]:
        job = scheduler.get_job(job_id) if scheduler else None
        if job is None:
            raise NotFoundError(f"unknown job {job_id!r} (see GET /jobs)")
        job.modify(next_run_time=datetime.now(UTC))
        return {"job": job_id, "status": "started"}

    @protected.get("/stats")
    def stats() -> dict[str, Any]:
        return rv.stats()

    @protected.get("/openapi.json", include_in_schema=False)
    def openapi() -> JSONResponse:
        return JSONResponse(app.openapi())

    @protected.get("/docs", include_in_schema=False)
    def docs() -> HTMLResponse:
        return get_swagger_ui_html(openapi_url="/openapi.json", title="reverie")

    @protected.get("/redoc", include_in_schema=False)
    def redoc() -> HTMLResponse:
        return get_redoc_html(openapi_url="/openapi.json", title="reverie")

    app.include_router(protected)
    return app


# module level: FastAPI resolves these (string) annotations in the module's namespace
_BEARER = HTTPBearer(auto_error=False)
Credentials = Annotated[HTTPAuthorizationCredentials | None, Depends(_BEARER)]


def _authorizer(api_key: str | None) -> Any:
    def check(credentials: Credentials) -> None:
        if api_key is None:
            return
        given = credentials.credentials if credentials else ""
        if not hmac.compare_digest(given.encode(), api_key.encode()):
            raise UnauthorizedError("missing or wrong API key (send Authorization: Bearer <key>)")

    return check


def _unpacked(body: bytes) -> tuple[PackedHeader, np.ndarray]:
    """A packed body's header, validated, and its vectors (daemon/packed.py)."""
    header_bytes, raw = packed.split(body)
    try:
        header = PackedHeader.model_validate_json(header_bytes)
    except ValidationError as exc:
        raise RequestValidationError(exc.errors()) from None
    return header, packed.rows(raw, len(header.memories), header.dimension)


def _memories(
    items: Sequence[MemoryFields],
    partition: dict[str, Any],
    rv: Reverie,
    rows: np.ndarray | None,
    raw_payload: bool = False,
) -> list[NewMemory]:
    """Memories to write, their vectors given (in each item, or packed `rows`); texts
    without a vector are embedded in one batch. A raw payload is written as given, with
    the partition set at its paths."""
    given = list(rows) if rows is not None else [getattr(m, "vector", None) for m in items]
    for index, (m, vector) in enumerate(zip(items, given, strict=True)):
        if vector is None and m.text is None:
            raise InvalidInputError(f"memory {index}: give text, a vector, or both")
        if raw_payload and m.text is not None:
            raise InvalidInputError(f"memory {index}: a raw payload carries its own text; drop `text`")
    to_embed = [m.text for m, vector in zip(items, given, strict=True) if vector is None]
    embedded = iter(rv.embedder.encode(to_embed) if to_embed else [])  # type: ignore[arg-type]
    memories = []
    for index, (m, vector) in enumerate(zip(items, given, strict=True)):
        if raw_payload:
            payload = with_tenant(m.payload, partition)
        else:
            payload = rv.new_payload(m.text, m.payload, partition)
        sparse = parse_sparse(m.model_dump()["sparse"], f"memory {index}")
        if vector is None:
            model = embedder_id(rv.embedder.model_name)
            memories.append(NewMemory(next(embedded), payload, m.id, model, sparse))
        else:
            memories.append(NewMemory(as_vector(vector), payload, m.id, sparse=sparse))
    return memories
