"""The embedder's ranking copy: a faster copy of the model for ranking many candidates (the
inverter's search embeds about 24 texts a token), never for what is stored or shown.

Ranking is dense compute: on two AVX2 cores MiniLM's products already run near the cores'
measured peak, so a faster copy must do less besides them. Which copy, by CPU:
  - bfloat16 where the CPU computes in it (AVX512-BF16, AMX): 2-3 times faster, cosines
    within 1e-3 (precision.py);
  - elsewhere, for a BERT model with mean pooling (all-MiniLM-L6-v2), the model compiled by
    ONNX Runtime with its BERT fusions (attention, GELU, layer norms): the same float32
    arithmetic, cosines within 1e-6; it saves what PyTorch spends besides the products
    (a call of 6 texts 1.7 times faster, of a step's 24 1.13 times, of 192 the same), a
    search about 9% shorter on an AMD EPYC (docs/inversion.md, "The ranking copy");
  - else the model itself.
The compiled copy is exported once into the model cache (inversion.model_cache), named by a
digest of the weights, and written whole or not at all.
"""

from __future__ import annotations

import copy
import hashlib
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import structlog

from reverie.errors import reason
from reverie.whole_files import replaced_whole

log = structlog.get_logger(__name__)


def ranking_copy(model: Any, cache: Path) -> Any:
    """The fastest copy of a sentence-transformers `model` this CPU ranks with; it has the
    model's `encode`."""
    import torch

    from reverie.inversion.precision import computes_bfloat16

    if computes_bfloat16():
        log.info("embedder.ranking_copy", kind="bfloat16")
        return copy.deepcopy(model).to(torch.bfloat16)
    if not _bert_mean_pooled(model):
        log.info("embedder.ranking_copy", kind="the model", why="not a BERT model with mean pooling")
        return model
    try:
        compiled = OnnxCopy(model, _exported(model, cache / "ranking"))
    except Exception as exc:  # slower, not wrong: rank with the model itself, and say why
        log.warning("embedder.ranking_copy", kind="the model", why=f"no compiled copy: {reason(exc)}")
        return model
    log.info("embedder.ranking_copy", kind="onnx", path=str(compiled.path))
    return compiled


class OnnxCopy:
    """A BERT sentence model with mean pooling, run by ONNX Runtime: the model's tokenizer,
    its length limit and pooling, and ONNX Runtime's fused graph."""

    def __init__(self, model: Any, path: Path) -> None:
        import onnxruntime
        import torch

        options = onnxruntime.SessionOptions()
        options.intra_op_num_threads = torch.get_num_threads()
        # no busy-waiting between calls: the daemon answers requests on these cores meanwhile
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        self.path, self.tokenizer, self.max_length = path, model[0].tokenizer, model.max_seq_length
        self.session = onnxruntime.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])

    def encode(
        self,
        texts: list[str],
        batch_size: int = 64,
        normalize_embeddings: bool = False,
        convert_to_numpy: bool = True,
        show_progress_bar: bool = False,
    ) -> np.ndarray:
        """The texts' vectors, as the model's encode gives them (as numpy, with no progress
        bar: the arguments are the ones Embedder.encode passes). The texts go in batches of
        about one length, as sentence-transformers sends them."""
        order = np.argsort([-len(t) for t in texts], kind="stable")
        batches = [order[start : start + batch_size] for start in range(0, len(texts), batch_size)]
        pooled = [self._pooled([texts[i].strip() for i in rows]) for rows in batches]
        out = np.zeros((len(texts), pooled[0].shape[1] if pooled else 0), dtype=np.float32)
        for rows, vectors in zip(batches, pooled, strict=True):
            out[rows] = vectors
        if normalize_embeddings:
            out /= np.maximum(np.linalg.norm(out, axis=1, keepdims=True), 1e-12)
        return out

    def _pooled(self, texts: list[str]) -> np.ndarray:
        batch = self.tokenizer(
            texts, padding=True, truncation=True, max_length=self.max_length, return_tensors="np"
        )
        feed = {name: batch[name].astype(np.int64) for name in INPUTS}
        return self.session.run(None, feed)[0]


INPUTS = ("input_ids", "attention_mask", "token_type_ids")


def _bert_mean_pooled(model: Any) -> bool:
    """Whether `model` is [Transformer (BERT), Pooling (mean), Normalize?]: the layout the
    compiled copy reproduces."""
    modules = [type(module).__name__ for module in model]
    if modules[:2] != ["Transformer", "Pooling"] or modules[2:] not in ([], ["Normalize"]):
        return False
    pooling = model[1]
    mode = getattr(pooling, "pooling_mode", None)  # sentence-transformers 5; before, a method
    if not isinstance(mode, str):
        mode = pooling.get_pooling_mode_str()
    return mode == "mean" and model[0].auto_model.config.model_type == "bert"


def _exported(model: Any, directory: Path) -> Path:
    """The model's ONNX file in `directory`, exported and fused on first use: into a scratch
    file beside it, renamed when whole, so a crash leaves no half file behind."""
    path = directory / f"{_name(model)}.onnx"
    if path.is_file():
        return path
    with replaced_whole(path) as scratch:
        _export(copy.deepcopy(model[0].auto_model), scratch)  # the model goes on embedding
    return path


def _name(model: Any) -> str:
    """The file's name: the model's name and a digest of its weights, so a changed model
    is exported again."""
    digest = hashlib.sha256()
    for key, tensor in sorted(model[0].auto_model.state_dict().items()):
        digest.update(key.encode())
        digest.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    name = Path(str(model[0].auto_model.config.name_or_path)).name or "model"
    return f"{name}-{digest.hexdigest()[:12]}"


def _export(bert: Any, path: Path) -> None:
    """The BERT model, mean pooled, as ONNX with ONNX Runtime's BERT fusions."""
    import torch
    from onnxruntime.transformers import optimizer

    class MeanPooled(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.bert = bert

        def forward(self, input_ids: Any, attention_mask: Any, token_type_ids: Any) -> Any:
            hidden = self.bert(
                input_ids=input_ids, attention_mask=attention_mask, token_type_ids=token_type_ids
            ).last_hidden_state
            mask = attention_mask.unsqueeze(-1).to(hidden.dtype)
            return (hidden * mask).sum(1) / mask.sum(1).clamp(min=1e-9)

    example = torch.ones(2, 8, dtype=torch.long)
    axes = {name: {0: "texts", 1: "tokens"} for name in INPUTS}
    with warnings.catch_warnings(), torch.inference_mode():
        warnings.simplefilter("ignore")  # the exporter's notes on tracing, not ours to act on
        torch.onnx.export(
            MeanPooled().eval(),
            (example, example, torch.zeros_like(example)),
            str(path),
            input_names=list(INPUTS),
            output_names=["pooled"],
            dynamic_axes={**axes, "pooled": {0: "texts"}},
            opset_version=17,
            dynamo=False,
        )
    config = bert.config
    fused = optimizer.optimize_model(
        str(path), model_type="bert", num_heads=config.num_attention_heads, hidden_size=config.hidden_size
    )
    fused.save_model_to_file(str(path))
