"""The trained part of the inverter: what a sentence embedding tells a frozen pretrained LM.

A learned projection maps the embedding into the LM's own token-embedding space; scored
against the LM's token embeddings it says which tokens the sentence holds (a bag of
words, the cheap half of vec2text's inversion: minutes to train on a CPU). That steers
the guided search twice: as a bias on the LM's next-token scores, and as keywords in its
prompt. Optionally, as in vec2text's decoder-only inverter (GEIA), a second projection
gives a few input vectors placed before the text, with peft LoRA adapters in the LM
(hours to train); `inverter.json` says whether a model has them.

Only these projections and adapters are saved (a few MB): the LM comes from its package.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from reverie.errors import InverterError
from reverie.inversion.base_lm import BaseLM
from reverie.inversion.guided import Steering
from reverie.whole_files import replaced_whole

META = "inverter.json"
WEIGHTS = "inverter.safetensors"
FORMAT = 3
KIND = "guided-lm"
LORA_TARGETS = ("q_proj", "k_proj", "v_proj", "o_proj")
PREFIX_PARTS = ("projection.", "norm.", "lm.")
KEYWORDS_PER_EXTRA_TOKENS = 6  # a longer sentence gets one more keyword per this many tokens


@dataclass(frozen=True)
class Shape:
    """What the saved weights fit."""

    embed_dim: int
    hidden: int = 1024
    word_rank: int = 64  # a free low-rank part of the token scores beside the tied one
    prefix_len: int = 0  # 0: no prefix vectors, no adapters
    lora_rank: int = 8


class Conditioner(nn.Module):
    def __init__(self, lm: BaseLM, shape: Shape) -> None:
        super().__init__()
        self.lm, self.shape = lm, shape
        d, vocab = lm.hidden_size, int(lm.model.config.vocab_size)
        self.words = nn.Sequential(nn.Linear(shape.embed_dim, shape.hidden), nn.GELU())
        self.to_tokens = nn.Linear(shape.hidden, d)  # a point in the LM's token-embedding space
        self.to_free = nn.Linear(shape.hidden, shape.word_rank)
        self.free_tokens = nn.Parameter(0.01 * torch.randn(vocab, shape.word_rank))
        self.word_bias = nn.Parameter(torch.full((vocab,), -6.0))
        if shape.prefix_len:
            self.projection = nn.Sequential(
                nn.Linear(shape.embed_dim, shape.hidden),
                nn.GELU(),
                nn.Linear(shape.hidden, shape.prefix_len * d),
            )
            # prefix vectors start at the size of the LM's own token embeddings
            self.norm = nn.LayerNorm(d)
            with torch.no_grad():
                self.norm.weight.fill_(float(self._token_embeddings().pow(2).mean().sqrt()))
            self._add_adapters()

    def _token_embeddings(self) -> torch.Tensor:
        return self.lm.model.get_input_embeddings().weight

    def _add_adapters(self) -> None:
        from peft import LoraConfig, inject_adapter_in_model

        rank = self.shape.lora_rank
        config = LoraConfig(r=rank, lora_alpha=2 * rank, target_modules=list(LORA_TARGETS), lora_dropout=0.0)
        inject_adapter_in_model(config, self.lm.model)
        for name, param in self.lm.model.named_parameters():
            if "lora_" in name:
                param.data = param.data.float()
                param.requires_grad_(True)

    # -- what the search gets -----------------------------------------------------------
    def token_logits(self, embeddings: torch.Tensor) -> torch.Tensor:
        """(batch, vocab): how likely each LM token is to appear in the sentence (logits): a
        point scored against the LM's own token embeddings, plus a small learned part."""
        hidden = self.words(embeddings.float())
        tied = self.to_tokens(hidden) @ self._token_embeddings().float().T
        return tied + self.to_free(hidden) @ self.free_tokens.T + self.word_bias

    def steering(self, vector: np.ndarray, keywords: int, pool: int = 0, floor: float = -5.0) -> Steering:
        """The search's steering for one vector: the log-probability of each token being in
        the sentence (floored, so an unlikely token is discouraged, never forbidden), the
        `keywords` likeliest words, the `pool` likeliest (the search chooses its keywords
        among them: keywords.py), and the prefix vectors when the model has them."""
        embedding = torch.from_numpy(np.asarray(vector, dtype=np.float32))[None]
        with torch.no_grad():
            likely = torch.sigmoid(self.token_logits(embedding))[0]
            prefix = self.prefix(embedding)[0] if self.shape.prefix_len else None
        bias = torch.log(likely.clamp_min(1e-6)).clamp_min(floor)
        # the summed presence probabilities: 2-3 times the true token count, as training weighs
        # each present token 5 times, so the search's length cap is loose (a tight one measured
        # worse: docs/inversion.md)
        expected = float(likely.sum())
        count = keywords + int(expected / KEYWORDS_PER_EXTRA_TOKENS) if keywords else 0
        likeliest = self._keywords(likely, max(count, pool))  # one pass: the keywords lead the pool
        return Steering(bias, likeliest[:count], likeliest[:pool], prefix, expected)

    def _keywords(self, likely: torch.Tensor, count: int) -> tuple[str, ...]:
        words: list[str] = []
        if count <= 0:
            return ()
        for token in torch.argsort(likely, descending=True)[: 50 * count].tolist():
            piece = self.lm.tokenizer.convert_ids_to_tokens(token)
            word = piece[1:].lower() if piece and piece.startswith("Ġ") else ""
            if word.isalpha() and len(word) > 3 and word not in words:
                words.append(word)
                if len(words) == count:
                    break
        return tuple(words)

    def prefix(self, embeddings: torch.Tensor) -> torch.Tensor:
        """(batch, prefix_len, LM hidden size): the input vectors before the text."""
        flat = self.projection(embeddings.float())
        return self.norm(flat.view(len(embeddings), self.shape.prefix_len, -1))

    # -- training -----------------------------------------------------------------------
    def word_parameters(self) -> list[nn.Parameter]:
        parts = (self.words, self.to_tokens, self.to_free)
        return [p for part in parts for p in part.parameters()] + [self.free_tokens, self.word_bias]

    def prefix_parameters(self) -> list[nn.Parameter]:
        lora = [p for n, p in self.lm.model.named_parameters() if "lora_" in n]
        return [*self.projection.parameters(), *self.norm.parameters(), *lora]

    def prefix_loss(
        self, embeddings: torch.Tensor, token_ids: torch.Tensor, mask: torch.Tensor
    ) -> torch.Tensor:
        """Mean cross-entropy of the sentence tokens (and the stop token) after the prefix."""
        k, batch = self.shape.prefix_len, len(token_ids)
        tokens = self.lm.model.get_input_embeddings()(token_ids)
        inputs = torch.cat([self.prefix(embeddings).to(tokens.dtype), tokens], dim=1)
        attention = torch.cat([torch.ones(batch, k, dtype=mask.dtype), mask], dim=1)
        labels = token_ids.masked_fill(mask == 0, -100)
        logits = self.lm.model(inputs_embeds=inputs, attention_mask=attention).logits[:, k - 1 : -1].float()
        return nn.functional.cross_entropy(logits.reshape(-1, logits.size(-1)), labels.reshape(-1))

    def trainable_state(self) -> dict[str, torch.Tensor]:
        """Only what training changes: the projections and the adapters."""
        state = {k: v for k, v in self.state_dict().items() if not k.startswith("lm.")}
        state.update({f"lm.{k}": v for k, v in self.lm.model.state_dict().items() if "lora_" in k})
        return state

    def load_trainable(self, state: dict[str, torch.Tensor], grown: bool = False) -> None:
        """`grown`: the weights may lack the prefix part (a run that trained words only,
        now extended with a prefix): it keeps its fresh start."""
        mine = self.trainable_state()
        missing, unexpected = sorted(set(mine) - set(state)), sorted(set(state) - set(mine))
        if grown:
            missing = [k for k in missing if not k.startswith(PREFIX_PARTS)]
        if missing or unexpected:
            raise InverterError(
                f"inverter weights do not fit this model (missing {missing[:3]}, unexpected {unexpected[:3]})"
            )
        with torch.no_grad():
            for key, tensor in state.items():  # keys all known here
                if tuple(tensor.shape) != tuple(mine[key].shape):
                    raise InverterError(f"inverter weight {key}: shape {tuple(tensor.shape)} does not fit")
                mine[key].copy_(tensor.to(mine[key].dtype))


