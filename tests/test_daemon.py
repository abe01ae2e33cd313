"""`reverie serve`: a real HTTP server on loopback, over the embedded store."""

from __future__ import annotations

import json
import os
import secrets
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from subprocess import Popen

import httpx
import numpy as np
import pytest

from reverie.config import Settings
from reverie.daemon import packed
from reverie.daemon.api import create_app
from reverie.daemon.client import DaemonClient
from reverie.daemon.registration import Registration
from reverie.daemon.serve import serve
from reverie.daemon.service import Service
from reverie.errors import BusyError, ConfigError
from reverie.memory import NewMemory, Reverie

from helpers import free_port, running

NEAR = [[1.0, 0.0, 0.0, 0.01], [1.0, 0.0, 0.0, 0.0], [0.0, 1.0, 0.0, 0.0]]


@pytest.fixture
def api(tmp_path: Path) -> Iterator[httpx.Client]:
    settings = Settings()
    settings.inversion.model = "none"  # inversion has its own tests (test_inversion.py)
    settings.storage.data_dir = tmp_path / "data"
    settings.daemon.max_batch = 5
    settings.daemon.max_payload_bytes = 64
    settings.daemon.max_text_chars = 50
    settings.daemon.max_body_bytes = 4096
    with Reverie.open(settings) as rv, running(create_app(Service(rv))) as client:
        yield client


def test_write_consolidate_search_review_undo(api: httpx.Client) -> None:
    ids = api.post("/memories", json={"memories": [{"vector": v} for v in NEAR]}).json()["ids"]
    assert len(ids) == 3
    run = api.post("/runs", json={}).json()
    assert run["points_before"] == 3 and run["points_after"] == 2 and len(run["merges"]) == 1
    merged_id = run["merges"][0]["merge_id"]
    hits = api.post("/search", json={"vector": NEAR[1], "k": 1}).json()["hits"]
    assert (
        hits[0]["id"] == merged_id
        and hits[0]["weight"] == 2
        and hits[0]["text"] is None
        and hits[0]["text_source"] == "pending"
    )
    assert sorted(hits[0]["meta"]["merged_from"]) == sorted(ids[:2])
    assert sorted(api.get(f"/memories/{merged_id}").json()["lineage"]) == sorted(ids[:2])
    archived = api.get(f"/memories/{ids[0]}").json()
    assert archived["archived"] is True
    assert api.get("/runs").json()["runs"][0]["run_id"] == run["run_id"]
    assert len(api.get(f"/runs/{run['run_id']}").json()["merges"]) == 1
    assert api.get("/stats").json()["merged"] == 1
    assert api.get("/nowhere").status_code == 404
    metrics = api.get("/metrics").text
    for line in (
        'reverie_api_request_duration_seconds_count{method="GET",route="unmatched",status="404"} 1.0',
        'reverie_points{kind="merged"} 1.0',
        'reverie_points{kind="archived"} 2.0',
        'reverie_runs_total{status="done"} 1.0',
        "reverie_merges_total 1.0",
        "reverie_run_duration_seconds_count 1.0",
        'reverie_api_request_duration_seconds_count{method="POST",route="/memories",status="200"} 1.0',
    ):
        assert line in metrics, line
    undone = api.post(f"/undo/{run['run_id']}").json()
    assert len(undone["undone"]) == 1
    assert api.get("/stats").json()["live"] == 3


def test_rewrite_and_delete_of_merged_memories_over_http(api: httpx.Client) -> None:
    ids = api.post("/memories", json={"memories": [{"vector": v} for v in NEAR]}).json()["ids"]
    merged_id = api.post("/runs", json={}).json()["merges"][0]["merge_id"]
    refused = api.post("/memories", json={"memories": [{"vector": NEAR[2], "id": merged_id}]})
    assert refused.status_code == 409 and "is a merged point" in refused.json()["error"]
    # rewriting a merged-away memory undoes the merge; the rewrite is the live version
    rewritten = api.post("/memories", json={"memories": [{"vector": NEAR[2], "id": ids[0]}]})
    assert rewritten.status_code == 200
    assert api.get(f"/memories/{merged_id}").status_code == 404
    assert api.get(f"/memories/{ids[0]}").json()["archived"] is False
    runs = api.get("/runs").json()["runs"]
    assert runs[0]["kind"] == "release" and runs[0]["summary"]["reason"] == "rewritten"
    deleted = api.delete(f"/memories/{ids[1]}").json()
    assert deleted == {"deleted": [ids[1]], "run_id": None, "undone": []}
    assert api.get(f"/memories/{ids[1]}").status_code == 404
    missing = api.delete(f"/memories/{ids[1]}")
    assert missing.status_code == 404 and "unknown memory id" in missing.json()["error"]
    assert api.get("/stats").json()["live"] == 2


