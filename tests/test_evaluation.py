"""`reverie eval consolidation` on a small labelled file built from the demo sample."""

from __future__ import annotations

import json
from collections import defaultdict
from pathlib import Path

import pytest

from reverie.cli import main
from reverie.demo import sample
from reverie.evaluation.consolidation import load_dataset, pair_scores


@pytest.fixture
def labelled(tmp_path: Path) -> Path:
    groups: dict[str, dict[str, str]] = defaultdict(dict)
    for row in sample():
        groups[row["verse"]][row["translation"]] = row["text"]
    path = tmp_path / "groups.jsonl"
    path.write_text("\n".join(json.dumps({"group": g, "texts": t}) for g, t in groups.items()))
    return path


def testpair_scores_count_identical_texts_as_true_duplicates(labelled: Path) -> None:
    data = load_dataset(labelled, limit=2, query_variant=None)
    assert data.memory_variants == ["web", "kjv"] and data.query_variant == "asv"
    perfect = [[0, 1], [2, 3]]
    assert pair_scores(perfect, data) == (1.0, 1.0, 1.0)
    assert pair_scores([[0], [1], [2], [3]], data) == (1.0, 0.0, 0.0)
    precision, recall, _ = pair_scores([[0, 1, 2, 3]], data)
    assert precision == pytest.approx(2 / 6) and recall == 1.0


def test_eval_reports_quality_and_retrieval(labelled: Path, tmp_path: Path, capsys, embedder) -> None:
    args = ["--data-dir", str(tmp_path / "d"), "eval", "consolidation", "--data", str(labelled)]
    assert main([*args, "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["groups"] == 24 and result["memories"] == 48
    assert 0.5 < result["precision"] <= 1 and 0.3 < result["recall"] <= 1
    assert result["points_after"] < result["points_before"] == 48
    assert result["recall_at_1_after"] >= 0.5 and result["recall_at_5_after"] >= result["recall_at_1_after"]
    out_dir = tmp_path / "docs"
    sweep = [
        *args,
        "--algorithm",
        "dbscan",
        "--algorithm",
        "agglomerative-average",
        "--threshold",
        "0.8",
        "--threshold",
        "0.9",
        "--write",
        str(out_dir),
    ]
    assert main(sweep) == 0
    table = capsys.readouterr().out
    assert table.count("dbscan") == 2 and table.count("agglomerative-average") == 2
    assert (out_dir / "consolidation-pr.png").stat().st_size > 10_000
    assert len(json.loads((out_dir / "consolidation-eval.json").read_text())) == 4


def test_eval_input_errors(tmp_path: Path, capsys) -> None:
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"no": "texts"}\n')
    assert main(["--data-dir", str(tmp_path), "eval", "consolidation", "--data", str(bad)]) == 1
    assert "bad.jsonl line 1: expected" in capsys.readouterr().err
    assert main(["eval", "consolidation", "--data", str(tmp_path / "missing.jsonl")]) == 1
    assert "cannot read" in capsys.readouterr().err


def test_transitive_truth_joins_verses_that_share_a_text(tmp_path: Path) -> None:
    from reverie.evaluation.consolidation import _transitive_scores, pair_scores

    path = tmp_path / "g.jsonl"
    rows = [
        {
            "group": "a",
            "texts": {"x": "The LORD spake unto Moses, saying", "y": "Yahweh spoke to Moses", "q": "."},
        },
        {"group": "b", "texts": {"x": "The LORD spake unto Moses, saying", "y": "God told Moses", "q": "."}},
    ]
    path.write_text("\n".join(json.dumps(r) for r in rows))
    data = load_dataset(path, None, None)
    everything = [[0, 1, 2, 3]]  # all four: one thought through the shared KJV text
    assert _transitive_scores(everything, data) == (1.0, 1.0, 1.0)
    precision, recall, _ = pair_scores(everything, data)
    assert recall == 1.0 and precision == pytest.approx(3 / 6)


def test_groups_with_an_empty_variant_are_left_out_and_counted(
    labelled: Path, tmp_path: Path, capsys
) -> None:
    """A verse one translation omits: the evaluation goes on without it and says so."""
    lines = labelled.read_text().splitlines()
    row = json.loads(lines[2])
    row["texts"]["kjv"] = ""
    lines[2] = json.dumps(row)
    partial = tmp_path / "partial.jsonl"
    partial.write_text("\n".join(lines))
    data = load_dataset(partial, limit=None, query_variant=None)
    assert len(data.groups) == 23 and data.skipped == [f"line 3 (group {row['group']}): no text for kjv"]
    args = ["--data-dir", str(tmp_path / "d"), "eval", "consolidation", "--data", str(partial)]
    assert main(args) == 0
    assert "1 group(s) left out for a missing or empty variant, e.g. line 3" in capsys.readouterr().out
    lines[5] = "{not json"
    partial.write_text("\n".join(lines))
    assert main(args) == 1
    assert "partial.jsonl line 6: not JSON" in capsys.readouterr().err
