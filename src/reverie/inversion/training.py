"""`reverie inverter train`: teach the projections (conditioning.py) to read embeddings.

Two phases, both resumable (`checkpoint.pt` in the run directory holds the weights, the
optimizer, the phase and the position; a rerun with the same `--out` continues), both
under one wall-clock budget:
1. words (minutes): which of the LM's tokens a sentence holds, from its embedding
   (multi-label, every training sentence each epoch);
2. prefix (hours, optional: `--prefix-len`): input vectors for the LM and LoRA adapters
   in it, by the LM's own loss on the sentence (vec2text's decoder-only inverter).
The corpus is embedded once (cached in the run directory); held-out sentences are written
to `holdout.txt` and never trained on; the training sentences go with the model as its
phrasebook (phrasebook.py) unless `--no-phrasebook`, or only those of the files named by
`--phrasebook-from` (text that may train weights but should not ship word for word).
`--start-from` begins with a trained model's weights (the builtin's, or another run's)
instead of fresh ones. The model
(`model/`) is exported at every checkpoint, so the latest weights are usable while training
goes on; the prefix phase logs held-out loss to `train-log.jsonl` and keeps an hourly copy
under `snapshots/`.
"""

from __future__ import annotations

import json
import math
import pickle
import random
import shutil
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import structlog
import torch
from tqdm import tqdm

from reverie.errors import InvalidInputError, InverterError
from reverie.inversion.base_lm import SMOLLM2, BaseLM, load_base_lm
from reverie.inversion.conditioning import Conditioner, Shape, read_meta, read_weights, save
from reverie.inversion.corpus import Corpus, load_corpus
from reverie.inversion.embedders import Embedder, embedder_id
from reverie.inversion.inverter import trained_model_dir
from reverie.inversion.phrasebook import drop_phrasebook, save_phrasebook

log = structlog.get_logger("reverie.inverter")

CHECKPOINT = "checkpoint.pt"
POSITIVE_WEIGHT = 5.0  # a sentence holds a few dozen of 49,152 tokens: count each one more


@dataclass
class TrainOptions:
    corpus: list[Path]
    out: Path
    embedder: str = "sentence-transformers/all-MiniLM-L6-v2"
    base_lm: str = SMOLLM2
    model_cache: Path | None = None  # where the base LM is converted (inversion.model_cache)
    holdout: int = 1000
    seed: int = 0
    limit: int | None = None
    max_minutes: float | None = None
    max_tokens: int = 40
    hidden: int = 1024
    word_rank: int = 64
    word_epochs: int = 3
    word_batch: int = 512
    word_lr: float = 1e-3
    prefix_len: int = 0
    lora_rank: int = 8
    prefix_steps: int = 1_000_000
    prefix_batch: int = 32
    prefix_lr: float = 5e-4
    warmup_steps: int = 200
    save_minutes: float = 10.0
    snapshot_minutes: float = 60.0
    eval_every: int = 200
    eval_sentences: int = 256
    phrasebook: bool = True  # the training sentences go with the model (phrasebook.py)
    phrasebook_from: list[Path] | None = None  # only these corpus files' sentences do (None: all)
    start_from: str | None = None  # a trained model whose weights start the run: "builtin" or a directory
    progress: bool = True

    def check(self) -> None:
        for name in ("word_epochs", "word_batch", "prefix_batch", "hidden", "max_tokens"):
            if getattr(self, name) < 1:
                raise InvalidInputError(f"{name.replace('_', '-')} must be at least 1")
        if self.prefix_len < 0 or self.word_rank < 0:
            raise InvalidInputError("prefix-len and word-rank cannot be negative")
        given = {path.resolve() for path in self.corpus}
        for path in self.phrasebook_from or ():
            if path.resolve() not in given:
                raise InvalidInputError(f"--phrasebook-from {path}: not one of the --corpus files")

    def phrasebook_rows(self, corpus: Corpus) -> np.ndarray:
        """The training sentences (their rows) that go into the phrasebook."""
        if not self.phrasebook:
            return np.zeros(0, dtype=int)
        if self.phrasebook_from is None:
            return np.arange(len(corpus.train))
        named = {path.resolve() for path in self.phrasebook_from}
        chosen = [i for i, path in enumerate(self.corpus) if path.resolve() in named]
        return np.flatnonzero(np.isin(corpus.origins, chosen))


@dataclass
class _Position:
    phase: str = "words"  # "words", then "prefix", then "done"
    epoch: int = 0  # words: epochs finished
    step: int = 0  # prefix: steps taken
    seconds: float = 0.0  # training time over every session of this run


