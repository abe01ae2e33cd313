"""`reverie inverter train`: teach the projection and adapters to read embeddings.

Built to run for hours in the background on a CPU and to survive being stopped: the
corpus is embedded once (cached in the run directory), batches are drawn in a seeded
order that a resumed run reproduces, and every `save_minutes` the trainable weights,
the optimizer and the position are written atomically (`checkpoint.pt`) and the model is
exported (`model/`), so the latest weights are usable while training goes on. Held-out
loss is logged to `train-log.jsonl` (the curve of quality against hours), and an hourly
copy of the model is kept under `snapshots/` for measuring the curve in F1 and cosine.
"""

from __future__ import annotations

import json
import math
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

from reverie.errors import InverterError
from reverie.inversion.base_lm import SMOLLM2, BaseLM, load_base_lm
from reverie.inversion.corpus import load_corpus
from reverie.inversion.embedders import Embedder, embedder_id
from reverie.inversion.prefix_model import PrefixInverter, PrefixShape, save

log = structlog.get_logger("reverie.inverter")

CHECKPOINT = "checkpoint.pt"


@dataclass
class TrainOptions:
    corpus: list[Path]
    out: Path
    embedder: str = "sentence-transformers/all-MiniLM-L6-v2"
    base_lm: str = SMOLLM2
    holdout: int = 1000
    max_steps: int = 1_000_000
    max_minutes: float | None = None
    batch_size: int = 32
    learning_rate: float = 5e-4
    warmup_steps: int = 200
    max_tokens: int = 40
    prefix_len: int = 8
    hidden: int = 1024
    lora_rank: int = 8
    seed: int = 0
    save_minutes: float = 10.0
    snapshot_minutes: float = 60.0
    eval_every: int = 200
    eval_sentences: int = 256
    threads: int | None = None
    limit: int | None = None
    progress: bool = True


@dataclass
class _Position:
    step: int = 0
    seconds: float = 0.0  # training time over all sessions of this run


def train(options: TrainOptions) -> dict[str, Any]:
    """Train, or resume the run in `options.out`; returns the saved model's description."""
    o = options
    if o.threads:
        torch.set_num_threads(o.threads)
    o.out.mkdir(parents=True, exist_ok=True)
    corpus = load_corpus(o.corpus, o.holdout, o.seed, o.limit)
    (o.out / "holdout.txt").write_text("\n".join(corpus.held_out) + "\n")
    embedder = Embedder(o.embedder)
    log.info("inverter.embedding", sentences=len(corpus.train), embedder=o.embedder)
    vectors = embed_cached(embedder, corpus.train, o.out / "train-embeddings.npy", o.progress)
    held_vectors = embed_cached(
        embedder, corpus.held_out[: o.eval_sentences], o.out / "holdout-embeddings.npy", False
    )
    lm = load_base_lm(o.base_lm)
    shape = PrefixShape(embedder.dimension, o.prefix_len, o.hidden, o.lora_rank)
    model = PrefixInverter(lm, shape)
    params = model.trainable_parameters()
    optimizer = torch.optim.AdamW(params, lr=o.learning_rate, weight_decay=0.0)
    position = _resume(o.out / CHECKPOINT, model, optimizer)
    encoded = [_token_ids(lm, t, o.max_tokens) for t in corpus.train]
    held = [_token_ids(lm, t, o.max_tokens) for t in corpus.held_out[: o.eval_sentences]]
    order = _batches(encoded, o.batch_size, o.seed)
    meta = {
        "embedder": embedder_id(embedder.model_name),
        "dimension": embedder.dimension,
        "base_lm": lm.id,
        "corpus": [str(c) for c in o.corpus],
        "sentences": len(corpus.train),
        "options": asdict(o),
    }
    deadline = None if o.max_minutes is None else time.monotonic() + 60 * o.max_minutes
    last_save = last_snapshot = time.monotonic()
    session_start, base_seconds = time.monotonic(), position.seconds
    bar = tqdm(total=o.max_steps, initial=position.step, desc="training", disable=not o.progress)
    running: float | None = None
    model.train()
    while position.step < o.max_steps and (deadline is None or time.monotonic() < deadline):
        batch = order[position.step % len(order)]
        _set_lr(optimizer, o.learning_rate * min(1.0, (position.step + 1) / o.warmup_steps))
        ids, mask = _padded([encoded[i] for i in batch], lm.stop_ids[-1])
        with torch.autocast("cpu", dtype=torch.bfloat16):
            loss = model.loss(torch.from_numpy(vectors[batch]), ids, mask)
        if not math.isfinite(loss.item()):
            raise InverterError(f"training diverged at step {position.step} (loss {loss.item()})")
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        optimizer.step()
        position.step += 1
        position.seconds = base_seconds + time.monotonic() - session_start
        running = loss.item() if running is None else 0.98 * running + 0.02 * loss.item()
        bar.update(1)
        bar.set_postfix(loss=f"{running:.3f}")
        if position.step % o.eval_every == 0:
            held_loss = _held_out_loss(model, held, held_vectors, o.batch_size, lm.stop_ids[-1])
            _log_line(o.out, position, running, held_loss)
        if time.monotonic() - last_save >= 60 * o.save_minutes:
            _checkpoint(o.out, model, optimizer, position, meta)
            last_save = time.monotonic()
        if time.monotonic() - last_snapshot >= 60 * o.snapshot_minutes:
            _snapshot(o.out, position)
            last_snapshot = time.monotonic()
    bar.close()
    _checkpoint(o.out, model, optimizer, position, meta)
    return json.loads((o.out / "model" / "inverter.json").read_text())


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
    batches = [
        np.asarray(by_length[i : i + batch_size], dtype=np.int64)
        for i in range(0, len(by_length), batch_size)
    ]
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