@pytest.mark.parametrize(
    ("method", "path", "body", "status", "message"),
    [
        ("post", "/memories", {"memories": [{"vector": [1, 0, 0]}]}, 400, "wrong dimension"),
        ("post", "/memories", {"memories": [{"vector": [0, 0, 0, 0]}]}, 400, "zero vector"),
        ("post", "/memories", {"memories": [{"vector": [1, 0, 0, 1e39]}]}, 400, "infinite"),
        ("post", "/memories", {"memories": [{"payload": {}}]}, 400, "give text, a vector, or both"),
        ("post", "/memories", {"memories": [{"text": " "}]}, 400, "empty text"),
        ("post", "/memories", {"memories": [{"vector": [1, 0, 0, 0]}] * 6}, 413, "over the limit of 5"),
        (
            "post",
            "/memories",
            {"memories": [{"vector": NEAR[0], "payload": {"x": "y" * 80}}]},
            413,
            "payload",
        ),
        ("post", "/memories", {"memories": [{"text": "word " * 11}]}, 413, "max_text_chars"),
        ("post", "/search", {"text": "word " * 11}, 413, "query: text of 55 characters"),
        ("post", "/memories", {"memories": [{"vector": NEAR[0]}] * 200}, 413, "max_body_bytes"),
        ("post", "/memories", {"memories": []}, 422, "memories"),
        ("post", "/memories", {"memories": [{"vector": "x"}]}, 422, "memories.0.vector"),
        ("post", "/memories", {"nope": 1}, 422, "nope"),
        (
            "post",
            "/memories",
            {"memories": [{"vector": [1, 0, 0, 0]}], "partition": {"x": "1"}},
            400,
            "not a partition key",
        ),
        ("post", "/search", {"k": 2}, 400, "exactly one of text or vector"),
        ("post", "/search", {"vector": [1, 0], "k": 2}, 400, "query vector: wrong dimension"),
        ("post", "/search", {"vector": [1, 0, 0, 0], "k": 0}, 422, "k"),
        ("get", "/memories/12345", None, 404, "unknown memory id"),
        # found by the schema fuzzer: both answered 500
        ("get", "/memories/99999999999999999999999", None, 404, "unknown memory id"),
        ("get", "/memories/\u00b2", None, 404, "unknown memory id"),  # "²".isdigit() is true
        ("post", "/memories", {"memories": [{"vector": NEAR[0], "id": 2**64}]}, 400, "unsigned integer"),
        ("get", "/runs/r-nope", None, 404, "unknown run id"),
        ("post", "/undo/r-20990101T000000-abcdef", None, 404, "unknown run id"),
        ("post", "/undo/whatever", None, 404, "unknown run or merge id"),
        ("post", "/runs", {"threshold": 3}, 400, "not a cosine similarity"),
        ("post", "/runs", {"algorithm": "kmeans"}, 422, "algorithm"),
        # lone surrogates (JSON's \ud800 escape): once a 500 each
        ("post", "/memories", {"memories": [{"text": "tea \ud800"}]}, 422, "not valid UTF-8"),
        ("post", "/search", {"text": "\udc00 tea"}, 422, "not valid UTF-8"),
        ("post", "/memories", {"memories": [{"vector": NEAR[0], "payload": {"\ud800": 1}}]}, 422, "UTF-8"),
        ("post", "/memories", {"memories": [{"vector": NEAR[0], "payload": {"k": "\udfff"}}]}, 422, "UTF-8"),
        ("post", "/memories", {"memories": [{"vector": NEAR[0], "payload": {"k": 2**64}}]}, 422, "64 bits"),
        ("post", "/memories", {"memories": [{"vector": NEAR[0], "id": True}]}, 422, "memories.0.id"),
        ("get", "/no-such-route", None, 404, "Not Found"),  # the framework's answers as {"error": ...}
        ("put", "/memories", {}, 405, "Method Not Allowed"),
    ],
)
def test_bad_requests_get_clear_4xx_and_write_nothing(api, method, path, body, status, message) -> None:
    api.post("/memories", json={"memories": [{"vector": NEAR[2], "id": 7}]})
    # json.dumps escapes lone surrogates as JSON does (httpx's json= would fail on them)
    sent = (
        {} if body is None else {"content": json.dumps(body), "headers": {"content-type": "application/json"}}
    )
    response = api.request(method.upper(), path, **sent)
    assert response.status_code == status, response.text
    assert message in response.json()["error"]
    assert api.get("/stats").json()["live"] == 1


