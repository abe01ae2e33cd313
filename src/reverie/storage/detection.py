"""Which layout a collection has: configured, or read off its vectors and a sample of its
payloads (`storage.layout = "auto"`), and bound to the store (which dense vector is the
one consolidation works on).

An empty or missing collection gives no evidence: it gets the configured layout (auto:
reverie's own) and is looked at again on the next use, so a daemon started before an
agent's first write still finds the agent's layout. Once detected, a collection's layout is
remembered (`layouts.json` in the data directory): points a plain client writes later in
another shape are then read in that layout (or quarantined where it cannot read them),
instead of making the collection refuse to open.
"""

from __future__ import annotations

import itertools
import json
import threading
from collections import Counter
from pathlib import Path
from typing import Any

import structlog

from reverie.config import Settings, StorageSettings
from reverie.config.settings import ExplicitLayout
from reverie.errors import ConfigError
from reverie.storage.base import Store, VectorSchema
from reverie.storage.layouts import LAYOUTS, MISSING, Layout, PayloadError, get_path, recognise
from reverie.storage.payload import KEY

log = structlog.get_logger("reverie.storage")

SAMPLE = 256


class CollectionLayout:
    """The layout of one collection and its archive, resolved on first use."""

    def __init__(
        self,
        store: Store,
        collection: str,
        archive: str,
        settings: StorageSettings,
        partition_keys: list[str] | None,
        pin_key: str,
        embedder: str,
        memory: LayoutMemory | None = None,
    ) -> None:
        self.store, self.collection, self.archive = store, collection, archive
        self.memory = memory or LayoutMemory(None)
        self.setting = settings.layout
        self.partition_keys, self.pin_key = partition_keys, pin_key
        self.embedder = embedder  # the model name: mcp-server-qdrant names its vector after it
        self.absent_keys: list[str] = []  # tenant paths no sampled point carries
        # whether every sampled point came through reverie's own writes (they carry the tenant
        # given per write), or some from an agent's own client (which may use another key)
        self.written_by_reverie = True
        self._layout: Layout | None = None
        self._settled = False
        self._lock = threading.Lock()

    @classmethod
    def of(cls, store: Store, settings: Settings) -> CollectionLayout:
        """The configured collection's layout."""
        from reverie.storage.factory import archive_name

        s, c = settings.storage, settings.consolidation
        model = settings.embedder.model
        memory = LayoutMemory(s.data_dir / LayoutMemory.FILE, s.url or "embedded")
        return cls(
            store, s.collection, archive_name(s.collection), s, c.partition_keys, c.pin_key, model, memory
        )

    def get(self) -> Layout:
        """The layout, resolved on first use (and again while the collection is empty)."""
        if self._settled:
            return self._layout  # type: ignore[return-value]
        with self._lock:
            if not self._settled:
                self._layout, self._settled = self._resolve()
                for name in (self.collection, self.archive):
                    self.store.use_vector(name, self._layout.vector)
                    self.store.use_tenants(name, self._layout.tenant)
        return self._layout  # type: ignore[return-value]

    def bound(self, store: Store) -> Store:
        """`store`, resolving this layout (and binding its vector) before the first call
        that reads or writes points: no caller can read a named vector unbound."""
        return _Bound(store, self)  # type: ignore[return-value]

    def new_schema(self, dimension: int) -> VectorSchema:
        """The vectors of a collection reverie creates for this layout."""
        layout = self.get()
        sparse = ((layout.sparse, layout.name == "mem0"),) if layout.sparse else ()
        return VectorSchema(((layout.vector, dimension),), sparse)

    def _resolve(self) -> tuple[Layout, bool]:
        schema = self.store.schema(self.collection)
        sample = [] if schema is None else list(itertools.islice(self.store.scroll(self.collection), SAMPLE))
        payloads = [r.payload for r in sample]
        base, named = self._base(payloads)
        explicit = self.setting if isinstance(self.setting, ExplicitLayout) else None
        if schema is None:
            vector = (explicit.vector if explicit else None) or _new_vector_name(base.name, self.embedder)
            sparse = (explicit.sparse if explicit else None) or (base.default_sparse or (None,))[0]
        else:
            vector = _dense(schema, base, explicit.vector if explicit else None, self.collection)
            sparse = _sparse(schema, base, explicit.sparse if explicit else None, self.collection)
        keys = explicit.tenant_keys if explicit and explicit.tenant_keys is not None else self.partition_keys
        layout = base.resolved(keys, self.pin_key, vector, sparse)
        if payloads:
            self._check_keys(layout, payloads)
        (log.info if payloads else log.debug)(
            "layout.resolved",
            collection=self.collection,
            how="configured" if named else "detected",
            sampled=len(payloads),
            **layout.describe(),
        )
        return layout, bool(payloads)

    def _base(self, payloads: list[dict[str, Any]]) -> tuple[Layout, bool]:
        """The layout before binding, and whether it was configured rather than detected."""
        if isinstance(self.setting, ExplicitLayout) and self.setting.text is not None:
            e = self.setting
            keys = tuple(f"{e.metadata}.{k}" if e.metadata else k for k in ("agent_id", "user_id"))
            return Layout("explicit", text=e.text, metadata=e.metadata, tenant_keys=keys), True
        if isinstance(self.setting, str) and self.setting != "auto":
            return LAYOUTS[self.setting], True
        name = self.memory.get(self.collection)
        if name is None:
            name = detect(payloads, self.collection)
            if payloads:
                self.memory.put(self.collection, name)
        return LAYOUTS[name], False

    def _check_keys(self, layout: Layout, payloads: list[dict[str, Any]]) -> None:
        """A partition key no sampled point carries is named: it separates nothing."""
        self.absent_keys = [path for path in layout.tenant_keys if not any(_has(p, path) for p in payloads)]
        self.written_by_reverie = all(
            _has(p, f"{KEY}.created_at") or _has(p, f"{KEY}.merged_at") for p in payloads
        )
        for path in self.absent_keys:
            (log.warning if self.partition_keys is not None else log.info)(
                "layout.partition_key_absent",
                key=path,
                sampled=len(payloads),
                collection=self.collection,
                hint="no sampled memory carries it, so it separates nothing: check the key's path",
            )