def _set_lr(optimizer: torch.optim.Optimizer, lr: float) -> None:
    for group in optimizer.param_groups:
        group["lr"] = lr


def _held_out_loss(
    model: PrefixInverter, held: list[list[int]], vectors: np.ndarray, batch_size: int, pad: int
) -> float:
    model.eval()
    total, count = 0.0, 0
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        for start in range(0, len(held), batch_size):
            ids, mask = _padded(held[start : start + batch_size], pad)
            loss = model.loss(torch.from_numpy(vectors[start : start + batch_size]), ids, mask)
            total += loss.item() * len(ids)
            count += len(ids)
    model.train()
    return total / max(count, 1)


def _log_line(out: Path, position: _Position, train_loss: float | None, held_loss: float) -> None:
    line = {
        "step": position.step,
        "hours": round(position.seconds / 3600, 4),
        "train_loss": None if train_loss is None else round(train_loss, 4),
        "heldout_loss": round(held_loss, 4),
    }
    with (out / "train-log.jsonl").open("a") as f:
        f.write(json.dumps(line) + "\n")
    log.info("inverter.progress", **line)


def _checkpoint(
    out: Path,
    model: PrefixInverter,
    optimizer: torch.optim.Optimizer,
    position: _Position,
    meta: dict[str, Any],
) -> None:
    """Weights, optimizer and position, atomically; then the usable model export."""
    state = {"model": model.trainable_state(), "optimizer": optimizer.state_dict(), **asdict(position)}
    torch.save(state, out / f"{CHECKPOINT}.tmp")
    (out / f"{CHECKPOINT}.tmp").replace(out / CHECKPOINT)
    save(
        model,
        out / "model",
        {**meta, "steps": position.step, "train_hours": round(position.seconds / 3600, 3)},
    )
    log.info("inverter.checkpoint", step=position.step, hours=round(position.seconds / 3600, 3))


def _snapshot(out: Path, position: _Position) -> None:
    target = out / "snapshots" / f"step-{position.step:07d}"
    if not target.exists():
        shutil.copytree(out / "model", target)


def _resume(path: Path, model: PrefixInverter, optimizer: torch.optim.Optimizer) -> _Position:
    if not path.exists():
        return _Position()
    try:
        state = torch.load(path, weights_only=True)
        model.load_trainable(state["model"])
        optimizer.load_state_dict(state["optimizer"])
    except (OSError, RuntimeError, KeyError, ValueError, InverterError) as exc:
        raise InverterError(
            f"cannot resume from {path}: {str(exc)[:200]}; move it away to start the run over"
        ) from None
    log.info("inverter.resuming", checkpoint=str(path), step=state["step"])
    return _Position(step=int(state["step"]), seconds=float(state["seconds"]))