def test_a_chunked_body_over_the_limit_is_refused_while_reading(api: httpx.Client) -> None:
    chunks = iter([b'{"memories": [', b'{"vector": [1, 0, 0, 0]},' * 300, b"]}"])
    response = api.post("/memories", content=chunks, headers={"content-type": "application/json"})
    assert response.status_code == 413 and "max_body_bytes" in response.json()["error"]
    assert api.get("/stats").json()["live"] == 0


def test_malformed_json_and_nan_are_4xx(api: httpx.Client) -> None:
    headers = {"content-type": "application/json"}
    assert api.post("/memories", content=b"{not json", headers=headers).status_code == 422
    nan = b'{"memories": [{"vector": [NaN, 0, 0, 1]}]}'
    response = api.post("/memories", content=nan, headers=headers)
    assert response.status_code in (400, 422) and "error" in response.json()


def test_packed_writes_store_what_json_writes_store(api: httpx.Client) -> None:
    """The same memories through both formats: the same payloads, vectors and ids; the
    client's packed writes in batches under the daemon's max_batch."""
    memories = [{"payload": {"k": "a"}}, {"text": "green tea"}, {}]
    as_json = [{**m, "vector": v, "id": i} for i, (m, v) in enumerate(zip(memories, NEAR, strict=True), 1)]
    assert api.post("/memories", json={"memories": as_json}).json()["ids"] == [1, 2, 3]
    body = packed.pack(np.array(NEAR), [{**m, "id": i} for i, m in enumerate(memories, 11)])
    answer = api.post("/memories/packed", content=body, headers={"content-type": packed.MEDIA_TYPE})
    assert answer.status_code == 200 and answer.json()["ids"] == [11, 12, 13]
    for i, vector in enumerate(NEAR, 1):
        by_json, by_packed = api.get(f"/memories/{i}").json(), api.get(f"/memories/{i + 10}").json()
        assert by_packed["payload"] == by_json["payload"] and by_packed["text"] == by_json["text"]
        hits = api.post("/search", json={"vector": vector, "k": 2}).json()["hits"]
        assert {h["id"] for h in hits} == {i, i + 10} and min(h["score"] for h in hits) > 0.99999
    client = DaemonClient(Registration(0, str(api.base_url)), None)
    vectors = np.random.default_rng(0).normal(size=(12, 4)).astype(np.float32)
    ids = client.write_vectors(vectors, [{"n": i} for i in range(12)], batch=5)  # max_batch is 5
    assert len(set(ids)) == 12 and api.get("/stats").json()["live"] == 18


