"""The float type the inverter's models compute in on this machine.

bfloat16 halves what a model reads and doubles what the CPU computes per instruction, where
the CPU has bfloat16 instructions (AVX512-BF16, AMX). Elsewhere (AVX2 only) PyTorch emulates
them: an LM's forward over a prompt ran 5 times slower than in float32 (docs/inversion.md,
"The LM's float type"), so there the models stay float32.
"""

from __future__ import annotations

import torch


def computes_bfloat16() -> bool:
    """Whether this CPU has bfloat16 instructions."""
    return bool(torch.cpu._is_avx512_bf16_supported() or torch.cpu._is_amx_tile_supported())


def fast_dtype() -> torch.dtype:
    """bfloat16 where this CPU computes in it, else float32."""
    return torch.bfloat16 if computes_bfloat16() else torch.float32