class _Bound:
    POINT_CALLS = frozenset(
        {
            "upsert",
            "retrieve",
            "scroll",
            "query",
            "query_batch",
            "delete",
            "set_payload",
            "count",
            "facet",
            "vector_size",
            "distance",
        }
    )

    def __init__(self, store: Store, layout: CollectionLayout) -> None:
        self._store, self._layout = store, layout

    def __getattr__(self, name: str) -> Any:
        method = getattr(self._store, name)
        if name not in self.POINT_CALLS:
            return method

        def call(*args: Any, **kwargs: Any) -> Any:
            self._layout.get()
            return method(*args, **kwargs)

        return call


class LayoutMemory:
    """The layout detected for each collection, kept beside the run log (None: nowhere)."""

    FILE = "layouts.json"

    def __init__(self, path: Path | None, store: str = "embedded") -> None:
        self.path, self.store = path, store  # the store: one data directory may serve several

    def get(self, collection: str) -> str | None:
        name = self._read().get(self._key(collection))
        return name if name in LAYOUTS else None

    def put(self, collection: str, name: str) -> None:
        if self.path is None:
            return
        known = self._read() | {self._key(collection): name}
        scratch = self.path.with_suffix(".tmp")
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            scratch.write_text(json.dumps(known, indent=1, sort_keys=True))
            scratch.replace(self.path)
        except OSError as exc:  # detection works again next time; said, not fatal
            log.warning("layout.not_remembered", collection=collection, error=str(exc))

    def _key(self, collection: str) -> str:
        return f"{self.store} {collection}"

    def _read(self) -> dict[str, str]:
        if self.path is None or not self.path.is_file():
            return {}
        try:
            known = json.loads(self.path.read_text())
        except (OSError, ValueError):
            return {}
        return known if isinstance(known, dict) else {}


def detect(payloads: list[dict[str, Any]], collection: str) -> str:
    """The one writer layout the sampled payloads share; an error naming what was seen when
    they mix layouts or fit none."""
    seen = Counter(recognise(p) for p in payloads)
    seen.pop(None, None)
    if not seen:
        return "reverie"
    if len(seen) == 1 and "unknown" not in seen:
        return next(iter(seen))
    counts = ", ".join(f"{n} {name}" for name, n in seen.most_common())
    if len(seen) > 1:
        raise ConfigError(
            f"collection {collection!r} mixes layouts ({counts} of {len(payloads)} sampled points): "
            "set storage.layout to the one to consolidate, or split the collection"
        )
    keys = sorted({k for p in payloads for k in p})[:12]
    raise ConfigError(
        f"cannot tell which tool wrote collection {collection!r}: {len(payloads)} sampled points with "
        f"payload keys {keys}; set storage.layout (a layout name, or [storage.layout] text = PATH)"
    )


def _through_reverie(payload: dict[str, Any]) -> bool:
    """Written by reverie's own API (stamped at write) or merged by it."""
    return _has(payload, f"{KEY}.created_at") or _has(payload, f"{KEY}.merged_at")


def _has(payload: dict[str, Any], path: str) -> bool:
    try:
        return get_path(payload, path) not in (MISSING, None)
    except PayloadError:
        return False


def _new_vector_name(layout: str, embedder: str) -> str:
    """mcp-server-qdrant names its vector after the embedding model."""
    if layout == "mcp-server-qdrant":
        return f"fast-{embedder.rpartition('/')[2].lower()}"
    return ""


def _dense(schema: VectorSchema, layout: Layout, wanted: str | None, collection: str) -> str:
    names = [name for name, _ in schema.dense]
    picked = _pick("dense", names, layout.default_dense, wanted, schema, collection)
    if picked is None:
        raise ConfigError(
            f"collection {collection!r} has several dense vectors ({schema.describe()}): name the one to "
            "consolidate with [storage.layout] vector = NAME"
        )
    return picked


def _sparse(schema: VectorSchema, layout: Layout, wanted: str | None, collection: str) -> str | None:
    names = [name for name, _ in schema.sparse]
    return _pick("sparse", names, layout.default_sparse, wanted, schema, collection)


def _pick(
    kind: str,
    names: list[str],
    defaults: tuple[str, ...],
    wanted: str | None,
    schema: VectorSchema,
    collection: str,
) -> str | None:
    """The vector named in the layout (which must exist), else the writer's usual one, else
    the only one; None when that leaves several or none."""
    if wanted is not None:
        if wanted not in names:
            raise ConfigError(
                f"storage.layout names {kind} vector {wanted!r}, which collection {collection!r} lacks "
                f"({schema.describe()})"
            )
        return wanted
    found = [name for name in defaults if name in names]
    if found:
        return found[0]
    return names[0] if len(names) == 1 else None