@pytest.mark.parametrize("body_format", ["packed", "json"])
def test_a_write_behind_another_write_waits_its_turn_off_the_event_loop(
    tmp_path: Path, body_format: str
) -> None:
    """A small write of new memories runs on the event loop only when no write holds the
    turn; behind one it waits in a worker thread, and the loop answers meanwhile."""
    settings = Settings()
    settings.inversion.model = "none"
    settings.storage.data_dir = tmp_path / "data"
    texts = [{"text": f"memory {i}"} for i in range(3)]
    with Reverie.open(settings) as rv:
        app = create_app(Service(rv))
        with running(app) as client:
            answers: list[httpx.Response] = []

            def post() -> None:
                if body_format == "json":
                    memories = [{**t, "vector": v} for t, v in zip(texts, NEAR, strict=True)]
                    answers.append(client.post("/memories", json={"memories": memories}))
                    return
                body = packed.pack(np.array(NEAR), texts)
                headers = {"content-type": packed.MEDIA_TYPE}
                answers.append(client.post("/memories/packed", content=body, headers=headers))

            with app.state.writing:  # another write is running
                poster = threading.Thread(target=post)
                poster.start()
                deadline = time.monotonic() + 10
                while app.state.writing.queued == 0 and time.monotonic() < deadline:
                    assert client.get("/healthz", timeout=5).status_code == 200  # the loop is free
                    time.sleep(0.01)
                assert app.state.writing.queued == 1 and not answers  # waiting, not written
                assert client.get("/healthz", timeout=5).status_code == 200
                assert client.get("/stats").json()["live"] == 0
            poster.join(10)
            assert answers[0].status_code == 200 and len(answers[0].json()["ids"]) == 3
            assert client.get("/stats").json()["live"] == 3


PACKED_BAD = [  # (body, content type, status, message)
    (packed.pack(np.ones((1, 4)), [{}]), "application/octet-stream", 415, packed.MEDIA_TYPE),
    (b"RVP2" + packed.pack(np.ones((1, 4)), [{}])[4:], None, 400, "starts with"),
    (b"RVP1\xff\xff\x00\x00{}", None, 400, "runs past"),
    (packed.pack(np.ones((1, 4)), [{}])[:-4], None, 400, "take 16 bytes"),
    (packed.pack(np.ones((2, 4)), [{}, {}]).replace(b'"dimension":4', b'"dimension":8'), None, 400, "64"),
    (b"RVP1\x05\x00\x00\x00{nope", None, 422, "JSON"),
    (packed.pack(np.ones((1, 4)), [{"vector": [1]}]), None, 422, "memories.0.vector"),
    (packed.pack(np.ones((1, 4)), [{"id": True}]), None, 422, "memories.0.id"),
    (packed.pack(np.full((1, 4), np.nan), [{}]), None, 400, "NaN"),
    (packed.pack(np.ones((1, 3)), [{}]), None, 400, "dimension"),
    (packed.pack(np.ones((1, 4)), [{"text": "t"}], raw_payload=True), None, 400, "carries its own text"),
    (packed.pack(np.ones((6, 4)), [{}] * 6), None, 413, "max_batch"),
    (packed.pack(np.ones((1, 4)), [{}], {"x": "1"}), None, 400, "not a partition key"),
    (packed.pack(np.ones((1, 4)), [{"payload": {"k": "v" * 100}}]), None, 413, "max_payload_bytes"),
    (packed.pack(np.ones((1, 4)), [{"text": "\u00e9" * 60}]), None, 413, "max_text_chars"),
    (b"RVP1" + b"\x00" * 5000, None, 413, "max_body_bytes"),
]


@pytest.mark.parametrize(("body", "media", "status", "message"), PACKED_BAD)
def test_bad_packed_writes_get_clear_4xx_and_write_nothing(api, body, media, status, message) -> None:
    api.post("/memories", json={"memories": [{"vector": NEAR[2], "id": 7}]})
    headers = {"content-type": media or packed.MEDIA_TYPE}
    response = api.post("/memories/packed", content=body, headers=headers)
    assert response.status_code == status, response.text
    assert message in response.json()["error"]
    assert api.get("/stats").json()["live"] == 1


def test_api_key_guards_every_route_but_health(tmp_path: Path) -> None:
    settings = Settings()
    settings.inversion.model = "none"  # inversion has its own tests (test_inversion.py)
    settings.storage.data_dir = tmp_path
    settings.daemon.api_key = "s3cret"
    with Reverie.open(settings) as rv, running(create_app(Service(rv))) as client:
        assert client.get("/healthz").status_code == 200
        assert client.get("/stats").status_code == 401
        for path in ("/docs", "/redoc", "/openapi.json"):  # the API's description too
            assert client.get(path).status_code == 401, path
        key = {"Authorization": "Bearer s3cret"}
        assert "/memories" in client.get("/openapi.json", headers=key).json()["paths"]
        assert client.get("/docs", headers=key).status_code == 200
        assert client.get("/stats", headers={"Authorization": "Bearer wrong"}).status_code == 401
        assert client.get("/stats", headers={"Authorization": "Bearer s3cret"}).status_code == 200


