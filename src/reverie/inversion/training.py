"""`reverie inverter train`: an inverter for any sentence-transformers embedder, offline.

The corpus is embedded once with the real embedder (cached in the output directory, so a
resumed run does not pay for it again); vec2text's InversionModel, a small T5 built from a
config, learns to decode those embeddings back into the sentences, with vec2text's own
InversionTrainer. The decoder's tokenizer is a byte-level BPE trained on the corpus: it
exists offline, and its small vocabulary keeps the model small and fast on a CPU.
"""

from __future__ import annotations

import gzip
import json
import pickle
import random
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import structlog
import torch
import transformers

from reverie.errors import InvalidInputError, InverterError
from reverie.inversion.embedders import Embedder, embedder_id
from reverie.inversion.vec2text_adapter import new_inversion_model, offline_trainer, save_inversion_model

log = structlog.get_logger("reverie.inverter")

SPECIALS = ["<pad>", "</s>", "<unk>"]  # T5's ids: pad 0 (also the decoder start), eos 1


@dataclass
class TrainOptions:
    corpus: Path
    embedder: str
    out: Path
    holdout: int = 1000
    max_steps: int = 100_000
    max_minutes: float | None = None
    batch_size: int = 64
    learning_rate: float = 1e-3
    max_length: int = 32
    vocab_size: int = 8192
    d_model: int = 256
    layers: int = 3
    heads: int = 4
    d_ff: int = 1024
    repeat_tokens: int = 8
    dropout: float = 0.1
    seed: int = 0
    save_every: int = 500
    limit: int | None = None
    progress: bool = True


def read_corpus(path: Path, limit: int | None = None) -> list[str]:
    """Distinct non-empty lines of a text file (gzip or plain), in file order."""
    try:
        opener = gzip.open if path.suffix == ".gz" else open
        with opener(path, "rt", encoding="utf-8") as f:  # type: ignore[operator]
            lines = dict.fromkeys(line.strip() for line in f)
    except (OSError, UnicodeDecodeError) as exc:
        raise InvalidInputError(f"cannot read corpus {path}: {exc}") from None
    texts = [t for t in lines if t]
    if limit:
        texts = texts[:limit]
    if not texts:
        raise InvalidInputError(f"corpus {path} holds no sentences (one a line)")
    return texts


def split(texts: list[str], holdout: int, seed: int) -> tuple[list[str], list[str]]:
    """A seeded shuffle, then the last `holdout` sentences kept back for evaluation."""
    if holdout >= len(texts):
        raise InvalidInputError(f"holdout {holdout} leaves nothing to train on ({len(texts)} sentences)")
    shuffled = texts[:]
    random.Random(seed).shuffle(shuffled)
    return shuffled[: len(shuffled) - holdout], shuffled[len(shuffled) - holdout :]


def train_tokenizer(
    texts: list[str], vocab_size: int, max_length: int
) -> transformers.PreTrainedTokenizerFast:
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=SPECIALS,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(texts, trainer)
    tok.post_processor = processors.TemplateProcessing(single="$A </s>", special_tokens=[("</s>", 1)])
    return transformers.PreTrainedTokenizerFast(
        tokenizer_object=tok,
        pad_token="<pad>",
        eos_token="</s>",
        unk_token="<unk>",
        model_max_length=max_length,
    )


class _Examples(torch.utils.data.Dataset):
    """Token ids of each sentence with its frozen embedding."""

    def __init__(self, token_ids: list[list[int]], embeddings: np.ndarray) -> None:
        self.token_ids, self.embeddings = token_ids, embeddings

    def __len__(self) -> int:
        return len(self.token_ids)

    def __getitem__(self, i: int) -> dict[str, Any]:
        return {"ids": self.token_ids[i], "embedding": self.embeddings[i]}


def collate(batch: list[dict[str, Any]]) -> dict[str, torch.Tensor]:
    """Pad to the longest sentence of the batch (most are short: padding to the maximum
    would triple the work)."""
    width = max(len(b["ids"]) for b in batch)
    ids = torch.zeros((len(batch), width), dtype=torch.long)
    mask = torch.zeros((len(batch), width), dtype=torch.long)
    for row, b in enumerate(batch):
        ids[row, : len(b["ids"])] = torch.tensor(b["ids"])
        mask[row, : len(b["ids"])] = 1
    return {
        "input_ids": ids,  # read by the trainer's per-step statistics only
        "embedder_input_ids": ids,
        "embedder_attention_mask": mask,
        "labels": ids.masked_fill(mask == 0, -100),
        "frozen_embeddings": torch.from_numpy(np.stack([b["embedding"] for b in batch])),
    }


class _TimeBudget(transformers.TrainerCallback):
    """Stop (and save a checkpoint) once the wall-clock budget is spent."""

    def __init__(self, minutes: float | None) -> None:
        self.deadline = None if minutes is None else time.monotonic() + 60 * minutes

    def on_step_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> Any:
        if self.deadline is not None and time.monotonic() >= self.deadline:
            control.should_training_stop = True
            control.should_save = True
        return control


