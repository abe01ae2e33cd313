"""Everything reverie takes from vec2text, and the workarounds that let it run offline.

vec2text 0.0.13 assumes a machine on the Hugging Face hub and a research checkout. Each
workaround below says which assumption it undoes; nothing else in reverie imports vec2text.
"""

from __future__ import annotations

import json
import logging
import tempfile
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any
from unittest import mock

import torch
import transformers
import vec2text
from vec2text.models import InversionModel, inversion
from vec2text.models.config import InversionConfig
from vec2text.trainers import InversionTrainer, base

from reverie.errors import InverterError

# Why: importing vec2text (its experiments module) turns torch's dynamo logging up to INFO,
# which prints compile tables when any reverie command exits.
torch._logging.set_logs(dynamo=logging.WARNING)

WEIGHTS = "inverter.safetensors"
CONFIG = "inverter.json"
VEC2TEXT_CONFIG = "vec2text-config.json"


@contextmanager
def offline_parts(encoder_decoder: dict[str, Any], tokenizer: Any, embedder: Any) -> Iterator[None]:
    """Hand InversionModel.__init__ its parts instead of letting it fetch them by name.

    Why: the constructor downloads the encoder-decoder (`t5-base`), the embedder and the
    tokenizer from the hub by name, even when the weights are loaded from disk right after.
    Here the encoder-decoder is built from a config (its weights come from our file), the
    embedder is the one reverie already loaded, and the tokenizer is the model's own.
    """

    def build_encoder_decoder(model_name: str, lora: bool = False) -> Any:
        return transformers.T5ForConditionalGeneration(transformers.T5Config(**encoder_decoder))

    with ExitStack() as stack:
        stack.enter_context(mock.patch.object(inversion, "load_encoder_decoder", build_encoder_decoder))
        stack.enter_context(
            mock.patch.object(
                inversion, "load_embedder_and_tokenizer", lambda name, torch_dtype, **_: (embedder, None)
            )
        )
        stack.enter_context(
            mock.patch.object(inversion, "load_tokenizer", lambda name, max_length: tokenizer)
        )
        yield


def new_inversion_model(
    embedder_name: str, embedder: Any, tokenizer: Any, encoder_decoder: dict[str, Any], **options: Any
) -> Any:
    """vec2text's InversionModel over precomputed ("frozen") embeddings, with no copy of
    the embedder inside it."""

    config = InversionConfig(
        embedder_model_name=embedder_name,
        model_name_or_path="reverie-local",
        encoder_decoder=encoder_decoder,
        use_frozen_embeddings_as_input=True,
        embedder_no_grad=True,
        embedder_model_api=None,
        embedder_fake_with_zeros=False,
        encoder_dropout_disabled=False,
        decoder_dropout_disabled=False,
        embeddings_from_layer_n=None,
        use_lora=False,
        embedder_gaussian_noise_level=0.0,
        **options,
    )
    with offline_parts(encoder_decoder, tokenizer, embedder):
        model = InversionModel(config)
    # Why: InversionModel keeps the embedder as a submodule, so every checkpoint would
    # carry a second copy of its weights. Inputs are precomputed embeddings; reverie's own
    # Embedder re-embeds for fidelity. The dimension was read above, at construction.
    model.embedder = None
    model.embedder_tokenizer = tokenizer  # read by the trainer's per-step statistics
    return model


def save_inversion_model(model: Any, directory: Path, meta: dict[str, Any]) -> None:
    """Weights in float16 (half the size, no measurable loss for inference), vec2text's
    config, the tokenizer, and reverie's description (`meta`) of what the model is for."""
    from safetensors.torch import save_file

    directory.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().to(torch.float16).contiguous() for k, v in _untied(model).items()}
    save_file(state, str(directory / WEIGHTS))
    (directory / VEC2TEXT_CONFIG).write_text(model.config.to_json_string())
    model.tokenizer.save_pretrained(str(directory))
    (directory / CONFIG).write_text(json.dumps(meta, indent=2))


def read_meta(directory: Path) -> dict[str, Any]:
    path = directory / CONFIG
    if not directory.is_dir():
        raise InverterError(f"inverter directory {directory} does not exist")
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        raise InverterError(
            f"{directory} is not a reverie inverter (no {CONFIG}; make one with `reverie inverter train`)"
        ) from None
    except ValueError as exc:
        raise InverterError(f"{path} is corrupt: {exc}") from None


