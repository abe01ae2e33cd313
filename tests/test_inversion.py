"""Inversion: a small vec2text model trained here, saved and loaded by the real code, and
the lazy text of merged memories (inverted on read, cached, never for a point merged again)."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from safetensors.torch import load_file

from reverie.config import Settings
from reverie.errors import InvalidInputError, InverterError
from reverie.inversion.inverter import invert, open_inverter
from reverie.inversion.lazy import cached_text
from reverie.inversion.training import TrainOptions, read_corpus, train
from reverie.memory import NewMemory, Reverie
from reverie.storage import payload as p
from reverie.storage.edge import EdgeStore

SENTENCES = [
    "the user prefers green tea in the morning",
    "alice was born on the third of may",
    "the deploy key lives in the team vault",
    "a small dog barked at the mailman",
    "paris is the capital of france",
    "the meeting moved to friday at noon",
]


def tiny_options(corpus: Path, out: Path, **overrides: object) -> TrainOptions:
    """A model small enough to train in seconds on a CPU."""
    tiny = dict(batch_size=8, d_model=64, layers=1, heads=2, d_ff=256, vocab_size=1000, repeat_tokens=4)
    return TrainOptions(
        corpus=corpus, embedder="all-MiniLM-L6-v2", out=out, progress=False, **{**tiny, **overrides}
    )


@pytest.fixture(scope="session")
def inverter_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny inverter trained on six sentences until it knows them by heart (~30 s)."""
    root = tmp_path_factory.mktemp("inverter")
    corpus = root / "corpus.txt"
    corpus.write_text("\n".join(SENTENCES) + "\n")
    train(tiny_options(corpus, root / "run", holdout=0, max_steps=400, learning_rate=3e-3, dropout=0.0))
    return root / "run" / "model"


def test_a_trained_model_inverts_its_sentences_exactly(inverter_dir: Path, embedder) -> None:
    inverter = open_inverter(str(inverter_dir), embedder)
    results = invert(inverter, embedder.encode(SENTENCES))
    assert [r.text for r in results] == SENTENCES
    assert all(r.fidelity > 0.999 for r in results)


def test_saved_model_holds_no_embedder_and_loads_to_the_same_output(inverter_dir: Path, embedder) -> None:
    weights = load_file(str(inverter_dir / "inverter.safetensors"))
    assert not [k for k in weights if k.startswith("embedder")]
    assert (inverter_dir / "inverter.safetensors").stat().st_size < 2_000_000
    meta = json.loads((inverter_dir / "inverter.json").read_text())
    assert meta["embedder"] == "sentence-transformers/all-MiniLM-L6-v2" and meta["dimension"] == 384
    query = embedder.encode(["a dog barked at the postman"])  # not in the corpus: any text, but the same
    first = open_inverter(str(inverter_dir), embedder, beam_width=3)
    second = open_inverter(str(inverter_dir.parent), embedder, beam_width=3)  # the run dir works too
    assert first.id == second.id and first.texts(query) == second.texts(query)


