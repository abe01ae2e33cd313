"""bench/inverter_corpus.py: the npm corpora read as plain sentences, the Bible left out."""

from __future__ import annotations

import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "bench"))

from inverter_corpus import brown, nlp_corpus  # noqa: E402


def test_brown_sentences_read_as_a_person_writes_them_without_scripture(tmp_path: Path) -> None:
    (tmp_path / "ca01").write_text(
        "\n\n\tThe/at jury/nn said/vbd it/pps did/dod n't/* find/vb ``/`` no/at evidence/nn ''/'' ,/, "
        "and/cc the/at city's/nn$ clerk/nn agreed/vbd ./.\n\n"
        "\tMerger/nn-hl proposed/vbn-hl\n\n"
        "\tHe/pps said/vbd ``/`` we/ppss will/md go/vb ./.\n\n"
        "\tThey/ppss thanked/vbd God/np for/in the/at rain/nn ./.\n"
    )
    (tmp_path / "cd01").write_text("\tSpirit/nn is/bez real/jj ./.\n")  # religion: left out

    assert list(brown(tmp_path)) == [
        "The jury said it didn't find \"no evidence\", and the city's clerk agreed."
    ]


def test_nlp_corpus_sentences_in_document_order_without_scripture(tmp_path: Path) -> None:
    builds = tmp_path / "builds"
    builds.mkdir()
    (builds / "doc-10.json").write_text(json.dumps(["Last one."]))
    (builds / "doc-2.json").write_text(
        json.dumps(["Monica, you broke up  with him\nfor a reason.", "The Lord is my shepherd."])
    )

    assert list(nlp_corpus(tmp_path)) == ["Monica, you broke up with him for a reason.", "Last one."]
