"""Open the configured store: embedded unless a Qdrant URL is set."""

from __future__ import annotations

from reverie.config import StorageSettings
from reverie.storage.base import Store


def archive_name(collection: str) -> str:
    """Retired originals live in a sibling collection with the same ids."""
    return f"{collection}__archive"


def open_store(settings: StorageSettings) -> Store:
    if settings.url:
        from reverie.storage.server import ServerStore

        return ServerStore.connect(settings.url, settings.api_key, settings.shard_buckets)
    from reverie.storage.edge import EdgeStore

    return EdgeStore(settings.data_dir / "collections", settings.min_free_mb, settings.flush_every)
