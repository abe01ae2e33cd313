"""Load settings from a TOML file and REVERIE_* variables; errors name the offending key."""

from __future__ import annotations

import os
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any, get_args

from pydantic import ValidationError

from reverie.config.settings import Settings
from reverie.errors import ConfigError

ENV_PREFIX = "REVERIE_"
CONFIG_ENV = "REVERIE_CONFIG"
# variables an earlier release or its docs named, and the setting each is now
RENAMED_ENV = {
    "REVERIE_MODEL_CACHE": "REVERIE_INVERSION__MODEL_CACHE",
    "REVERIE_API_KEY": "REVERIE_DAEMON__API_KEY",
}
DEFAULT_CONFIG_FILE = Path("reverie.toml")


def load_settings(path: str | Path | None = None, environ: Mapping[str, str] | None = None) -> Settings:
    """Read `path` (or $REVERIE_CONFIG, or ./reverie.toml if present), then overlay the env.

    Environment keys look like REVERIE_CONSOLIDATION__THRESHOLD=0.9 (section, two
    underscores, key); values are parsed as TOML values, falling back to plain strings.
    """
    environ = os.environ if environ is None else environ
    explicit = path if path is not None else environ.get(CONFIG_ENV)
    data: dict[str, Any] = {}
    sources: dict[tuple[str, ...], str] = {}
    if explicit is not None:
        data = _read_toml(Path(explicit))
    elif DEFAULT_CONFIG_FILE.is_file():
        data = _read_toml(DEFAULT_CONFIG_FILE)
    for name, raw in environ.items():
        if not name.startswith(ENV_PREFIX) or name == CONFIG_ENV:
            continue
        if name in RENAMED_ENV:
            raise ConfigError(f"{name} is now {RENAMED_ENV[name]}: rename the variable")
        keys = tuple(part.lower() for part in name[len(ENV_PREFIX) :].split("__"))
        if len(keys) != 2 or not all(keys):
            raise ConfigError(f"{name}: expected REVERIE_<SECTION>__<KEY>, e.g. REVERIE_STORAGE__URL")
        data.setdefault(keys[0], {})
        if not isinstance(data[keys[0]], dict):
            raise ConfigError(f"{name}: [{keys[0]}] is not a section")
        data[keys[0]][keys[1]] = _parse_env_value(raw, _wants_text(*keys))
        sources[keys] = name
    try:
        return Settings.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(_describe(exc, sources)) from None


def _read_toml(path: Path) -> dict[str, Any]:
    if not path.is_file():
        raise ConfigError(f"config file not found: {path}")
    try:
        return tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise ConfigError(f"cannot read config file {path}: {exc}") from None


def _parse_env_value(raw: str, text: bool) -> Any:
    """A TOML value, else the plain string; a setting that holds text keeps the variable's
    text when TOML would read another type (an API key of digits stays a string)."""
    try:
        value = tomllib.loads(f"v = {raw}")["v"]
    except tomllib.TOMLDecodeError:
        return raw
    return raw if text and not isinstance(value, str) else value


def _wants_text(section: str, key: str) -> bool:
    """Whether the setting holds text only (str, or str or unset)."""
    model = Settings.model_fields.get(section)
    fields = getattr(model.annotation, "model_fields", {}) if model else {}
    field = fields.get(key)
    return field is not None and set(get_args(field.annotation) or (field.annotation,)) <= {str, type(None)}


def _describe(exc: ValidationError, sources: dict[tuple[str, ...], str]) -> str:
    lines = []
    errors = exc.errors()
    # A value for a union (a layout name or table): name the branch the value was meant for
    # (a table: its keys), not every branch it failed.
    if len(errors) > 1:
        errors = [
            e for e in errors if not any(str(part).startswith("literal[") for part in e["loc"])
        ] or errors
    for err in errors:
        loc = tuple(str(part) for part in err["loc"] if part != "ExplicitLayout" and not _wrapper(str(part)))
        key = ".".join(loc) or "settings"
        message = "unknown key" if err["type"] == "extra_forbidden" else err["msg"]
        # a check across keys names them in its message: say which variables set them
        origins = [sources[loc[:2]]] if loc[:2] in sources else []
        origins += [name for keys, name in sources.items() if not loc and ".".join(keys) in message]
        suffix = f" (from {', '.join(origins)})" if origins else ""
        lines.append(f"{key}: {message}{suffix}")
    return "invalid settings: " + "; ".join(lines)


def _wrapper(part: str) -> bool:
    """A validator's own step in an error's location (`function-after[...]`), not a key."""
    return part.startswith("function-") and part.endswith("]")


def settings_as_toml(settings: Settings, commented: bool = False) -> str:
    """Render the effective settings as TOML (secrets masked) for `reverie config show`;
    `commented` adds each setting's description and comments every line out (the
    example config in deploy/ is this output for the defaults)."""
    out: list[str] = []
    for section, values in settings.model_dump(mode="json").items():
        out.append(f"[{section}]")
        fields = type(getattr(settings, section)).model_fields
        for key, value in values.items():
            description = fields[key].description
            if commented and description:
                out.append(f"# {description}")
            if value is None:
                out.append(f"# {key} is unset")
                continue
            if key == "api_key":  # storage and daemon keys alike
                value = "***"
            out.append(f"{'# ' if commented else ''}{key} = {_toml_value(value)}")
        out.append("")
    return "\n".join(out)


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, list):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    if isinstance(value, dict):  # an explicit layout, as an inline table
        return "{ " + ", ".join(f"{k} = {_toml_value(v)}" for k, v in value.items() if v is not None) + " }"
    escaped = str(value).replace("\\", "\\\\").replace('"', '\\"')
    return f'"{escaped}"'
