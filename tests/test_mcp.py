"""`reverie mcp` driven by the official MCP client, over stdio and over streamable HTTP:
reverie's own memory tools, and mcp-server-qdrant's qdrant-store / qdrant-find as an
agent configured for that server calls them."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
from mcp import ClientSession, StdioServerParameters
from mcp.client.stdio import stdio_client
from mcp.client.streamable_http import streamable_http_client

from helpers import free_port

TEA = [
    "The user prefers tea over coffee.",
    "The user likes tea more than coffee.",
    "Tea, not coffee, is what the user prefers.",
]
MEETING = "The weekly meeting is on Tuesday at 10am."
TOOLS = {
    "add_memory",
    "search_memories",
    "get_memory",
    "delete_memory",
    "consolidate",
    "undo",
    "stats",
    "qdrant-store",
    "qdrant-find",
}


def result(reply: Any) -> Any:
    """A tool's answer: structured when the tool returns an object, else its text."""
    assert not reply.isError, reply.content
    if reply.structuredContent is not None:
        return reply.structuredContent.get("result", reply.structuredContent)
    return json.loads(reply.content[0].text)


def environment(data_dir: Path, **extra: str) -> dict[str, str]:
    return {**os.environ, "HF_HUB_OFFLINE": "1", "REVERIE_STORAGE__DATA_DIR": str(data_dir), **extra}


async def memory_session(session: ClientSession) -> None:
    await session.initialize()
    assert {tool.name for tool in (await session.list_tools()).tools} >= TOOLS
    for text in TEA:
        stored = result(await session.call_tool("add_memory", {"text": text, "user_id": "u1"}))
        assert stored["stored"] == text
    other = result(await session.call_tool("add_memory", {"text": TEA[0], "user_id": "u2"}))
    await session.call_tool("add_memory", {"text": MEETING, "user_id": "u1"})

    plan = result(await session.call_tool("consolidate", {}))
    assert plan["dry_run"] and plan["merges"] == 1, "a dry run unless told otherwise"
    assert result(await session.call_tool("stats", {}))["merged"] == 0
    run = result(await session.call_tool("consolidate", {"dry_run": False}))
    assert run["merges"] == 1 and run["members_merged"] == 3, "u2's identical memory stays apart"

    found = result(
        await session.call_tool("search_memories", {"query": "what does the user drink", "user_id": "u1"})
    )
    top = found["results"][0]
    assert top["kind"] == "merged" and top["text"] in TEA and top["text_source"] == "label"
    assert top["weight"] == 3 and top["fidelity"] > 0.9
    assert all(r["payload"].get("user_id") == "u1" for r in found["results"])
    shown = result(await session.call_tool("get_memory", {"memory_id": top["id"]}))
    assert shown["text"] == top["text"] and shown["text_source"] == "label"
    assert len(shown["lineage"]) == 3 and not shown["archived"]

    undone = result(await session.call_tool("undo", {"target": run["run_id"]}))
    assert len(undone["undone"]) == 1
    assert result(await session.call_tool("stats", {}))["live"] == 5
    deleted = result(await session.call_tool("delete_memory", {"memory_id": other["id"]}))
    assert deleted["deleted"] == [other["id"]]
    refused = await session.call_tool("get_memory", {"memory_id": other["id"]})
    assert refused.isError and "unknown memory id" in refused.content[0].text


def test_memory_tools_over_stdio(tmp_path: Path) -> None:
    server = StdioServerParameters(
        command=sys.executable, args=["-m", "reverie.cli", "mcp"], env=environment(tmp_path / "data")
    )

    async def scenario() -> None:
        async with stdio_client(server) as (read, write), ClientSession(read, write) as session:
            await memory_session(session)

    asyncio.run(scenario())