class _Run:
    """One training run in its directory: the model, the data, the clock, the checkpoints."""

    def __init__(self, o: TrainOptions) -> None:
        o.check()
        self.o = o
        start = None if o.start_from is None else _start_model(o.start_from)  # before the embedding
        o.out.mkdir(parents=True, exist_ok=True)
        corpus = load_corpus(o.corpus, o.holdout, o.seed, o.limit)
        (o.out / "holdout.txt").write_text("\n".join(corpus.held_out) + "\n")
        embedder = Embedder(o.embedder)
        log.info("inverter.embedding", sentences=len(corpus.train), embedder=o.embedder)
        self.vectors = embed_cached(embedder, corpus.train, o.out / "train-embeddings.npy", o.progress)
        phrasebook = o.phrasebook_rows(corpus)
        if len(phrasebook):
            save_phrasebook(o.out / "model", [corpus.train[i] for i in phrasebook], self.vectors[phrasebook])
        else:
            drop_phrasebook(o.out / "model")
        held = corpus.held_out[: o.eval_sentences]
        self.held_vectors = embed_cached(embedder, held, o.out / "holdout-embeddings.npy", False)
        self.lm = load_base_lm(o.base_lm, o.model_cache)
        self.encoded = [_token_ids(self.lm, t, o.max_tokens) for t in corpus.train]
        self.held = [_token_ids(self.lm, t, o.max_tokens) for t in held]
        shape = Shape(embedder.dimension, o.hidden, o.word_rank, o.prefix_len, o.lora_rank)
        torch.manual_seed(o.seed)  # the projections' first weights: a run is repeatable
        self.model = Conditioner(self.lm, shape)
        self.meta = {
            "embedder": embedder_id(embedder.model_name),
            "dimension": embedder.dimension,
            "base_lm": self.lm.id,
            "corpus": [str(c) for c in o.corpus],
            "sentences": len(corpus.train),
            "phrasebook": len(phrasebook),
            "options": asdict(o),
        }
        if start is not None:
            self.meta["started_from"] = self._start_from(o.start_from, *start, shape)
        self.position, self.optimizer_state = self._resume()
        self.deadline = None if o.max_minutes is None else time.monotonic() + 60 * o.max_minutes
        self.started, self.base_seconds = time.monotonic(), self.position.seconds
        self.last_save = self.last_snapshot = time.monotonic()

    def out_of_time(self) -> bool:
        return self.deadline is not None and time.monotonic() >= self.deadline

    def tick(self) -> None:
        self.position.seconds = self.base_seconds + time.monotonic() - self.started

    def checkpoint(self, optimizer: torch.optim.Optimizer | None, force: bool = False) -> None:
        """Weights, optimizer and position atomically, then the usable export; every
        `save_minutes` (or now, with `force`)."""
        if not force and time.monotonic() - self.last_save < 60 * self.o.save_minutes:
            return
        state = {
            "model": self.model.trainable_state(),
            "optimizer": None if optimizer is None else optimizer.state_dict(),
            **asdict(self.position),
        }
        torch.save(state, self.o.out / f"{CHECKPOINT}.tmp")
        (self.o.out / f"{CHECKPOINT}.tmp").replace(self.o.out / CHECKPOINT)
        p = self.position
        trained = {"word_epochs": p.epoch, "prefix_steps": p.step, "train_hours": round(p.seconds / 3600, 3)}
        save(self.model, self.o.out / "model", {**self.meta, **trained})
        self.last_save = time.monotonic()
        log.info(
            "inverter.checkpoint", phase=p.phase, epoch=p.epoch, step=p.step, hours=trained["train_hours"]
        )

    def snapshot(self, force: bool = False) -> None:
        """A copy of the model every word epoch and every hour of the prefix phase: the curve
        of quality against training hours."""
        if not force and time.monotonic() - self.last_snapshot < 60 * self.o.snapshot_minutes:
            return
        target = (
            self.o.out / "snapshots" / f"{self.position.phase}-{self.position.epoch}-{self.position.step:07d}"
        )
        if not target.exists():
            shutil.copytree(self.o.out / "model", target)
        self.last_snapshot = time.monotonic()

    def _start_from(
        self, source: str, directory: Path, theirs: dict[str, Any], shape: Shape
    ) -> dict[str, Any]:
        """Load a trained model's weights as the run's first weights (a checkpoint, when the
        run resumes, replaces them); what it was, for the model's description. A model made
        for another embedder, LM or shape is refused: its weights would read nothing."""
        made = Shape(**theirs["shape"])
        fits = ["embed_dim", "hidden", "word_rank"] + (["prefix_len", "lora_rank"] if made.prefix_len else [])
        wrong = [
            f"{k} {getattr(made, k)} (this run: {getattr(shape, k)})"
            for k in fits
            if getattr(made, k) != getattr(shape, k)
        ]
        wrong += [
            f"{k} {theirs.get(k)!r} (this run: {self.meta[k]!r})"
            for k in ("embedder", "base_lm")
            if theirs.get(k) != self.meta[k]
        ]
        if wrong:
            raise InvalidInputError(
                f"--start-from {source}: that model does not fit this run: {'; '.join(wrong)}"
            )
        self.model.load_trainable(read_weights(directory), grown=shape.prefix_len > made.prefix_len)
        return {
            "model": source,
            **{k: theirs.get(k) for k in ("sentences", "word_epochs", "prefix_steps", "train_hours")},
        }

    def _resume(self) -> tuple[_Position, dict[str, Any] | None]:
        path = self.o.out / CHECKPOINT
        if not path.exists():
            return _Position(), None
        try:
            state = torch.load(path, weights_only=True)
            self.model.load_trainable(state["model"], grown=self.o.prefix_len > 0)
        except (OSError, RuntimeError, KeyError, ValueError, InverterError, pickle.UnpicklingError) as exc:
            raise InverterError(
                f"cannot resume from {path}: {str(exc)[:200]}; move it away to start the run over"
            ) from None
        position = _Position(state["phase"], state["epoch"], state["step"], state["seconds"])
        phase = self._phase(position)  # more epochs or steps asked for than were trained: go on
        log.info("inverter.resuming", checkpoint=str(path), **asdict(position), now=phase)
        optimizer = state["optimizer"] if phase == position.phase else None
        position.phase = phase
        return position, optimizer

    def _phase(self, position: _Position) -> str:
        o = self.o
        if position.epoch < o.word_epochs:
            return "words"
        return "prefix" if o.prefix_len and position.step < o.prefix_steps else "done"


