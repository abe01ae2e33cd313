"""The `reverie` command as users run it (in-process, on the embedded default store)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from reverie.cli import main
from reverie.config import Settings
from reverie.memory import Reverie
from reverie.storage import payload as p

PARAPHRASES = [
    "The user prefers tea over coffee",
    "The user likes tea more than coffee",
    "Tea, not coffee, is what the user prefers",
    "The weekly meeting is on Tuesday at 10am",
    "Paris is the capital of France",
]


@pytest.fixture
def cli(tmp_path: Path, capsys: pytest.CaptureFixture[str], embedder: object):
    """Run `reverie --data-dir DIR ARGS...`; return (exit code, stdout, stderr)."""

    def run(*args: str) -> tuple[int, str, str]:
        code = main(["--data-dir", str(tmp_path / "data"), *args])
        out, err = capsys.readouterr()
        return code, out, err

    return run


def test_remember_consolidate_review_undo(cli, tmp_path: Path) -> None:
    notes = tmp_path / "notes.txt"
    notes.write_text("\n".join(PARAPHRASES[1:]) + "\n\n")
    assert cli("remember", PARAPHRASES[0])[0] == 0
    code, out, _ = cli("remember", "--file", str(notes), "-p", "user_id=u1")
    assert code == 0 and "remembered 4 memories" in out
    code, out, _ = cli("consolidate", "--dry-run")
    assert "dry run: nothing changed" in out and "would merge" in out
    assert json.loads(cli("stats", "--json")[1])["live"] == 5
    # the user_id partition keeps the first memory apart from the others
    code, out, _ = cli("consolidate", "--json")
    report = json.loads(out)
    assert report["merges"] and report["points_before"] == 5
    merge = report["merges"][0]
    assert {m["text"] for m in merge["members"]} <= set(PARAPHRASES[1:3])
    code, out, _ = cli("runs")
    assert report["run_id"] in out and "consolidate" in out
    code, out, _ = cli("runs", "show", report["run_id"])
    assert merge["merge_id"] in out and "The user likes tea more than coffee" in out
    code, out, _ = cli("recall", "what does the user drink", "-k", "2", "-p", "user_id=u1")
    # a merged memory reads as its label in search results too, saying it is one
    assert "[label: closest member text" in out and "weight 2" in out
    code, out_show, _ = cli("show", merge["merge_id"])
    assert "merged from 2" in out_show
    assert "[inverted from its members, fidelity" in out_show or "[label:" in out_show
    member = merge["members"][0]["id"]
    code, out, _ = cli("show", str(member))
    assert "archived" in out and merge["merge_id"] in out
    stats = json.loads(cli("stats", "--json")[1])
    # `show` read the merged memory back with the builtin inverter: what it found is cached now
    assert stats["merged"] == 1 and stats["archived"] == 2 and stats["text_backlog"] == 0
    shown_as = "labelled_text" if "[label:" in out_show else "inverted_text"
    assert stats[shown_as] == 1, "the stored source says what `show` said"
    code, out, _ = cli("undo", report["run_id"])
    assert code == 0 and "restored 2 memories" in out
    assert json.loads(cli("stats", "--json")[1])["live"] == 5
    code, _, err = cli("undo", report["run_id"])
    assert code == 1 and "no applied merges left" in err


def test_import_jsonl_and_npy(cli, tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    base = rng.normal(size=8)
    jsonl = tmp_path / "v.jsonl"
    vectors = base + rng.normal(scale=0.01, size=(3, 8))
    rows = [{"id": i, "vector": v.tolist(), "note": i} for i, v in enumerate(vectors)]
    jsonl.write_text("\n".join(json.dumps(r) for r in rows))
    code, out, _ = cli("import", str(jsonl), "-p", "agent_id=a1")
    assert code == 0 and "imported 3" in out
    matrix = tmp_path / "v.npy"
    np.save(matrix, np.eye(2, 8, dtype=np.float32))  # two unrelated memories
    payloads = tmp_path / "p.jsonl"
    payloads.write_text('{"text": "one"}\n{"id": "0b6f0d6e-8a57-4a1c-9a43-5b7c5d4b9f10", "text": "two"}\n')
    assert cli("import", str(matrix), "--payloads", str(payloads))[0] == 0
    assert json.loads(cli("stats", "--json")[1])["fresh"] == 5
    code, out, _ = cli("consolidate", "--json")
    assert json.loads(out)["points_after"] == 3


def test_import_sets_the_partition_at_the_layouts_path(cli, tmp_path: Path, monkeypatch) -> None:
    """LangChain keeps tenant keys inside `metadata`: `-p user_id=u1` lands there, not in a
    top-level key named "metadata.user_id"."""
    monkeypatch.setenv("REVERIE_STORAGE__LAYOUT", "langchain")
    row = {"id": 5, "vector": [1.0] + [0.0] * 7, "payload": {"page_content": "tea", "metadata": {"s": 1}}}
    (tmp_path / "lc.jsonl").write_text(json.dumps(row) + "\n")
    assert cli("import", str(tmp_path / "lc.jsonl"), "-p", "user_id=u1")[0] == 0
    settings = Settings()
    settings.storage.data_dir = tmp_path / "data"
    with Reverie.open(settings) as rv:
        (stored,) = rv.store.retrieve(rv.collection, [5])
    assert p.agent_payload(stored.payload) == {"page_content": "tea", "metadata": {"s": 1, "user_id": "u1"}}


@pytest.mark.parametrize(
    ("content", "args", "message"),
    [
        (None, [], "cannot read"),
        ('{"vector": [1, 2]}\nnot json\n', [], ":2: not valid JSON"),
        ('{"vectr": [1, 2]}\n', [], ':1: expected an object with a "vector" key'),
        ('{"vector": [1, 2]}\n{"vector": [1, 2, 3]}\n', [], "memory 1: wrong dimension: expected 2, got 3"),
        ('{"vector": [0, 0]}\n', [], "zero vector"),
        ('{"vector": [1, "NaN"]}\n', [], "NaN"),
        ('{"vector": [1, 2]}\n', ["-p", "team=x"], "'team' is not a partition key"),
    ],
)
def test_import_errors_name_the_problem_and_write_nothing(cli, tmp_path, content, args, message) -> None:
    path = tmp_path / "in.jsonl"
    if content is not None:
        path.write_text(content)
    code, _, err = cli("import", str(path), *args)
    assert code == 1 and message in err
    assert json.loads(cli("stats", "--json")[1])["live"] == 0


def test_bad_input_errors(cli, tmp_path: Path) -> None:
    assert "empty text" in cli("remember", "  ")[2]
    assert "nothing to remember" in cli("remember")[2]
    empty = tmp_path / "empty.txt"
    empty.write_text("\n\n")
    assert "holds no text" in cli("remember", "--file", str(empty))[2]
    assert "cannot read" in cli("remember", "--file", str(tmp_path / "missing.txt"))[2]
    assert "expected KEY=VALUE" in cli("remember", "x", "-p", "user_id")[2]
    assert "unknown run id" in cli("runs", "show", "r-nope")[2]
    assert "unknown run or merge id" in cli("undo", "whatever")[2]
    assert "write memories first" in cli("consolidate")[2]
    assert "unknown memory id" in cli("show", "42")[2]
    code, _, err = cli("--config", str(tmp_path / "nope.toml"), "stats")
    assert code == 1 and "config file not found" in err


def test_config_show_and_env(cli, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("REVERIE_CONSOLIDATION__THRESHOLD", "0.91")
    code, out, _ = cli("config", "show")
    assert code == 0 and "threshold = 0.91" in out and "[storage]" in out
    monkeypatch.setenv("REVERIE_CONSOLIDATION__THRESHOLD", "2")
    code, _, err = cli("config", "show")
    assert code == 1 and "consolidation.threshold" in err and "REVERIE_CONSOLIDATION__THRESHOLD" in err


def test_demo_runs_offline_and_explains_itself(cli) -> None:
    code, out, _ = cli("demo")
    assert code == 0
    assert "before: 72 memories" in out and "-> 1" in out
    assert "nothing was deleted" in out


def test_light_commands_do_not_import_heavy_modules(tmp_path: Path) -> None:
    code = (
        "import sys; from reverie.cli import main; "
        f"main(['--data-dir', {str(tmp_path)!r}, 'runs']); "
        "heavy = [m for m in ('torch', 'transformers', 'vec2text', 'sentence_transformers', 'sklearn') "
        "if m in sys.modules]; print(heavy)"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip().endswith("[]")
    assert "no runs yet" in result.stdout


def test_output_piped_into_head_stops_quietly(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    read_end, write_end = os.pipe()
    os.close(read_end)  # the reader (`head`) is gone

    class ClosedPipe:
        def write(self, text: str) -> int:
            raise BrokenPipeError(32, "Broken pipe")

        def flush(self) -> None:
            pass

        def fileno(self) -> int:
            return write_end

    monkeypatch.setattr(sys, "stdout", ClosedPipe())
    assert main(["--data-dir", str(tmp_path), "config", "show"]) == 0
    os.close(write_end)
