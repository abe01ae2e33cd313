"""Storage: one small Store protocol (base.py), two Qdrant backends (edge.py embedded,
server.py over qdrant-client), reverie's payload schema, and the writers' layouts it reads."""

from reverie.storage.base import (
    Condition,
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
    "Condition",
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