def test_bad_models_are_clear_errors(inverter_dir: Path, embedder, tmp_path: Path) -> None:
    with pytest.raises(InverterError, match="does not exist"):
        open_inverter(str(tmp_path / "nope"), embedder)
    with pytest.raises(InverterError, match="not a reverie inverter"):
        open_inverter(str(tmp_path), embedder)
    foreign = shutil.copytree(inverter_dir, tmp_path / "foreign")
    meta = json.loads((foreign / "inverter.json").read_text())
    (foreign / "inverter.json").write_text(
        json.dumps({**meta, "embedder": "sentence-transformers/gtr-t5-base"})
    )
    with pytest.raises(InverterError, match="trained for embedder 'sentence-transformers/gtr-t5-base'"):
        open_inverter(str(foreign), embedder)
    corrupt = shutil.copytree(inverter_dir, tmp_path / "corrupt")
    data = (corrupt / "inverter.safetensors").read_bytes()
    (corrupt / "inverter.safetensors").write_bytes(data[: len(data) // 2])
    with pytest.raises(InverterError, match="cannot load the inverter"):
        open_inverter(str(corrupt), embedder)
    with pytest.raises(InverterError, match="no corrector"):
        open_inverter(str(inverter_dir), embedder, steps=5)


def test_an_empty_corpus_is_refused(tmp_path: Path) -> None:
    (tmp_path / "empty.txt").write_text("\n  \n")
    with pytest.raises(InvalidInputError, match="holds no sentences"):
        read_corpus(tmp_path / "empty.txt")


@pytest.fixture
def lazy_rv(inverter_dir: Path, embedder, tmp_path: Path):
    settings = Settings()
    settings.storage.data_dir = tmp_path / "data"
    settings.inversion.model = str(inverter_dir)
    settings.inversion.settle_seconds = 0
    rv = Reverie(settings, EdgeStore(tmp_path / "collections"), embedder)
    calls: list[int] = []  # one entry per inversion batch: its size
    rv.inversion.on_inverted = lambda points, seconds: calls.append(points)
    yield rv, calls
    rv.close()


def near(vector: np.ndarray, seed: int) -> np.ndarray:
    noisy = vector + np.random.default_rng(seed).normal(scale=0.01, size=vector.shape)
    return (noisy / np.linalg.norm(noisy)).astype(np.float32)


def merged_point(rv: Reverie):
    return next(r for r in rv.live_records() if p.meta(r.payload).get("kind") == p.MERGED)


def test_text_is_inverted_on_first_read_cached_and_never_at_merge_time(lazy_rv: Reverie, embedder) -> None:
    rv, calls = lazy_rv
    target = embedder.encode([SENTENCES[4]])[0]
    rv.write([NewMemory(near(target, 1), {}), NewMemory(near(target, 2), {})])
    rv.consolidate()
    merged = merged_point(rv)
    assert cached_text(merged, rv.layout).source == "pending" and calls == []
    first = rv.text(merged)
    assert first.source == "inversion" and first.text == SENTENCES[4] and first.fidelity > 0.99
    cached = p.meta(merged_point(rv).payload)["inversion"]
    assert cached["text"] == SENTENCES[4] and cached["inverter"] == first.inverter
    assert merged_point(rv).payload["text"] == SENTENCES[4], "the writer's text field follows"
    assert (cached["steps"], cached["beam_width"]) == (0, 1)
    again = rv.text(merged_point(rv))
    assert again == first and calls == [1], "a cached text is not inverted again"
    assert rv.stats()["inverted_text"] == 1 and rv.stats()["pending_text"] == 0
    changed = merged_point(rv)
    changed.vector = near(changed.vector, 3)
    assert cached_text(changed, rv.layout).source == "pending", "text cached for another vector is stale"


def test_a_point_merged_again_before_anyone_reads_it_is_never_inverted(lazy_rv: Reverie, embedder) -> None:
    rv, calls = lazy_rv
    target = embedder.encode([SENTENCES[1]])[0]
    rv.write([NewMemory(near(target, 1), {}), NewMemory(near(target, 2), {})])
    rv.consolidate()
    first_merge = merged_point(rv).id
    rv.write([NewMemory(near(target, 3), {})])
    rv.consolidate()
    second = merged_point(rv)
    assert second.id != first_merge and p.meta(second.payload)["weight"] == 3
    assert calls == []
    archived = rv.store.retrieve(rv.archive, [first_merge])[0]
    assert "inversion" not in p.meta(archived.payload)
    assert rv.text(second).text == SENTENCES[1] and calls == [1]


def test_the_job_inverts_settled_points_within_its_budget(lazy_rv: Reverie, embedder) -> None:
    rv, calls = lazy_rv
    vectors = embedder.encode(SENTENCES[:3])
    rv.write([NewMemory(near(v, s), {}) for v in vectors for s in (1, 2)])
    rv.consolidate()
    rv.settings.inversion.settle_seconds = 3600
    assert rv.inversion.invert_pending() == {"inverted": 0, "pending": 3}  # too young: may merge again
    rv.settings.inversion.settle_seconds = 0
    rv.settings.inversion.per_tick = 2
    assert rv.inversion.invert_pending() == {"inverted": 2, "pending": 1}
    assert rv.inversion.invert_pending() == {"inverted": 1, "pending": 0}
    texts = sorted(cached_text(r, rv.layout).text for r in rv.live_records())
    assert texts == sorted(SENTENCES[:3])


def test_an_inverter_for_another_embedder_is_refused_per_memory(lazy_rv: Reverie, embedder) -> None:
    rv, calls = lazy_rv
    target = embedder.encode([SENTENCES[0]])[0]
    rv.write([NewMemory(near(target, s), {}, embedder="sentence-transformers/gtr-t5-base") for s in (1, 2)])
    rv.consolidate()
    with pytest.raises(InverterError, match="embedded with 'sentence-transformers/gtr-t5-base'"):
        rv.text(merged_point(rv))


def test_without_an_inverter_a_merged_point_shows_a_marked_label(rv: Reverie) -> None:
    texts = ["The user prefers green tea in the morning.", "In the morning the user likes green tea."]
    rv.remember(texts)
    rv.consolidate()
    merged = merged_point(rv)
    assert p.meta(merged.payload)["embedder"] == "sentence-transformers/all-MiniLM-L6-v2"
    label = rv.text(merged)
    assert label.source == "label" and label.text in texts and label.fidelity > 0.9
    assert "not an inversion" in label.shown()
    assert merged.payload["text"] == label.text, "the label is in the writer's text field"
    assert cached_text(merged, rv.layout) == label, "search results show the same text as a read"


def reverie(data_dir: Path, *args: str) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, "-m", "reverie.cli", "--data-dir", str(data_dir), *args]
    return subprocess.run(command, capture_output=True, text=True, timeout=300)


def test_inverter_cli_trains_and_evaluates(inverter_dir: Path, tmp_path: Path) -> None:
    data = tmp_path / "sentences.txt"
    data.write_text("\n".join(SENTENCES) + "\n")
    evaluated = reverie(
        tmp_path,
        "inverter",
        "eval",
        "--model",
        str(inverter_dir),
        "--data",
        str(data),
        "--beam-width",
        "2",
        "--json",
    )
    assert evaluated.returncode == 0, evaluated.stderr
    rows = json.loads(evaluated.stdout)["sentences"]
    assert [(r["steps"], r["beam_width"]) for r in rows] == [(0, 1), (0, 2)]
    assert rows[0]["exact_match"] == 1.0 and rows[0]["token_f1"] == 1.0 and rows[0]["bleu"] == 100.0
    small = ["--max-steps", "2", "--d-model", "32", "--layers", "1", "--vocab-size", "280"]
    out = tmp_path / "cli-run"
    trained = reverie(
        tmp_path, "inverter", "train", "--corpus", str(data), "--out", str(out), "--holdout", "2", *small
    )
    assert trained.returncode == 0, trained.stderr
    assert "trained 2 steps" in trained.stdout
    assert (out / "holdout.txt").read_text().count("\n") == 2
    (tmp_path / "empty.txt").write_text("")
    failed = reverie(
        tmp_path, "inverter", "train", "--corpus", str(tmp_path / "empty.txt"), "--out", str(out)
    )
    assert failed.returncode == 1 and "holds no sentences" in failed.stderr


def test_the_daemon_inverts_on_read_and_on_its_schedule(lazy_rv, embedder) -> None:
    from reverie.daemon.api import create_app
    from reverie.daemon.scheduler import start_scheduler
    from reverie.daemon.service import Service

    from helpers import running

    rv, _ = lazy_rv  # the service counts inversions in its metrics instead
    rv.settings.scheduler.invert_every = 1
    vectors = embedder.encode(SENTENCES[:2])
    rv.write([NewMemory(near(v, s), {}) for v in vectors for s in (1, 2)])
    rv.consolidate()
    service = Service(rv)
    service.load_models_in_background().join()
    assert service.models == {"embedder": "loaded", "inverter": "loaded"}
    scheduler = start_scheduler(service, rv.settings.scheduler)
    scheduler.pause_job("invert")
    with running(create_app(service, scheduler)) as api:
        assert "invert" in {j["id"] for j in api.get("/jobs").json()["jobs"]}
        merged = [
            h["id"] for h in api.post("/search", json={"vector": vectors[0].tolist(), "k": 2}).json()["hits"]
        ]
        pending = api.get(f"/memories/{merged[1]}").json()  # the other sentence's merge: read on demand
        assert pending["text_source"] == "inversion" and pending["text"] in SENTENCES[:2]
        assert pending["fidelity"] > 0.99 and pending["inverter"].startswith("model@")
        assert api.get("/stats").json()["pending_text"] == 1
        scheduler.resume_job("invert")
        deadline = time.monotonic() + 20
        while api.get("/stats").json()["pending_text"] and time.monotonic() < deadline:
            time.sleep(0.2)
        assert api.get("/stats").json()["inverted_text"] == 2
        metrics = api.get("/metrics").text
        assert "reverie_inverted_points_total 2.0" in metrics
        assert "reverie_inversion_seconds_per_point_count 2.0" in metrics
        assert api.get("/readyz").json()["models"]["inverter"] == "loaded"
    scheduler.shutdown(wait=True)


def test_training_resumes_from_its_last_checkpoint_and_names_a_corrupt_one(tmp_path: Path) -> None:
    corpus = tmp_path / "corpus.txt"
    corpus.write_text("\n".join(SENTENCES) + "\n")
    options = tiny_options(
        corpus, tmp_path / "run", holdout=1, max_steps=2, save_every=2, d_model=32, d_ff=64
    )
    assert train(options)["resumed_from"] is None
    options.max_steps = 4
    resumed = train(options)
    assert resumed["resumed_from"] == "checkpoint-2" and resumed["steps"] == 4
    latest = tmp_path / "run" / "checkpoints" / "checkpoint-4"
    for weights in latest.glob("*.bin"):
        weights.write_bytes(b"not a checkpoint")
    options.max_steps = 6
    with pytest.raises(InverterError, match="cannot resume from .*checkpoint-4"):
        train(options)


def test_the_gtr_base_corrector_path_refuses_other_embedders_and_names_what_is_missing(
    embedder, tmp_path: Path
) -> None:
    from reverie.inversion.embedders import Embedder

    with pytest.raises(InverterError, match="inverts sentence-transformers/gtr-t5-base embeddings only"):
        open_inverter("gtr-base", embedder, steps=5)
    (tmp_path / "corrector").mkdir()
    gtr = Embedder("sentence-transformers/gtr-t5-base")  # never loaded: the models fail first
    with pytest.raises(InverterError, match="cannot load vec2text's gtr-base corrector"):
        open_inverter(str(tmp_path), gtr, steps=5)
    assert not (Path.cwd() / "tmp_trainer").exists()