@pytest.mark.parametrize(
    ("host", "allowed", "status"),
    [
        ("attacker.example", [], 400),  # DNS rebinding: a name that resolves to loopback
        ("attacker.example:8765", [], 400),
        ("memory.internal", [], 400),
        ("memory.internal", ["memory.internal"], 200),
        ("anything.example", ["*"], 200),
        ("localhost:8765", [], 200),
        ("127.0.0.2:8765", [], 200),
        ("[::1]:8765", [], 200),
        ("10.0.0.7", [], 200),  # an address: no page can make a browser send one it does not own
    ],
)
def test_only_the_hosts_it_serves_are_answered(tmp_path: Path, host: str, allowed: list, status: int) -> None:
    settings = Settings()
    settings.inversion.model = "none"
    settings.storage.data_dir = tmp_path
    settings.daemon.allowed_hosts = allowed
    with Reverie.open(settings) as rv, running(create_app(Service(rv))) as client:
        response = client.post("/search", json={"vector": NEAR[0]}, headers={"Host": host})
        assert response.status_code == status, response.text
        if status == 400:
            assert "is not served here" in response.json()["error"]


def test_serve_refuses_a_public_address_without_a_key(tmp_path: Path) -> None:
    settings = Settings()
    settings.inversion.model = "none"  # inversion has its own tests (test_inversion.py)
    settings.storage.data_dir = tmp_path
    settings.daemon.host = "0.0.0.0"
    with pytest.raises(ConfigError, match="api_key"):
        serve(settings)


def received(sock: socket.socket) -> list[str]:
    messages = []
    while True:
        try:
            messages.append(sock.recv(4096).decode())
        except BlockingIOError:
            return messages


def start_serve(
    data_dir: Path, port: int, env: dict[str, str] | None = None, log: Path | None = None
) -> tuple[Popen, httpx.Client]:
    """`reverie serve` as a real process on a loopback port, once it answers /readyz."""
    command = [sys.executable, "-m", "reverie.cli", "--data-dir", str(data_dir), "serve", "--port", str(port)]
    output = log.open("ab") if log else subprocess.DEVNULL
    env = {**os.environ, "REVERIE_INVERSION__MODEL": "none", **(env or {})}  # inversion: test_inversion.py
    process = subprocess.Popen(command, stdout=output, stderr=output, env=env)
    client = httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=60)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            if client.get("/readyz").status_code == 200:
                return process, client
        except httpx.TransportError:
            time.sleep(0.1)
    process.kill()
    raise AssertionError("reverie serve did not become ready")


def test_secrets_never_reach_logs_run_records_or_files(tmp_path: Path) -> None:
    """The API key and the Qdrant key, right or wrong, appear nowhere the daemon writes:
    its debug logs, run records, registration file, collections."""
    key, storage_key, wrong = (f"{name}-{secrets.token_hex(8)}" for name in ("key", "qdrant", "wrong"))
    env = {
        **os.environ,
        "REVERIE_DAEMON__API_KEY": key,
        "REVERIE_STORAGE__API_KEY": storage_key,
        "REVERIE_LOGGING__LEVEL": "debug",
    }
    log = tmp_path / "serve.log"
    process, client = start_serve(tmp_path / "data", free_port(), env, log)
    try:
        assert client.get("/stats", headers={"Authorization": f"Bearer {wrong}"}).status_code == 401
        assert client.get("/stats", headers={"Authorization": wrong}).status_code == 401
        client.headers["Authorization"] = f"Bearer {key}"
        client.post("/memories", json={"memories": [{"vector": v} for v in NEAR]}).raise_for_status()
        client.post("/runs", json={}).raise_for_status()
        client.get("/metrics").raise_for_status()
        show = [sys.executable, "-m", "reverie.cli", "config", "show"]
        shown = subprocess.run(show, capture_output=True, text=True, env=env, check=True).stdout
        assert "api_key" in shown and key not in shown and storage_key not in shown
    finally:
        os.kill(process.pid, signal.SIGTERM)
        assert process.wait(timeout=20) == 0
        client.close()
    assert "run.summary" in log.read_text(), "the daemon logged nothing: the test would prove nothing"
    for path in [log, *(tmp_path / "data").rglob("*")]:
        if path.is_file():
            content = path.read_bytes()
            for secret in (key, storage_key, wrong):
                assert secret.encode() not in content, f"{secret.split('-')[0]} found in {path}"