def _start_model(source: str) -> tuple[Path, dict[str, Any]]:
    """The directory and description of the model `--start-from` names, read before the
    corpus is embedded (up to an hour), so that a wrong name fails at once."""
    directory = trained_model_dir(source)
    try:
        return directory, read_meta(directory)
    except InverterError as exc:
        raise InvalidInputError(f"--start-from {source}: {exc}") from None


def train(options: TrainOptions) -> dict[str, Any]:
    """Train, or resume the run in `options.out`; returns the saved model's description."""
    run = _Run(options)
    if run.position.phase == "words":
        _train_words(run)
    if run.position.phase == "prefix":
        _train_prefix(run)
    run.checkpoint(None, force=True)
    return json.loads((options.out / "model" / "inverter.json").read_text())


def _optimizer(run: _Run, params: list[torch.nn.Parameter], lr: float) -> torch.optim.AdamW:
    """AdamW over a phase's parameters, resumed from the checkpoint's state when there is one."""
    optimizer = torch.optim.AdamW(params, lr=lr, weight_decay=0.0)
    if run.optimizer_state is not None:
        optimizer.load_state_dict(run.optimizer_state)
    return optimizer


def _train_words(run: _Run) -> None:
    o, model = run.o, run.model
    params = model.word_parameters()
    optimizer = _optimizer(run, params, o.word_lr)
    present = [sorted(set(ids)) for ids in run.encoded]
    vocab = int(run.lm.model.config.vocab_size)
    weight = torch.tensor(POSITIVE_WEIGHT)
    total = o.word_epochs * math.ceil(len(present) / o.word_batch)
    done = run.position.epoch * math.ceil(len(present) / o.word_batch)
    bar = tqdm(total=total, initial=done, desc="words", disable=not o.progress)
    while run.position.epoch < o.word_epochs and not run.out_of_time():
        order = np.random.default_rng(o.seed + run.position.epoch).permutation(len(present))
        running = None
        for start in range(0, len(order), o.word_batch):
            rows = order[start : start + o.word_batch]
            target = torch.zeros(len(rows), vocab)
            for r, i in enumerate(rows):
                target[r, present[i]] = 1.0
            logits = model.token_logits(torch.from_numpy(run.vectors[rows]))
            loss = torch.nn.functional.binary_cross_entropy_with_logits(logits, target, pos_weight=weight)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            running = loss.item() if running is None else 0.98 * running + 0.02 * loss.item()
            bar.update(1)
            bar.set_postfix(loss=f"{running:.4f}")
            if run.out_of_time():  # an unfinished epoch is trained again when resumed
                break
        else:
            run.position.epoch += 1
            run.tick()
            run.checkpoint(optimizer, force=True)
            run.snapshot(force=True)
            log.info("inverter.words_epoch", epoch=run.position.epoch, loss=round(running or 0.0, 5))
    bar.close()
    if run.position.epoch >= o.word_epochs:
        run.position.phase = run._phase(run.position)
        run.optimizer_state = None