def embed_cached(embedder: Embedder, texts: list[str], path: Path, progress: bool) -> np.ndarray:
    """Embeddings of `texts`, computed once per output directory."""
    if path.exists():
        cached = np.load(path)
        if cached.shape[0] == len(texts):
            return cached
    vectors = embedder.encode(texts, progress=progress)
    np.save(path, vectors)
    return vectors


def train(options: TrainOptions) -> dict[str, Any]:
    """Train (or resume) an inverter; returns the description saved beside the weights."""
    o = options
    transformers.set_seed(o.seed)
    texts = read_corpus(o.corpus, o.limit)
    train_texts, held_out = split(texts, o.holdout, o.seed)
    o.out.mkdir(parents=True, exist_ok=True)
    (o.out / "holdout.txt").write_text("\n".join(held_out) + "\n")
    embedder = Embedder(o.embedder)
    log.info("inverter.embedding", sentences=len(train_texts), embedder=o.embedder)
    vectors = embed_cached(embedder, train_texts, o.out / "train-embeddings.npy", o.progress)

    tokenizer_dir = o.out / "tokenizer"
    if (tokenizer_dir / "tokenizer.json").exists():
        tokenizer = transformers.PreTrainedTokenizerFast.from_pretrained(str(tokenizer_dir))
    else:
        tokenizer = train_tokenizer(train_texts, o.vocab_size, o.max_length)
        tokenizer.save_pretrained(str(tokenizer_dir))
    token_ids = tokenizer(train_texts, truncation=True, max_length=o.max_length)["input_ids"]

    encoder_decoder = {
        "vocab_size": len(tokenizer),
        "d_model": o.d_model,
        "d_kv": o.d_model // o.heads,
        "d_ff": o.d_ff,
        "num_layers": o.layers,
        "num_decoder_layers": o.layers,
        "num_heads": o.heads,
        "dropout_rate": o.dropout,
        "pad_token_id": 0,
        "eos_token_id": 1,
        "decoder_start_token_id": 0,
    }
    model = new_inversion_model(
        embedder_id(embedder.model_name),
        embedder.model,
        tokenizer,
        encoder_decoder,
        num_repeat_tokens=o.repeat_tokens,
        max_seq_length=o.max_length,
    )
    args = transformers.TrainingArguments(
        output_dir=str(o.out / "checkpoints"),
        per_device_train_batch_size=o.batch_size,
        learning_rate=o.learning_rate,
        lr_scheduler_type="constant_with_warmup",  # a time budget leaves the step count unknown
        warmup_steps=min(500, max(1, o.max_steps // 10)),
        max_steps=o.max_steps,
        logging_steps=50,
        save_steps=o.save_every,
        save_total_limit=2,
        save_safetensors=False,  # T5's tied embeddings; torch.save handles sharing
        seed=o.seed,
        report_to=[],
        remove_unused_columns=False,
        dataloader_num_workers=0,
        disable_tqdm=not o.progress,
        use_cpu=not torch.cuda.is_available(),
    )
    trainer = offline_trainer(
        model,
        args,
        train_dataset=_Examples(token_ids, vectors),
        data_collator=collate,
        callbacks=[_TimeBudget(o.max_minutes)],
    )
    checkpoints = sorted(
        (o.out / "checkpoints").glob("checkpoint-*"), key=lambda c: int(c.name.split("-")[1])
    )
    started = time.perf_counter()
    result = _train(trainer, checkpoints[-1] if checkpoints else None)
    meta = {
        "format": 1,
        "kind": "vec2text-inversion",
        "embedder": embedder_id(embedder.model_name),
        "dimension": embedder.dimension,
        "corpus": str(o.corpus),
        "sentences": len(train_texts),
        "steps": trainer.state.global_step,
        "train_loss": round(float(result.training_loss), 4),
        "train_seconds": round(time.perf_counter() - started, 1),
        "resumed_from": checkpoints[-1].name if checkpoints else None,
        "options": {k: str(v) if isinstance(v, Path) else v for k, v in asdict(o).items()},
    }
    save_inversion_model(model, o.out / "model", meta)
    log.info("inverter.saved", path=str(o.out / "model"), steps=meta["steps"], loss=meta["train_loss"])
    (o.out / "model" / "train-log.json").write_text(json.dumps(trainer.state.log_history))
    return meta


def _step_of(checkpoint: Path) -> int:
    return int(checkpoint.name.rpartition("-")[2])


def _train(trainer: Any, checkpoint: Path | None) -> Any:
    """Train, resuming from `checkpoint` when there is one; a damaged one is named."""
    if checkpoint is None:
        return trainer.train()
    log.info("inverter.resuming", checkpoint=str(checkpoint))
    try:
        return trainer.train(resume_from_checkpoint=str(checkpoint))
    except (OSError, RuntimeError, ValueError, pickle.UnpicklingError) as exc:
        raise InverterError(
            f"cannot resume from {checkpoint}: {str(exc)[:200]}; delete it to resume from an earlier "
            "checkpoint, or the whole checkpoints directory to start over"
        ) from None