def test_serve_waits_for_an_unreachable_qdrant_and_stops_cleanly(tmp_path: Path) -> None:
    """Qdrant not up (a closed port): no traceback, a clear log line per attempt with a
    growing wait, and SIGTERM meanwhile ends the process with status 0."""
    env = {**os.environ, "REVERIE_STORAGE__URL": f"http://127.0.0.1:{free_port()}"}
    command = [sys.executable, "-m", "reverie.cli", "--data-dir", str(tmp_path), "serve", "--port", "0"]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=env, text=True)
    lines: list[str] = []
    reader = threading.Thread(target=lambda: lines.extend(process.stdout), daemon=True)  # type: ignore[arg-type]
    reader.start()
    deadline = time.monotonic() + 60
    while sum("storage.unreachable" in line for line in lines) < 2 and time.monotonic() < deadline:
        time.sleep(0.1)
    os.kill(process.pid, signal.SIGTERM)
    assert process.wait(timeout=20) == 0
    reader.join(timeout=5)
    output = "".join(lines)
    waits = [json.loads(line)["retry_in"] for line in output.splitlines() if "storage.unreachable" in line]
    assert waits[:2] == [1.0, 2.0], output
    assert "is unreachable" in output and "Traceback" not in output


def test_readiness_says_when_storage_stops_answering(tmp_path: Path) -> None:
    """A Qdrant server that goes away after start: /readyz turns 503 and says why, and a
    write gets 503 naming the server, not a 500."""
    settings = Settings()
    settings.inversion.model = "none"  # inversion has its own tests (test_inversion.py)
    settings.storage.data_dir = tmp_path
    settings.storage.url = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    with Reverie.open(settings) as rv, running(create_app(Service(rv))) as client:
        ready = client.get("/readyz")
        assert ready.status_code == 503 and "unreachable" in ready.json()["storage"]
        written = client.post("/memories", json={"memories": [{"vector": NEAR[0]}]})
        assert written.status_code == 503 and "unreachable" in written.json()["error"]


def test_a_removed_data_directory_turns_readiness_off_and_refuses_writes(tmp_path: Path) -> None:
    """The embedded engine would take writes into files no longer on disk and lose them at
    the next restart: readiness says so, and writes are refused, naming the directory."""
    import shutil

    settings = Settings()
    settings.inversion.model = "none"
    settings.storage.data_dir = tmp_path / "data"
    with Reverie.open(settings) as rv, running(create_app(Service(rv))) as client:
        assert client.post("/memories", json={"memories": [{"vector": NEAR[0]}]}).status_code == 200
        assert client.get("/readyz").status_code == 200
        shutil.rmtree(settings.storage.data_dir)
        ready = client.get("/readyz")
        assert ready.status_code == 503 and "is gone" in ready.json()["storage"]
        written = client.post("/memories", json={"memories": [{"vector": NEAR[1]}]})
        assert written.status_code == 503
        assert written.json()["error"].startswith("nothing was written: the data directory")


def test_models_that_fail_to_load_say_why_and_never_stay_loading(tmp_path: Path) -> None:
    """A model that cannot load, whatever the error's type, shows its reason in /readyz
    and /stats; a text write then answers 503 with it, and vector writes still work."""
    settings = Settings()
    settings.storage.data_dir = tmp_path
    settings.embedder.model = str(tmp_path / "no-such-model")
    settings.inversion.model = "zero-shot"  # needs the embedder: fails with it
    missing = f"no model directory at {settings.embedder.model!r} (embedder.model)"
    with Reverie.open(settings) as rv:
        service = Service(rv)
        service.load_models_in_background().join(60)
        with running(create_app(service)) as client:
            models = client.get("/readyz").json()["models"]
            assert models["embedder"] == f"failed: {missing}"
            assert models["inverter"] == f"failed: the inverter needs the embedder: {missing}"
            stats = client.get("/stats").json()
            assert stats["embedder"] == models["embedder"] and stats["inverter"] == models["inverter"]
            written = client.post("/memories", json={"memories": [{"text": "the user likes tea"}]})
            assert written.status_code == 503 and written.json()["error"] == missing
            assert client.post("/memories", json={"memories": [{"vector": NEAR[0]}]}).status_code == 200


