"""Hostile input on the parsers (hypothesis): the config file and environment, and the
import formats. Each either parses or fails with its own clear error (ConfigError,
InvalidInputError), never another exception, never a hang; a refused import writes
nothing."""

from __future__ import annotations

import contextlib
import json
import os
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from reverie.config import Settings, load_settings
from reverie.errors import ConfigError, InvalidInputError
from reverie.importing import read_import
from reverie.memory import Reverie

QUICK = settings(max_examples=150, deadline=None, suppress_health_check=list(HealthCheck))
FIELDS = [
    (section, key) for section, info in Settings.model_fields.items() for key in info.annotation.model_fields
]

toml_literals = st.one_of(
    st.integers().map(str),
    st.floats().map(lambda f: {"nan": "nan", "inf": "inf", "-inf": "-inf"}.get(str(f), repr(f))),
    st.booleans().map(lambda b: str(b).lower()),
    st.text(max_size=30).map(json.dumps),
    st.text(max_size=30),  # not a TOML literal: read as a plain string
    st.lists(st.integers(), max_size=3).map(str),
)


@given(values=st.dictionaries(st.sampled_from(FIELDS), toml_literals, max_size=6))
@QUICK
def test_any_environment_gives_settings_or_a_config_error_naming_the_variable(values: dict) -> None:
    environ = {f"REVERIE_{section.upper()}__{key.upper()}": raw for (section, key), raw in values.items()}
    try:
        load_settings(path=None, environ=environ)
    except ConfigError as exc:
        assert any(name in str(exc) for name in environ), str(exc)


@given(name=st.text(min_size=1, max_size=30), raw=st.text(max_size=30))
@QUICK
def test_unknown_variables_and_bad_names_are_config_errors(name: str, raw: str) -> None:
    with contextlib.suppress(ConfigError):
        load_settings(path=None, environ={f"REVERIE_{name}": raw})


@given(text=st.text(max_size=400) | st.binary(max_size=400).map(lambda b: b.decode("latin-1")))
@QUICK
def test_any_config_file_gives_settings_or_a_config_error(
    tmp_path_factory: pytest.TempPathFactory, text: str
) -> None:
    path = tmp_path_factory.mktemp("config") / "reverie.toml"
    path.write_text(text, encoding="utf-8", errors="surrogateescape")
    with contextlib.suppress(ConfigError):
        load_settings(path=path, environ={})


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=10),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=5), inner, max_size=4),
    max_leaves=10,
)
import_lines = st.one_of(
    st.fixed_dictionaries(
        {"vector": st.lists(st.floats(width=32) | st.integers() | st.text(max_size=3), max_size=6)},
        optional={"id": json_values | st.integers(min_value=-5), "payload": json_values, "text": json_values},
    ).map(lambda obj: json.dumps(obj, allow_nan=True)),
    json_values.map(json.dumps),
    st.text(max_size=40),
)


@given(lines=st.lists(import_lines, min_size=1, max_size=8))
@QUICK
def test_any_import_file_is_written_whole_or_refused_with_nothing_written(
    tmp_path_factory: pytest.TempPathFactory, lines: list[str]
) -> None:
    root = tmp_path_factory.mktemp("import")
    path = root / "memories.jsonl"
    path.write_text("\n".join(lines), encoding="utf-8")
    config = Settings()
    config.storage.data_dir = root / "data"
    with Reverie.open(config) as rv:
        try:
            written = rv.write(read_import(path))
        except InvalidInputError:
            assert not rv.exists or rv.stats()["live"] == 0, "a refused import wrote something"
            return
        assert rv.stats()["live"] == len(set(map(str, written)))


@pytest.mark.parametrize("kind", ["/dev/zero", "directory", "fifo"])
def test_import_refuses_what_is_not_a_regular_file_without_reading_it(tmp_path: Path, kind: str) -> None:
    """/dev/zero has no line ends and a FIFO blocks on open: either would never finish."""
    path = Path(kind)
    if kind == "directory":
        path = tmp_path
    elif kind == "fifo":
        path = tmp_path / "pipe"
        os.mkfifo(path)
    with pytest.raises(InvalidInputError, match="not a regular file"):
        read_import(path)
    with pytest.raises(InvalidInputError, match="not a regular file"):
        read_import(tmp_path / "v.npy", payloads=path)
