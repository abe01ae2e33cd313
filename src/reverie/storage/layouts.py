"""Collection layouts: where each writer keeps a memory's text, metadata, tenant keys and
vectors, so reverie can consolidate a collection in place and leave it readable by the
tool that wrote it.

A layout reads a point's payload into what consolidation needs (its text, its tenant)
and writes a merged point back in the writer's own shape: LangChain still builds a
Document from it, LlamaIndex still loads its node, mem0's hash still matches its text.
Consolidation code sees only this interface, never a writer's key names.
"""

from __future__ import annotations

import copy
import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from reverie.storage.base import Record
from reverie.storage.payload import BLEND, agent_payload, meta, utcnow

MISSING = object()


class PayloadError(ValueError):
    """A payload this layout cannot read (the reason quarantines the point)."""


def get_path(payload: Mapping[str, Any], path: str) -> Any:
    """The value at a dotted path, MISSING where a key is absent; a step into a value that
    is not an object is a PayloadError naming both."""
    if "." not in path and isinstance(payload, Mapping):  # most tenant keys: one step
        return payload.get(path, MISSING)
    value: Any = payload
    walked: list[str] = []
    for part in path.split("."):
        if not isinstance(value, Mapping):
            if value is None:
                return MISSING
            raise PayloadError(f"{path}: {'.'.join(walked)!r} holds a {type(value).__name__}, not an object")
        value = value.get(part, MISSING)
        walked.append(part)
        if value is MISSING:
            return MISSING
    return value


def set_path(payload: dict[str, Any], path: str, value: Any) -> None:
    """Set a dotted path in place, making the objects on the way."""
    *parents, last = path.split(".")
    node = payload
    for part in parents:
        if node.get(part) is None:
            node[part] = {}
        if not isinstance(node[part], dict):
            raise PayloadError(f"{path}: {part!r} holds a {type(node[part]).__name__}, not an object")
        node = node[part]
    node[last] = value


def shared(payloads: list[Mapping[str, Any]], skip: frozenset[str] = frozenset()) -> dict[str, Any]:
    """The values every payload shares, key by key; objects present in all are compared
    key by key too, so a tenant key nested in metadata survives when other metadata differs."""
    first, rest = payloads[0], payloads[1:]
    out: dict[str, Any] = {}
    for key, value in first.items():
        if key in skip or not all(key in p for p in rest):
            continue
        others = [p[key] for p in rest]
        if isinstance(value, Mapping) and all(isinstance(o, Mapping) for o in others):
            out[key] = shared([value, *others])
        elif all(o == value for o in others):
            out[key] = value
    return out