def test_serve_process_survives_sigterm_and_restart(tmp_path: Path) -> None:
    port = free_port()
    notify = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    notify.bind(str(tmp_path / "notify.sock"))
    notify.setblocking(False)
    env = {**os.environ, "NOTIFY_SOCKET": str(tmp_path / "notify.sock"), "WATCHDOG_USEC": "400000"}

    def start() -> tuple[Popen, httpx.Client]:
        return start_serve(tmp_path, port, env)

    process, client = start()
    client.post("/memories", json={"memories": [{"vector": v} for v in NEAR]})
    run_id = client.post("/runs", json={}).json()["run_id"]
    counts = lambda stats: {k: v for k, v in stats.items() if k != "strength"}  # noqa: E731 (ages with time)
    before = counts(client.get("/stats").json())
    time.sleep(0.5)  # a watchdog ping or two
    os.kill(process.pid, signal.SIGTERM)
    assert process.wait(timeout=20) == 0
    client.close()
    states = received(notify)
    assert states[0] == "READY=1" and "WATCHDOG=1" in states and states[-1] == "STOPPING=1"
    process, client = start()
    try:
        assert counts(client.get("/stats").json()) == before
        assert client.get(f"/runs/{run_id}").json()["status"] == "done"
    finally:
        os.kill(process.pid, signal.SIGTERM)
        assert process.wait(timeout=20) == 0
        client.close()
        notify.close()


def cli(data_dir: Path, *args: str) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, "-m", "reverie.cli", "--data-dir", str(data_dir), *args]
    return subprocess.run(command, capture_output=True, text=True, timeout=120)


def test_cli_commands_go_through_a_running_daemon(tmp_path: Path) -> None:
    process, client = start_serve(tmp_path, free_port())
    try:
        assert (tmp_path / "daemon.json").exists()
        texts = ["The user prefers green tea in the morning.", "In the morning the user likes green tea."]
        remembered = cli(tmp_path, "remember", *texts, "-p", "user_id=u1")
        assert remembered.returncode == 0, remembered.stderr
        assert client.get("/readyz").json()["models"] == {"embedder": "loaded"}
        run = json.loads(cli(tmp_path, "consolidate", "--json").stdout)
        assert len(run["merges"]) == 1 and run["points_after"] == 1
        recalled = json.loads(cli(tmp_path, "recall", "green tea", "--json", "-p", "user_id=u1").stdout)
        merged_id = recalled[0]["id"]
        assert merged_id == run["merges"][0]["merge_id"]
        shown = cli(tmp_path, "show", merged_id).stdout
        assert "merged from 2" in shown and "weight    2" in shown
        assert json.loads(cli(tmp_path, "stats", "--json").stdout)["merged"] == 1
        assert run["run_id"] in cli(tmp_path, "runs").stdout  # the run log is read directly
        assert "undid 1 merge(s)" in cli(tmp_path, "undo", run["run_id"]).stdout
        forgotten = cli(
            tmp_path, "forget", str(json.loads(cli(tmp_path, "recall", "tea", "--json").stdout)[0]["id"])
        )
        assert forgotten.stdout.startswith("deleted 1 memories"), forgotten.stderr
        assert "consolidate" in cli(tmp_path, "jobs").stdout
        assert "job maintain: started" in cli(tmp_path, "jobs", "run", "maintain").stdout
        # an import goes through the daemon, packed, each payload written as given
        given = {"id": 77, "vector": [0.1] * 384, "payload": {"text": "imported", "meta": {"a": [1, 2]}}}
        (tmp_path / "x.jsonl").write_text(json.dumps(given) + "\n")
        imported = cli(tmp_path, "import", str(tmp_path / "x.jsonl"), "-p", "user_id=u2")
        assert imported.returncode == 0 and f"through reverie serve (pid {process.pid})" in imported.stdout
        stored = client.get("/memories/77").json()
        assert stored["payload"] == {"text": "imported", "meta": {"a": [1, 2]}, "user_id": "u2"}
    finally:
        os.kill(process.pid, signal.SIGTERM)
        assert process.wait(timeout=20) == 0
        client.close()
    assert not (tmp_path / "daemon.json").exists()
    assert json.loads(cli(tmp_path, "stats", "--json").stdout)["live"] == 2  # storage itself again
    no_daemon = cli(tmp_path, "jobs")
    assert no_daemon.returncode == 1 and "no reverie serve is running" in no_daemon.stderr


