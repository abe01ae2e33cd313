"""ASGI guards in front of the HTTP API and the MCP HTTP transport.

HostCheck: a web page can reach a daemon on loopback by DNS rebinding (a name it controls
that resolves to 127.0.0.1): the browser then sends that name as the Host. Only hosts the
daemon serves are answered: IP addresses (a page cannot make a browser send one it does not
own), `localhost`, and the names in `daemon.allowed_hosts`.
BearerKey: every request needs `Authorization: Bearer <api_key>` (the MCP transport; the
API checks its key per route, so health stays open).
"""

from __future__ import annotations

import hmac
import ipaddress
import json
from typing import Any

ANY_HOST = "*"


async def refuse(send: Any, status: int, message: str) -> None:
    """Answer a request with `{"error": message}` and `status`, as every other error is."""
    body = json.dumps({"error": message}).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


def host_name(header: str) -> str:
    """The name in a Host header, without its port or IPv6 brackets, lower case."""
    if header.startswith("["):
        return header[1 : header.find("]")].lower()
    return (header.rpartition(":")[0] if header.count(":") == 1 else header).lower()


def host_allowed(name: str, allowed: tuple[str, ...]) -> bool:
    if ANY_HOST in allowed or name == "localhost" or name in allowed:
        return True
    try:
        ipaddress.ip_address(name)
    except ValueError:
        return False
    return True


class HostCheck:
    """Refuse (400) a request whose Host the daemon does not serve."""

    def __init__(self, app: Any, allowed: list[str]) -> None:
        self.app, self.allowed = app, tuple(h.lower() for h in allowed)

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "http":
            header = dict(scope["headers"]).get(b"host", b"").decode("latin-1")
            if header and not host_allowed(host_name(header), self.allowed):
                message = f"host {host_name(header)!r} is not served here (add it to daemon.allowed_hosts)"
                return await refuse(send, 400, message)
        await self.app(scope, receive, send)


class BearerKey:
    """Refuse HTTP requests without `Authorization: Bearer <api_key>` (401, JSON)."""

    def __init__(self, app: Any, key: str) -> None:
        self.app, self.key = app, key.encode()

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "http":
            header = dict(scope["headers"]).get(b"authorization", b"")
            token = header[7:] if header[:7].lower() == b"bearer " else b""
            if not hmac.compare_digest(token, self.key):
                return await refuse(send, 401, "missing or wrong API key (send Authorization: Bearer <key>)")
        await self.app(scope, receive, send)