@dataclass(frozen=True)
class Layout:
    """A writer's layout. `text` and `metadata` are dotted payload paths (`metadata` None:
    metadata sits at the top level); `vector` names the dense vector ("" the unnamed one),
    `sparse` the sparse one; `tenant_keys` are resolved dotted paths."""

    name: str
    text: str
    metadata: str | None = None
    vector: str = ""
    sparse: str | None = None
    tenant_keys: tuple[str, ...] = ("agent_id", "user_id")
    pin: str = "pinned"
    default_dense: tuple[str, ...] = field(default=(), compare=False)  # the writer's usual names
    default_sparse: tuple[str, ...] = field(default=(), compare=False)

    # -- reading ----------------------------------------------------------------------
    def text_of(self, payload: Mapping[str, Any]) -> str | None:
        """The memory's text, None when it has none; a PayloadError when the path holds
        something that is not text."""
        value = get_path(payload, self.text)
        if value is MISSING or value is None:
            return None
        if not isinstance(value, str):
            raise PayloadError(f"{self.text} holds a {type(value).__name__}, not text")
        return value

    def metadata_of(self, payload: Mapping[str, Any]) -> dict[str, Any]:
        """The memory's metadata as its writer keeps it (reverie's bookkeeping left out)."""
        if self.metadata:
            value = get_path(payload, self.metadata) if isinstance(payload, Mapping) else MISSING
            return dict(value) if isinstance(value, Mapping) else {}
        top = self.text.partition(".")[0]
        return {
            k: v for k, v in agent_payload(dict(payload)).items() if k != top and k not in self._own_keys()
        }

    def shown_text(self, payload: Mapping[str, Any]) -> str | None:
        """The text to show: None where there is none or it cannot be read (such a point
        is quarantined, never merged)."""
        try:
            return self.text_of(payload)
        except PayloadError:
            return None

    def tenant(self, payload: Mapping[str, Any]) -> tuple[TenantValue, ...]:
        """The partition a point belongs to: its value at each tenant path, typed (None if
        absent): a tenant is its JSON value with its type, so 1, "1", true and 1.0 are four
        tenants (Python's == would make three of them one)."""
        values = (get_path(payload, path) for path in self.tenant_keys)
        return tuple(None if v is MISSING else tenant_value(v) for v in values)

    def pinned(self, payload: Mapping[str, Any]) -> bool:
        """Pinned memories are never merged (the pin key set to true)."""
        try:
            return get_path(payload, self.pin) is True
        except PayloadError:
            return False

    def mergeable(self, payload: Mapping[str, Any]) -> bool:
        """Not pinned, not a saved blend (it stands beside its parents), and readable."""
        blend = meta(payload).get("kind") == BLEND
        return not blend and not self.pinned(payload) and self.problem(payload) is None

    def problem(self, payload: Mapping[str, Any]) -> str | None:
        """Why consolidation cannot read this payload, or None."""
        try:
            self.text_of(payload)
            self.tenant(payload)
        except PayloadError as exc:
            return str(exc)
        return None

    def tenant_path(self, name: str) -> str:
        """The tenant path an operator means by `name` (a key name or a path)."""
        for path in self.tenant_keys:
            if name in (path, path.rpartition(".")[2]):
                return path
        raise KeyError(name)

    # -- writing ----------------------------------------------------------------------
    def new_payload(self, text: str | None, metadata: Mapping[str, Any], tenant: Mapping[str, Any]) -> dict:
        """A memory reverie writes into this collection (its own API, MCP tools)."""
        payload: dict[str, Any] = {}
        if self.metadata:
            set_path(payload, self.metadata, dict(metadata))
        else:
            payload.update(metadata)
        for path, value in tenant.items():
            set_path(payload, path, value)
        if text is not None:
            payload.update(self.text_fields(payload, text))
        return payload

    def merged_payload(self, members: list[Record], text: str | None, merged_id: str, at: str) -> dict:
        """A merged point's agent payload, in the writer's shape: every value the members
        share, and `text` where the writer reads its text."""
        payload = shared([agent_payload(m.payload) for m in members], self._own_keys())
        if text is not None:
            payload.update(self.text_fields(payload, text))
        return payload

    def text_fields(self, payload: Mapping[str, Any], text: str) -> dict[str, Any]:
        """The top-level keys to set so the writer reads `text` (an inversion arriving)."""
        top = self.text.partition(".")[0]
        updated = {top: copy.deepcopy(payload.get(top))} if "." in self.text else {}
        set_path(updated, self.text, text)
        return updated

    def _own_keys(self) -> frozenset[str]:
        """Top-level keys a merge writes itself rather than keeping shared values."""
        return frozenset({self.text} if "." not in self.text else set())

    def resolved(
        self, partition_keys: list[str] | None, pin_key: str, vector: str, sparse: str | None
    ) -> Layout:
        """This layout bound to a collection: the operator's partition and pin keys (key
        names go under the metadata object, dotted paths stay as given) and its vectors."""
        keys = self.tenant_keys if partition_keys is None else tuple(self._path(k) for k in partition_keys)
        return replace(self, tenant_keys=keys, pin=self._path(pin_key), vector=vector, sparse=sparse)

    def _path(self, key: str) -> str:
        return key if "." in key or not self.metadata else f"{self.metadata}.{key}"

    def describe(self) -> dict[str, Any]:
        return {
            "layout": self.name,
            "text": self.text,
            "metadata": self.metadata,
            "vector": self.vector,
            "sparse": self.sparse,
            "tenant_keys": list(self.tenant_keys),
            "pin": self.pin,
        }


def from_description(description: Mapping[str, Any]) -> Layout:
    """A layout as `describe` gave it (a daemon's, read by its command-line client)."""
    d = description
    base = LAYOUTS.get(d["layout"]) or Layout(d["layout"], text=d["text"], metadata=d["metadata"])
    return replace(
        base, tenant_keys=tuple(d["tenant_keys"]), pin=d["pin"], vector=d["vector"], sparse=d["sparse"]
    )


@dataclass(frozen=True)
class Mem0Layout(Layout):
    """mem0: the text under `data` with its md5 `hash` and a `text_lemmatized` copy (the
    BM25 source), `created_at` / `updated_at`, tenant keys at the top level."""

    _MANAGED = frozenset({"data", "hash", "text_lemmatized", "created_at", "updated_at"})

    def text_fields(self, payload: Mapping[str, Any], text: str) -> dict[str, Any]:
        return {"data": text, "hash": hashlib.md5(text.encode()).hexdigest(), "text_lemmatized": text}

    def merged_payload(self, members: list[Record], text: str | None, merged_id: str, at: str) -> dict:
        payload = super().merged_payload(members, text, merged_id, at)
        created = [c for m in members if isinstance(c := m.payload.get("created_at"), str)]
        if created:
            payload["created_at"] = min(created)
        payload["updated_at"] = at
        return payload

    def new_payload(self, text: str | None, metadata: Mapping[str, Any], tenant: Mapping[str, Any]) -> dict:

        payload = super().new_payload(text, metadata, tenant)
        payload.setdefault("created_at", utcnow().isoformat())
        payload["updated_at"] = payload["created_at"]
        return payload

    def _own_keys(self) -> frozenset[str]:
        return self._MANAGED