def test_scheduler_consolidates_on_its_interval_one_run_at_a_time(tmp_path: Path) -> None:
    from reverie.daemon.scheduler import start_scheduler

    settings = Settings()
    settings.inversion.model = "none"  # inversion has its own tests (test_inversion.py)
    settings.storage.data_dir = tmp_path
    settings.scheduler.consolidate_every = 1
    with Reverie.open(settings) as rv:
        service = Service(rv)
        scheduler = start_scheduler(service, settings.scheduler)
        with running(create_app(service, scheduler)) as api:
            assert {j["id"] for j in api.get("/jobs").json()["jobs"]} == {
                "consolidate",
                "maintain",
                "flush-accesses",
            }
            api.post("/memories", json={"memories": [{"vector": v} for v in NEAR]})
            deadline = time.monotonic() + 15
            while api.get("/stats").json()["merged"] == 0 and time.monotonic() < deadline:
                time.sleep(0.2)
            assert api.get("/stats").json()["merged"] == 1
            while len(api.get("/runs").json()["runs"]) < 3 and time.monotonic() < deadline + 10:
                time.sleep(0.2)
            assert api.post("/jobs/maintain/run").status_code == 202
            assert api.post("/jobs/nope/run").status_code == 404
            runs = api.get("/runs").json()["runs"]
        scheduler.shutdown(wait=True)
    spans = sorted((r["started_at"], r["finished_at"]) for r in runs)
    assert len(spans) >= 3 and all(r["status"] == "done" for r in runs)
    for (_, end), (start, _) in zip(spans, spans[1:], strict=False):
        assert end <= start, "two consolidations overlapped"


def test_bad_crontab_names_the_key(tmp_path: Path) -> None:
    from reverie.config import load_settings

    with pytest.raises(ConfigError, match="scheduler.consolidate_cron"):
        load_settings(environ={"REVERIE_SCHEDULER__CONSOLIDATE_CRON": '"every minute"'})


def test_maintenance_waits_for_its_turn_beside_back_to_back_runs(tmp_path: Path) -> None:
    """With a run every few seconds, a maintenance that skipped when busy never ran (the
    soak found it: both jobs fire on the same second and the run always won)."""
    settings = Settings()
    settings.inversion.model = "none"  # inversion has its own tests (test_inversion.py)
    settings.storage.data_dir = tmp_path
    with Reverie.open(settings) as rv:
        rv.write([NewMemory(np.asarray(v, dtype=np.float32), {}) for v in NEAR])
        service = Service(rv)
        stop, in_run = threading.Event(), threading.Event()

        def scheduled_runs() -> None:  # runs back to back, a scheduler tick apart
            while not stop.is_set():
                with service._turn():
                    in_run.set()
                    service.rv.consolidate()
                    time.sleep(0.3)  # a run that takes a while
                time.sleep(0.05)

        runner = threading.Thread(target=scheduled_runs)
        runner.start()
        try:
            in_run.wait()
            service.maintain()  # waits for the run in progress instead of giving up
        finally:
            stop.set()
            runner.join()
        gave_up: list[BusyError] = []

        def waiting_maintenance() -> None:
            try:
                service.maintain()
            except BusyError as exc:
                gave_up.append(exc)

        holder = threading.Thread(target=waiting_maintenance)
        with service._turn():  # a long run holds the turn; a shutdown begins
            holder.start()
            service.stop()
            holder.join(5)
        assert not holder.is_alive() and gave_up, "a waiting maintenance must give up on shutdown"
