"""`reverie mcp`: reverie's memory as a Model Context Protocol server (the official `mcp` SDK),
over stdio or streamable HTTP.

Two sets of tools. reverie's own, in the names agents already use for memory servers
(`add_memory`, `search_memories`, `get_memory`, `delete_memory`, `consolidate`, `undo`,
`stats`); and mcp-server-qdrant's `qdrant-store` / `qdrant-find` with its arguments and
its answer format, so an agent configured for that server works unchanged.

The tools work on whatever holds the storage: the storage itself, or a running `reverie
serve` through its API (the CLI's rule). Over HTTP off loopback, every request needs the
daemon's API key, as the HTTP API does.
"""

from __future__ import annotations

import functools
import json
import logging
from collections.abc import Callable
from typing import TYPE_CHECKING, Annotated, Any

import anyio
import structlog
from mcp.server.fastmcp import FastMCP
from pydantic import Field

from reverie.config import Settings
from reverie.daemon.guards import BearerKey, HostCheck
from reverie.display import memory_json, score_json
from reverie.errors import ConfigError, InvalidInputError
from reverie.inversion.lazy import cached_text

if TYPE_CHECKING:
    from reverie.daemon.client import DaemonClient
    from reverie.memory import Reverie

log = structlog.get_logger("reverie.mcp")

INSTRUCTIONS = (
    "Long-term memory that consolidates itself: near-duplicate memories are merged into one "
    "(reversibly: `undo`), so a search returns one memory per idea. Store facts with add_memory, "
    "find them with search_memories, read one with its lineage with get_memory."
)
MAX_MERGES_SHOWN = 50

Text = Annotated[str, Field(description="The memory's text")]
Tenant = Annotated[str | None, Field(description="Whose memory it is (a partition: never merged across)")]
Extra = Annotated[dict[str, Any] | None, Field(description="Other partition keys and values")]


def create_server(memory: Reverie | DaemonClient, settings: Settings) -> FastMCP:
    """The MCP server over `memory` (a Reverie, or a client of the running daemon)."""
    d = settings.daemon
    server = FastMCP("reverie", instructions=INSTRUCTIONS, host=d.host, port=d.mcp_port, log_level="WARNING")
    collection = settings.storage.collection
    tool = _on_threads(server)

    def shown(found: dict[str, Any]) -> dict[str, Any]:
        """A memory as a tool returns it, its text cut at daemon.max_text_chars: what an
        agent's own client stored unchecked must not flood the asking agent's context."""
        text = found.get("text")
        if isinstance(text, str) and len(text) > d.max_text_chars:
            found["text"] = text[: d.max_text_chars] + " [cut at daemon.max_text_chars]"
        return found

    def partition(user_id: str | None, agent_id: str | None, extra: dict[str, Any] | None) -> dict:
        given = {"user_id": user_id, "agent_id": agent_id, **(extra or {})}
        return {k: v for k, v in given.items() if v is not None}

    @tool(description="Store a memory (text, with optional metadata and its owner).")
    def add_memory(
        text: Text,
        user_id: Tenant = None,
        agent_id: Tenant = None,
        metadata: Annotated[dict[str, Any] | None, Field(description="Anything else to keep")] = None,
        partition_keys: Extra = None,
    ) -> dict[str, Any]:
        ids = memory.remember([text], partition(user_id, agent_id, partition_keys), payload=metadata)
        return {"id": ids[0], "stored": text}

    @tool(description="Find memories by meaning; each result says where its text came from.")
    def search_memories(
        query: Annotated[str, Field(description="What to look for")],
        limit: Annotated[int, Field(ge=1, le=100, description="How many results")] = 5,
        user_id: Tenant = None,
        agent_id: Tenant = None,
        partition_keys: Extra = None,
    ) -> dict[str, Any]:
        hits = memory.recall(query, k=limit, partition=partition(user_id, agent_id, partition_keys))
        layout = memory.layout
        return {"results": [shown(memory_json(h, cached_text(h, layout)) | score_json(h)) for h in hits]}

    @tool(description="One memory by id: its text, where the text came from, fidelity, lineage.")
    def get_memory(memory_id: Annotated[str, Field(description="The memory's id")]) -> dict[str, Any]:
        record, archived = memory.get(memory_id)
        return shown(memory_json(record, memory.text(record))) | {
            "archived": archived,
            "lineage": memory.lineage(record),
        }

    @tool(description="Delete a memory for good (a merged one takes its originals with it).")
    def delete_memory(memory_id: Annotated[str, Field(description="The memory's id")]) -> dict[str, Any]:
        released = memory.forget([memory_id])
        return {"deleted": released.ids, "undone_merges": released.undone, "run_id": released.run_id}

    @tool(description="Merge near-duplicate memories. A dry run (the default) only shows the plan.")
    def consolidate(
        dry_run: Annotated[bool, Field(description="Only show what would merge")] = True,
        full: Annotated[bool, Field(description="Every memory, not only new ones")] = False,
    ) -> dict[str, Any]:
        report = memory.consolidate(dry_run=dry_run, full=full)
        return report.summary() | {"merge_details": report.merges[:MAX_MERGES_SHOWN]}

    @tool(description="Undo a consolidation run (its run id) or one merge (the merged memory's id).")
    def undo(target: Annotated[str, Field(description="A run id (r-...) or a merged memory's id")]) -> dict:
        report = memory.undo(target)
        return {"run_id": report.run_id, "target": report.target, "undone": report.undone}

    @tool(
        description="Blend concepts: the weighted mean of memories or texts, read back as text, with its "
        "fidelity and each parent's cosine to it. save=true keeps it as a memory (undo removes it)."
    )
    def blend_concepts(
        parents: Annotated[list[str], Field(description="Memory ids or texts, two or more")],
        weights: Annotated[list[float] | None, Field(description="One per parent (default equal)")] = None,
        save: Annotated[bool, Field(description="Keep the blend as a memory")] = False,
    ) -> dict[str, Any]:
        return memory.blend(parents, weights, save).as_json()

    @tool(description="Counts: live, merged, archived memories, texts pending, the last run.")
    def stats() -> dict[str, Any]:
        return memory.stats()

    def only_ours(collection_name: str | None) -> None:
        if collection_name not in (None, "", collection):
            raise InvalidInputError(f"this server keeps collection {collection!r}, not {collection_name!r}")

    @tool(
        name="qdrant-store",
        description="Keep the memory for later use, when you are asked to remember something.",
    )
    def qdrant_store(
        information: Annotated[str, Field(description="Text to store")],
        metadata: Annotated[
            dict[str, Any] | None,
            Field(
                description="Extra metadata stored along with memorised information. Any json is accepted."
            ),
        ] = None,
        collection_name: Annotated[str | None, Field(description="The collection to store it in")] = None,
    ) -> str:
        only_ours(collection_name)
        memory.remember([information], {}, payload=metadata)
        return f"Remembered: {information}"

    @tool(
        name="qdrant-find",
        description="Look up memories in Qdrant. Use this tool when you need to find memories by their "
        "content.",
    )
    def qdrant_find(
        query: Annotated[str, Field(description="What to search for")],
        collection_name: Annotated[str | None, Field(description="The collection to search in")] = None,
    ) -> list[str] | None:
        only_ours(collection_name)
        hits = memory.recall(query, k=d.mcp_find_limit)
        if not hits:
            return None
        layout = memory.layout
        entries = [f"Results for the query '{query}'"]
        for hit in hits:
            text = shown({"text": cached_text(hit, layout).text or ""})["text"]
            meta = layout.metadata_of(hit.payload)
            metadata = json.dumps(meta) if meta else ""
            entries.append(f"<entry><content>{text}</content><metadata>{metadata}</metadata></entry>")
        return entries

    return server