@dataclass(frozen=True)
class LlamaIndexLayout(Layout):
    """LlamaIndex: the node as a JSON string under `_node_content` (its text inside), the
    node's metadata flattened at the top level beside `_node_type` and the doc ids."""

    def text_of(self, payload: Mapping[str, Any]) -> str | None:
        node = self._node(payload)
        if node is None:
            return None
        text = node.get("text")
        if text is not None and not isinstance(text, str):
            raise PayloadError(f"_node_content: its text holds a {type(text).__name__}, not text")
        return text

    def _node(self, payload: Mapping[str, Any]) -> dict[str, Any] | None:
        raw = payload.get("_node_content")
        if raw is None:
            return None
        try:
            node = json.loads(raw)
        except (TypeError, ValueError) as exc:
            raise PayloadError(f"_node_content is not a node JSON string: {exc}") from None
        if not isinstance(node, dict):
            raise PayloadError(f"_node_content holds a JSON {type(node).__name__}, not a node object")
        return node

    def text_fields(self, payload: Mapping[str, Any], text: str) -> dict[str, Any]:
        node = self._node(payload) or _text_node(str(payload.get("id_", "")), {})
        node["text"] = text
        return {"_node_content": json.dumps(node, ensure_ascii=False)}

    def new_payload(self, text: str | None, metadata: Mapping[str, Any], tenant: Mapping[str, Any]) -> dict:
        from uuid import uuid4

        flat = {**metadata, **tenant}
        node = _text_node(str(uuid4()), flat)
        payload = {**flat, "_node_type": "TextNode", **_doc_ids("None")}
        payload["_node_content"] = json.dumps(node, ensure_ascii=False)
        return payload if text is None else payload | self.text_fields(payload, text)

    def merged_payload(self, members: list[Record], text: str | None, merged_id: str, at: str) -> dict:
        payload = super().merged_payload(members, None, merged_id, at)
        nodes = [self._node(m.payload) or {} for m in members]
        node = {**nodes[0], **_text_node(merged_id, shared([n.get("metadata") or {} for n in nodes]))}
        node["relationships"] = shared([n.get("relationships") or {} for n in nodes])
        node["text"] = text or ""
        payload["_node_type"] = payload.get("_node_type", "TextNode")
        payload["_node_content"] = json.dumps(node, ensure_ascii=False)
        return payload

    def _own_keys(self) -> frozenset[str]:
        return frozenset({"_node_content"})


def _text_node(node_id: str, metadata: dict[str, Any]) -> dict[str, Any]:
    """The fields of a LlamaIndex TextNode a merged or new node sets itself."""
    return {
        "id_": node_id,
        "embedding": None,
        "metadata": metadata,
        "relationships": {},
        "start_char_idx": None,
        "end_char_idx": None,
        "class_name": "TextNode",
    }


def _doc_ids(value: str) -> dict[str, str]:
    return {"document_id": value, "doc_id": value, "ref_doc_id": value}


TenantValue = tuple[str, Any] | None  # (JSON type, value); a list or object as canonical JSON


def tenant_value(value: Any) -> TenantValue:
    """A tenant key's value with its JSON type, hashable and equal only to the same typed value."""
    if value is None:
        return ("null", None)
    if isinstance(value, list | dict):
        return ("json", json.dumps(value, sort_keys=True))
    return (type(value).__name__, value)  # bool, int, float, str


LAYOUTS: dict[str, Layout] = {
    "reverie": Layout("reverie", text="text"),
    "langchain": Layout(
        "langchain",
        text="page_content",
        metadata="metadata",
        tenant_keys=("metadata.agent_id", "metadata.user_id"),
        default_sparse=("langchain-sparse",),
    ),
    "llamaindex": LlamaIndexLayout(
        "llamaindex",
        text="_node_content",
        default_dense=("text-dense",),
        default_sparse=("text-sparse-new", "text-sparse"),
    ),
    "mcp-server-qdrant": Layout(
        "mcp-server-qdrant",
        text="document",
        metadata="metadata",
        tenant_keys=("metadata.agent_id", "metadata.user_id"),
    ),
    "mem0": Mem0Layout(
        "mem0", text="data", tenant_keys=("user_id", "agent_id", "run_id"), default_sparse=("bm25",)
    ),
}


def recognise(payload: Mapping[str, Any]) -> str | None:
    """Which writer's shape a payload has; None for one that says nothing (a point reverie
    stamped that carries no text, or a payload no writer would make)."""
    if isinstance(payload.get("_node_content"), str) and "_node_type" in payload:
        return "llamaindex"
    if "data" in payload and "hash" in payload:
        return "mem0"
    if "page_content" in payload:
        return "langchain"
    if "document" in payload:
        return "mcp-server-qdrant"
    if "text" in payload:
        return "reverie"
    if meta(payload):
        return None
    return "unknown"