@contextmanager
def http_server(data_dir: Path, api_key: str, **extra: str) -> Iterator[str]:
    port = free_port()
    env = environment(data_dir, REVERIE_DAEMON__API_KEY=api_key, **extra)
    command = [sys.executable, "-m", "reverie.cli", "mcp", "--transport", "http", "--port", str(port)]
    process = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    url = f"http://127.0.0.1:{port}/mcp"
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                httpx.get(url, timeout=1)
                break
            except httpx.TransportError:
                assert process.poll() is None, process.stderr.read().decode()  # type: ignore[union-attr]
                time.sleep(0.2)
        yield url
    finally:
        process.terminate()
        assert process.wait(timeout=30) == 0, "a stop on purpose exits 0 (it once ended by SIGTERM)"
        errors = process.stderr.read().decode()  # type: ignore[union-attr]
        assert "Traceback" not in errors, errors  # a client that leaves is no error


def test_qdrant_tools_over_http_behind_the_api_key(tmp_path: Path) -> None:
    """An agent configured for mcp-server-qdrant: the same tool names, arguments and answers."""
    with http_server(tmp_path / "data", "secret") as url:
        refused = httpx.post(url, json={"jsonrpc": "2.0", "id": 1, "method": "tools/list"})
        assert refused.status_code == 401 and "API key" in refused.json()["error"]
        rebound = httpx.post(
            url, json={}, headers={"Host": "attacker.example", "Authorization": "Bearer secret"}
        )
        assert rebound.status_code == 400 and "daemon.allowed_hosts" in rebound.json()["error"]

        async def scenario() -> None:
            client = httpx.AsyncClient(headers={"Authorization": "Bearer secret"}, timeout=60)
            transport = streamable_http_client(url, http_client=client)
            async with client, transport as (read, write, _), ClientSession(read, write) as session:
                await session.initialize()
                for text in (*TEA, MEETING):
                    reply = await session.call_tool(
                        "qdrant-store", {"information": text, "metadata": {"source": "chat"}}
                    )
                    assert reply.content[0].text == f"Remembered: {text}"
                found = await session.call_tool("qdrant-find", {"query": "tea or coffee"})
                entries = [c.text for c in found.content]
                assert entries[0] == "Results for the query 'tea or coffee'"
                assert any(entries[1].startswith(f"<entry><content>{text}</content>") for text in TEA)
                assert entries[1].endswith('<metadata>{"source": "chat"}</metadata></entry>')
                wrong = await session.call_tool("qdrant-find", {"query": "tea", "collection_name": "other"})
                assert wrong.isError and "collection 'memories'" in wrong.content[0].text

        asyncio.run(scenario())


def test_other_calls_are_answered_while_a_slow_one_runs(tmp_path: Path) -> None:
    """A blend loads the inverter and searches (seconds on a CPU); a `stats` sent meanwhile
    once waited for it (85 s on a busy machine). Each tool runs on a worker thread now. And a
    memory's text has the same limit as over HTTP."""
    with http_server(tmp_path / "data", "secret") as url:

        async def scenario() -> None:
            client = httpx.AsyncClient(headers={"Authorization": "Bearer secret"}, timeout=300)
            slow_transport = streamable_http_client(url, http_client=client)
            quick_transport = streamable_http_client(url, http_client=client)
            async with (
                client,
                slow_transport as (read, write, _),
                ClientSession(read, write) as slow,
                quick_transport as (read2, write2, _),
                ClientSession(read2, write2) as quick,
            ):
                await slow.initialize()
                await quick.initialize()
                huge = await quick.call_tool("add_memory", {"text": "tea " * 5000})  # once stored and echoed
                assert (
                    huge.isError and "over the limit of 10000 (daemon.max_text_chars)" in huge.content[0].text
                )
                blend = asyncio.create_task(
                    slow.call_tool("blend_concepts", {"parents": ["green tea", "black coffee"]})
                )
                await asyncio.sleep(1.0)
                started = time.monotonic()
                counts = result(await quick.call_tool("stats", {}))
                waited = time.monotonic() - started
                assert not blend.done(), "the blend should still be running: nothing overlapped"
                assert waited < 1.0 and "live" in counts, waited
                assert result(await blend)["text"]

        asyncio.run(scenario())
