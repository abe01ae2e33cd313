import re
from pathlib import Path

import pytest

from reverie.config import load_settings, settings_as_toml
from reverie.errors import ConfigError


def test_defaults_without_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    s = load_settings(environ={})
    assert s.storage.url is None
    assert s.consolidation.algorithm == "agglomerative"
    assert s.embedder.model.endswith("all-MiniLM-L6-v2")


def test_file_then_environment(tmp_path: Path) -> None:
    f = tmp_path / "r.toml"
    f.write_text('[consolidation]\nthreshold = 0.9\nalgorithm = "dbscan"\n[storage]\ncollection = "m2"\n')
    s = load_settings(f, environ={"REVERIE_CONSOLIDATION__THRESHOLD": "0.85"})
    assert s.consolidation.threshold == 0.85
    assert s.consolidation.algorithm == "dbscan"
    assert s.storage.collection == "m2"


def test_the_model_cache_is_a_setting_like_any_other(tmp_path: Path) -> None:
    s = load_settings(environ={"REVERIE_INVERSION__MODEL_CACHE": str(tmp_path / "models")})
    assert s.inversion.model_cache == tmp_path / "models"


def test_a_text_setting_keeps_the_variables_text() -> None:
    """A key of digits from the environment is the key, not a number that fails validation."""
    assert load_settings(environ={"REVERIE_DAEMON__API_KEY": "12345"}).daemon.api_key == "12345"
    assert load_settings(environ={"REVERIE_STORAGE__COLLECTION": "2024"}).storage.collection == "2024"
    assert load_settings(environ={"REVERIE_DAEMON__PORT": "9000"}).daemon.port == 9000


def test_a_data_directory_that_cannot_be_one_is_named(tmp_path: Path) -> None:
    from reverie.errors import StorageError
    from reverie.memory import Reverie

    (tmp_path / "a-file").write_text("")
    settings = load_settings(environ={"REVERIE_STORAGE__DATA_DIR": str(tmp_path / "a-file" / "data")})
    with pytest.raises(StorageError, match=r"a-file/data \(storage.data_dir\): .*Not a directory"):
        Reverie.open(settings)


def test_config_env_var_names_file(tmp_path: Path) -> None:
    f = tmp_path / "r.toml"
    f.write_text('[storage]\nurl = "http://localhost:6333"\n')
    assert load_settings(environ={"REVERIE_CONFIG": str(f)}).storage.url == "http://localhost:6333"


@pytest.mark.parametrize(
    ("text", "env", "message"),
    [
        ("[consolidation]\nthreshhold = 0.9\n", {}, "consolidation.threshhold: unknown key"),
        ("[consolidaton]\n", {}, "consolidaton: unknown key"),
        ("", {"REVERIE_CONSOLIDATION__THRESHOLD": "1.5"}, "REVERIE_CONSOLIDATION__THRESHOLD"),
        ("", {"REVERIE_STORAGE__NOPE": "x"}, "storage.nope: unknown key"),
        ("", {"REVERIE_THRESHOLD": "0.5"}, "REVERIE_<SECTION>__<KEY>"),
        ("", {"REVERIE_MODEL_CACHE": "/tmp/m"}, "REVERIE_MODEL_CACHE is now REVERIE_INVERSION__MODEL_CACHE"),
        # settings that validated once and then failed every tick, or meant something else
        ("[runs]\nkeep_days = inf\n", {}, "runs.keep_days"),
        ("[forget]\nafter_days = inf\n", {}, "forget.after_days"),
        ("[scheduler]\nmaintain_every = 99999999999999\n", {}, "scheduler.maintain_every"),
        ("[daemon]\nport = true\n", {}, "daemon.port"),
        ("", {"REVERIE_STORAGE__LAYOUT": '{metadata = "m"}'}, "needs storage.layout.text"),
        ("[forget]\nenabled = 'yes'\n", {}, "forget.enabled"),
        ("[storage]\nshard_buckets = 256\n", {}, "storage.shard_buckets needs storage.url"),
        ("[daemon]\napi_key = ''\n", {}, "daemon.api_key"),
        ("", {"REVERIE_DAEMON__API_KEY": ""}, "daemon.api_key"),
        ("[consolidation]\nalgorithm = 'kmeans'\n", {}, "consolidation.algorithm"),
        (
            "[consolidation]\nthreshold = 0.7\nmin_member_similarity = 0.9\n",
            {},
            "min_member_similarity",
        ),
        ("not toml [", {}, "cannot read config file"),
        ("[memory]\nstability_days = 0\n", {}, "memory.stability_days"),
        ("[memory]\nstability_days = -1\n", {}, "memory.stability_days"),
        ("[memory]\nfloor = 1.0\n", {}, "memory.floor"),
        ("[forget]\nbelow = 0\n", {}, "forget.below"),
        ("[consolidation]\nage_threshold = 0.9\n", {}, "age_threshold must not exceed"),
        ("[forget]\nafter_days = -3\n", {}, "forget.after_days"),
        ("[forget]\nmax_memories = 0\n", {}, "forget.max_memories"),
        ("[archive]\nkeep_days = 0\n", {}, "archive.keep_days"),
        ("[runs]\nkeep_max = 0\n", {}, "runs.keep_max"),
        ("[memory]\nflush_accesses = 0\n", {}, "memory.flush_accesses"),
        ("[recall]\nrank = 'popularity'\n", {}, "recall.rank"),
        ("[recall]\nrecency_decay = 1.5\n", {}, "recall.recency_decay"),
        ("", {"REVERIE_RECALL__RELEVANCE_WEIGHT": "-1"}, "REVERIE_RECALL__RELEVANCE_WEIGHT"),
        (
            "[recall]\nrelevance_weight = 0\nrecency_weight = 0\nimportance_weight = 0\n",
            {},
            "at least one of the weights",
        ),
    ],
)
def test_bad_settings_name_the_key(tmp_path: Path, text: str, env: dict[str, str], message: str) -> None:
    f = tmp_path / "r.toml"
    f.write_text(text)
    with pytest.raises(ConfigError, match=re.escape(message)):
        load_settings(f, environ=env)


def test_missing_config_file_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="config file not found"):
        load_settings(tmp_path / "nope.toml", environ={})


def test_show_masks_secrets_and_round_trips(tmp_path: Path) -> None:
    f = tmp_path / "r.toml"
    f.write_text('[storage]\nurl = "http://q:6333"\napi_key = "s3cret"\n')
    shown = settings_as_toml(load_settings(f, environ={}))
    assert "s3cret" not in shown
    assert 'url = "http://q:6333"' in shown
    again = tmp_path / "again.toml"
    again.write_text(shown.replace('api_key = "***"', 'api_key = "s3cret"'))
    assert load_settings(again, environ={}) == load_settings(f, environ={})