def _train_prefix(run: _Run) -> None:
    o, model = run.o, run.model
    params = model.prefix_parameters()
    optimizer = _optimizer(run, params, o.prefix_lr)
    order = _batches(run.encoded, o.prefix_batch, o.seed)
    pad = run.lm.stop_ids[-1]
    bar = tqdm(total=o.prefix_steps, initial=run.position.step, desc="prefix", disable=not o.progress)
    running: float | None = None
    model.train()
    while run.position.step < o.prefix_steps and not run.out_of_time():
        batch = order[run.position.step % len(order)]
        for group in optimizer.param_groups:
            group["lr"] = o.prefix_lr * min(1.0, (run.position.step + 1) / o.warmup_steps)
        ids, mask = _padded([run.encoded[i] for i in batch], pad)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            loss = model.prefix_loss(torch.from_numpy(run.vectors[batch]), ids, mask)
        if not math.isfinite(loss.item()):
            raise InverterError(f"training diverged at step {run.position.step} (loss {loss.item()})")
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        optimizer.step()
        run.position.step += 1
        run.tick()
        running = loss.item() if running is None else 0.98 * running + 0.02 * loss.item()
        bar.update(1)
        bar.set_postfix(loss=f"{running:.3f}")
        if run.position.step % o.eval_every == 0:
            _log_line(run, running, _held_out_loss(run))
        run.checkpoint(optimizer)
        run.snapshot()
    bar.close()
    model.eval()
    if run.position.step >= o.prefix_steps:
        run.position.phase = "done"


def embed_cached(embedder: Embedder, texts: list[str], path: Path, progress: bool) -> np.ndarray:
    """Embeddings of `texts`, computed once per run directory."""
    if path.exists():
        cached = np.load(path)
        if cached.shape[0] == len(texts):
            return cached
    vectors = embedder.encode(texts, progress=progress)
    np.save(path, vectors)
    return vectors


def _token_ids(lm: BaseLM, text: str, max_tokens: int) -> list[int]:
    """The sentence's tokens, cut to `max_tokens`, then the stop token the LM ends on."""
    return lm.encode(text)[:max_tokens] + [lm.stop_ids[-1]]


def _batches(encoded: list[list[int]], batch_size: int, seed: int) -> list[np.ndarray]:
    """Batches of sentences of similar length (little padding), in a seeded order: a
    resumed run continues the same sequence of batches."""
    rng = random.Random(seed)
    by_length = sorted(range(len(encoded)), key=lambda i: (len(encoded[i]), rng.random()))
    batches = [np.asarray(by_length[i : i + batch_size]) for i in range(0, len(by_length), batch_size)]
    rng.shuffle(batches)
    return batches


def _padded(sequences: list[list[int]], pad: int) -> tuple[torch.Tensor, torch.Tensor]:
    width = max(len(s) for s in sequences)
    ids = torch.full((len(sequences), width), pad, dtype=torch.long)
    mask = torch.zeros((len(sequences), width), dtype=torch.long)
    for row, seq in enumerate(sequences):
        ids[row, : len(seq)] = torch.tensor(seq)
        mask[row, : len(seq)] = 1
    return ids, mask


def _held_out_loss(run: _Run) -> float:
    model, pad, size = run.model, run.lm.stop_ids[-1], run.o.prefix_batch
    model.eval()
    total, count = 0.0, 0
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        for start in range(0, len(run.held), size):
            ids, mask = _padded(run.held[start : start + size], pad)
            loss = model.prefix_loss(torch.from_numpy(run.held_vectors[start : start + size]), ids, mask)
            total += loss.item() * len(ids)
            count += len(ids)
    model.train()
    return total / max(count, 1)


def _log_line(run: _Run, train_loss: float | None, held_loss: float) -> None:
    line = {
        "step": run.position.step,
        "hours": round(run.position.seconds / 3600, 4),
        "train_loss": None if train_loss is None else round(train_loss, 4),
        "heldout_loss": round(held_loss, 4),
    }
    with (run.o.out / "train-log.jsonl").open("a") as f:
        f.write(json.dumps(line) + "\n")
    log.info("inverter.progress", **line)
