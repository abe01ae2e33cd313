"""The trained part of the inverter: an embedding turned into a few input vectors of a
frozen pretrained LM, plus low-rank adapters inside it.

This is vec2text's decoder-only inversion model (`InversionModelDecoderOnly`, the GEIA
baseline): a learned projection of the sentence embedding is fed to a causal LM as its
first input vectors, and the LM writes the sentence after them. Here the LM stays frozen
(it comes from a package, so only the projection and the peft LoRA adapters are saved:
a few MB) and the projection gives several prefix vectors instead of one.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from reverie.errors import InverterError
from reverie.inversion.base_lm import BaseLM

META = "inverter.json"
WEIGHTS = "inverter.safetensors"
FORMAT = 2
KIND = "prefix-lm"


@dataclass(frozen=True)
class PrefixShape:
    """What the saved weights fit: the embedding and LM sizes and the trained layout."""

    embed_dim: int
    prefix_len: int = 8
    hidden: int = 1024
    lora_rank: int = 8
    lora_targets: tuple[str, ...] = ("q_proj", "k_proj", "v_proj", "o_proj")


class PrefixInverter(nn.Module):
    def __init__(self, lm: BaseLM, shape: PrefixShape) -> None:
        super().__init__()
        self.lm, self.shape = lm, shape
        d = lm.hidden_size
        self.projection = nn.Sequential(
            nn.Linear(shape.embed_dim, shape.hidden),
            nn.GELU(),
            nn.Linear(shape.hidden, shape.prefix_len * d),
        )
        # prefix vectors start at the size of the LM's own token embeddings
        self.norm = nn.LayerNorm(d)
        token_rms = lm.model.get_input_embeddings().weight.float().pow(2).mean().sqrt()
        with torch.no_grad():
            self.norm.weight.fill_(float(token_rms))
        if shape.lora_rank:
            self._add_adapters()

    def _add_adapters(self) -> None:
        from peft import LoraConfig, inject_adapter_in_model

        config = LoraConfig(
            r=self.shape.lora_rank,
            lora_alpha=2 * self.shape.lora_rank,
            target_modules=list(self.shape.lora_targets),
            lora_dropout=0.0,
        )
        inject_adapter_in_model(config, self.lm.model)
        for name, param in self.lm.model.named_parameters():
            if "lora_" in name:
                param.data = param.data.float()
                param.requires_grad_(True)

    def trainable_state(self) -> dict[str, torch.Tensor]:
        """Only what training changes: the projection, its norm and the adapters."""
        state = {f"projection.{k}": v for k, v in self.projection.state_dict().items()}
        state.update({f"norm.{k}": v for k, v in self.norm.state_dict().items()})
        state.update({f"lm.{k}": v for k, v in self.lm.model.state_dict().items() if "lora_" in k})
        return state

    def trainable_parameters(self) -> list[nn.Parameter]:
        lora = [p for n, p in self.lm.model.named_parameters() if "lora_" in n]
        return [*self.projection.parameters(), *self.norm.parameters(), *lora]

    def load_trainable(self, state: dict[str, torch.Tensor]) -> None:
        mine = self.trainable_state()
        missing = sorted(set(mine) - set(state))
        unexpected = sorted(set(state) - set(mine))
        if missing or unexpected:
            raise InverterError(
                f"inverter weights do not fit this model (missing {missing[:3]}, unexpected {unexpected[:3]})"
            )
        with torch.no_grad():
            for key, tensor in state.items():
                if tuple(tensor.shape) != tuple(mine[key].shape):
                    raise InverterError(f"inverter weight {key}: shape {tuple(tensor.shape)} does not fit")
                mine[key].copy_(tensor.to(mine[key].dtype))

    def prefix(self, embeddings: torch.Tensor) -> torch.Tensor:
        """(batch, embed_dim) -> (batch, prefix_len, lm hidden size)."""
        flat = self.projection(embeddings.float())
        return self.norm(flat.view(len(embeddings), self.shape.prefix_len, -1))

    def inputs(self, embeddings: torch.Tensor, token_ids: torch.Tensor) -> torch.Tensor:
        """The LM's input vectors: the prefix, then the tokens' own embeddings."""
        tokens = self.lm.model.get_input_embeddings()(token_ids)
        return torch.cat([self.prefix(embeddings).to(tokens.dtype), tokens], dim=1)

    def loss(self, embeddings: torch.Tensor, token_ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """Mean cross-entropy of the sentence tokens (and the stop token) after the prefix."""
        k = self.shape.prefix_len
        batch = len(token_ids)
        attention = torch.cat([torch.ones(batch, k, dtype=mask.dtype), mask], dim=1)
        labels = torch.cat(
            [torch.full((batch, k), -100, dtype=torch.long), token_ids.masked_fill(mask == 0, -100)], dim=1
        )
        out = self.lm.model(inputs_embeds=self.inputs(embeddings, token_ids), attention_mask=attention)
        logits = out.logits[:, k - 1 : -1].float()
        return nn.functional.cross_entropy(logits.reshape(-1, logits.size(-1)), labels[:, k:].reshape(-1))


def save(model: PrefixInverter, directory: Path, meta: dict[str, Any]) -> None:
    """Weights in float16 and the description, written so a reader never sees half a model."""
    from safetensors.torch import save_file

    directory.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().to(torch.float16).contiguous() for k, v in model.trainable_state().items()}
    save_file(state, str(directory / f"{WEIGHTS}.tmp"))
    (directory / f"{WEIGHTS}.tmp").replace(directory / WEIGHTS)
    description = {"format": FORMAT, "kind": KIND, **meta, "shape": asdict(model.shape)}
    (directory / f"{META}.tmp").write_text(json.dumps(description, indent=2, default=str))
    (directory / f"{META}.tmp").replace(directory / META)


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


def load(directory: Path, lm: BaseLM) -> tuple[PrefixInverter, dict[str, Any]]:
    """The saved projection and adapters on top of `lm`, in eval mode."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    meta = read_meta(directory)
    shape = meta["shape"]
    model = PrefixInverter(lm, PrefixShape(**{**shape, "lora_targets": tuple(shape["lora_targets"])}))
    try:
        state = load_file(str(directory / WEIGHTS))
    except (OSError, SafetensorError) as exc:
        raise InverterError(f"cannot read the inverter weights in {directory}: {exc}") from None
    model.load_trainable(state)
    return model.eval(), meta