class _Disconnects(logging.Filter):
    """A client that goes away mid-stream is ordinary, but the SDK logs it as an error with
    a traceback: one line at info level instead."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.exc_info and isinstance(record.exc_info[1], anyio.ClosedResourceError):
            log.info("mcp.client_disconnected", where=record.getMessage())
            return False
        return True


def _on_threads(server: FastMCP) -> Callable[..., Callable[[Callable[..., Any]], Any]]:
    """`server.tool`, each tool run on a worker thread: a slow call (the first read of a
    merged memory inverts it; a blend) leaves the event loop free to answer the others."""

    def register(**options: Any) -> Callable[[Callable[..., Any]], Any]:
        def decorate(fn: Callable[..., Any]) -> Any:
            @functools.wraps(fn)  # the tool's schema is read off fn's signature
            async def on_a_thread(*args: Any, **kwargs: Any) -> Any:
                return await anyio.to_thread.run_sync(functools.partial(fn, *args, **kwargs))

            return server.tool(**options)(on_a_thread)

        return decorate

    return register


def run(server: FastMCP, settings: Settings, transport: str) -> None:
    """Serve until stopped: stdio for a client that starts this process, HTTP otherwise."""
    if transport == "stdio":
        server.run("stdio")
        return
    import uvicorn

    from reverie.daemon.serve import StoppableServer, is_loopback

    d = settings.daemon
    if not is_loopback(d.host) and not d.api_key:
        raise ConfigError(f"daemon.host {d.host!r} is off loopback: set daemon.api_key to serve MCP there")
    logging.getLogger("mcp.server.streamable_http").addFilter(_Disconnects())
    app = server.streamable_http_app()
    guarded = HostCheck(BearerKey(app, d.api_key) if d.api_key else app, d.allowed_hosts)
    StoppableServer(uvicorn.Config(guarded, host=d.host, port=d.mcp_port, log_level="warning")).run()
