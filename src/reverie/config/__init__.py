"""Settings: one TOML file plus REVERIE_* environment variables, validated."""

from reverie.config.loading import load_settings, settings_as_toml
from reverie.config.settings import (
    ArchiveSettings,
    ConsolidationSettings,
    DaemonSettings,
    EmbedderSettings,
    ForgetSettings,
    InversionSettings,
    LoggingSettings,
    MemorySettings,
    RecallSettings,
    RunsSettings,
    SchedulerSettings,
    Settings,
    StorageSettings,
)

__all__ = [
    "ArchiveSettings",
    "ConsolidationSettings",
    "DaemonSettings",
    "EmbedderSettings",
    "ForgetSettings",
    "InversionSettings",
    "LoggingSettings",
    "MemorySettings",
    "RecallSettings",
    "RunsSettings",
    "SchedulerSettings",
    "Settings",
    "StorageSettings",
    "load_settings",
    "settings_as_toml",
]
