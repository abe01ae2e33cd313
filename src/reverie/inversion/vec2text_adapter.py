"""Everything reverie takes from vec2text, and the workarounds that let it run offline.

vec2text 0.0.13 assumes a machine on the Hugging Face hub and a research checkout. Each
workaround below says which assumption it undoes; nothing else in reverie imports vec2text.
"""

from __future__ import annotations

import logging
import tempfile
from pathlib import Path
from typing import Any
from unittest import mock

import torch
import transformers
import vec2text
from vec2text.models import InversionModel
from vec2text.trainers import InversionTrainer, base

from reverie.errors import InverterError

# Why: importing vec2text (its experiments module) turns torch's dynamo logging up to INFO,
# which prints compile tables when any reverie command exits.
torch._logging.set_logs(dynamo=logging.WARNING)


class _UnusedMetric:
    """Why: vec2text's BaseTrainer.__init__ calls `evaluate.load("accuracy"/"sacrebleu"/...)`,
    which downloads metric scripts from the hub. reverie evaluates with its own metrics
    (`reverie inverter eval`); these stand in, and say so if ever called."""

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
