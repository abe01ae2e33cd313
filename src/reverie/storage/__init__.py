"""Storage: one small Store protocol, two Qdrant adapters, the payload schema, the archive."""

from reverie.storage.base import (
    Filter,
    HasId,
    Hit,
    IsEmpty,
    Match,
    MatchAny,
    PointId,
    QueryRequest,
    Record,
    Store,
)
from reverie.storage.factory import archive_name, open_store

__all__ = [
    "Filter",
    "HasId",
    "Hit",
    "IsEmpty",
    "Match",
    "MatchAny",
    "PointId",
    "QueryRequest",
    "Record",
    "Store",
    "archive_name",
    "open_store",
]