def load_inversion_model(directory: Path, embedder: Any) -> Any:
    """The model saved by `save_inversion_model`, on CPU, in eval mode."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    try:
        config = InversionConfig.from_json_file(str(directory / VEC2TEXT_CONFIG))
        tokenizer = transformers.AutoTokenizer.from_pretrained(str(directory), local_files_only=True)
        state = load_file(str(directory / WEIGHTS))
    except (OSError, ValueError, SafetensorError) as exc:
        raise InverterError(f"cannot load the inverter in {directory}: {exc}") from None
    with offline_parts(config.encoder_decoder, tokenizer, embedder):
        model = InversionModel(config)
    model.embedder = None
    model.embedder_tokenizer = tokenizer
    missing, unexpected = model.load_state_dict(
        {k: v.to(torch.float32) for k, v in state.items()}, strict=False
    )
    tied = set(model.state_dict()) - set(_untied(model))
    missing = [k for k in missing if k not in tied]
    if missing or unexpected:
        raise InverterError(
            f"the inverter in {directory} does not match its config "
            f"(missing {missing[:3]}, unexpected {unexpected[:3]}): a corrupt or foreign checkpoint"
        )
    return model.eval()


def _untied(model: Any) -> dict[str, torch.Tensor]:
    """The state dict with each tensor once: T5 ties its input embeddings of encoder and
    decoder and its output layer to one matrix, which a plain state dict lists four times."""
    seen: set[int] = set()
    out = {}
    for key, tensor in model.state_dict().items():
        if tensor.data_ptr() not in seen:
            seen.add(tensor.data_ptr())
            out[key] = tensor
    return out


def offline_trainer(model: Any, args: transformers.TrainingArguments, **kwargs: Any) -> Any:
    """vec2text's InversionTrainer, constructed without the hub.

    Why: BaseTrainer.__init__ calls `evaluate.load("accuracy"/"sacrebleu"/"rouge")`, which
    downloads metric scripts from the hub. reverie evaluates with its own metrics
    (`reverie inverter eval`), so the trainer gets metrics that say so if ever called.
    """

    with mock.patch.object(base.evaluate, "load", _UnusedMetric):
        return InversionTrainer(model=model, args=args, **kwargs)


class _UnusedMetric:
    def __init__(self, name: str, *args: Any, **kwargs: Any) -> None:
        self.name = name

    def compute(self, *args: Any, **kwargs: Any) -> Any:
        raise InverterError(
            f"vec2text's hub metric {self.name!r} is not available offline; see `reverie inverter eval`"
        )


def load_pretrained_corrector(source: str) -> Any:
    """vec2text's pretrained gtr-base inverter and corrector, through vec2text's loaders:
    from the hub or its cache (`source` = "gtr-base"), or a local directory holding
    `inversion/` (jxm/gtr__nq__32) and `corrector/` (jxm/gtr__nq__32__correct).

    Why not vec2text.api.load_pretrained_corrector: it builds its trainers with `args=None`,
    and transformers then creates `./tmp_trainer` in the working directory of the daemon.
    """

    if source == "gtr-base":
        inversion_source, corrector_source = "jxm/gtr__nq__32", "jxm/gtr__nq__32__correct"
    else:
        root = Path(source).expanduser()
        inversion_source, corrector_source = str(root / "inversion"), str(root / "corrector")
    try:
        inversion_model = InversionModel.from_pretrained(inversion_source)
        corrector_model = vec2text.models.CorrectorEncoderModel.from_pretrained(corrector_source)
    except (OSError, ValueError) as exc:  # not on the hub, not in the cache, not a model directory
        raise InverterError(
            f"cannot load vec2text's gtr-base corrector from {source!r} (hub, cache or directory): {exc}"
        ) from None
    scratch = _scratch_arguments()
    with mock.patch.object(base.evaluate, "load", _UnusedMetric):
        inversion_trainer = InversionTrainer(
            model=inversion_model,
            args=scratch,
            data_collator=transformers.DataCollatorForSeq2Seq(
                inversion_model.tokenizer, label_pad_token_id=-100
            ),
        )
        corrector_model.config.dispatch_batches = None  # vec2text's own backwards-compatibility step
        return vec2text.trainers.Corrector(
            model=corrector_model,
            inversion_trainer=inversion_trainer,
            args=scratch,
            data_collator=vec2text.collator.DataCollatorForCorrection(tokenizer=inversion_model.tokenizer),
        )


def _scratch_arguments() -> transformers.TrainingArguments:
    return transformers.TrainingArguments(
        output_dir=str(Path(tempfile.gettempdir()) / "reverie-vec2text"), report_to=[], save_strategy="no"
    )


def invert_with_corrector(corrector: Any, vectors: torch.Tensor, steps: int, beam_width: int) -> list[str]:
    """vec2text's own inversion loop: the hypothesis, then `steps` rounds of correction."""
    return vec2text.invert_embeddings(
        vectors, corrector, num_steps=steps or None, sequence_beam_width=beam_width if steps else 0
    )