def save(model: Conditioner, directory: Path, meta: dict[str, Any]) -> None:
    """Weights in float16 and the description, each replaced whole (never half written)."""
    from safetensors.torch import save_file

    state = {k: v.detach().to(torch.float16).contiguous() for k, v in model.trainable_state().items()}
    with replaced_whole(directory / WEIGHTS) as scratch:
        save_file(state, str(scratch))
    description = {"format": FORMAT, "kind": KIND, **meta, "shape": asdict(model.shape)}
    with replaced_whole(directory / META) as scratch:
        scratch.write_text(json.dumps(description, indent=2, default=str))


def read_meta(directory: Path) -> dict[str, Any]:
    path = directory / META
    if not directory.is_dir():
        raise InverterError(f"inverter directory {directory} does not exist")
    try:
        meta = json.loads(path.read_text())
    except FileNotFoundError:
        raise InverterError(
            f"{directory} is not a reverie inverter (no {META}; make one with `reverie inverter train`)"
        ) from None
    except ValueError as exc:
        raise InverterError(f"{path} is corrupt: {exc}") from None
    if meta.get("kind") != KIND:
        raise InverterError(f"{path} describes a {meta.get('kind')!r} model, not a {KIND!r} inverter")
    return meta


def load(directory: Path, lm: BaseLM) -> tuple[Conditioner, dict[str, Any]]:
    """The saved projections (and adapters) on top of `lm`, in eval mode."""
    meta = read_meta(directory)
    model = Conditioner(lm, Shape(**meta["shape"]))
    model.load_trainable(read_weights(directory))
    return model.eval(), meta


def read_weights(directory: Path) -> dict[str, torch.Tensor]:
    """The trained weights saved in an inverter directory (what `save` wrote)."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    try:
        return load_file(str(directory / WEIGHTS))
    except (OSError, SafetensorError) as exc:
        raise InverterError(f"cannot read the inverter weights in {directory}: {exc}") from None
