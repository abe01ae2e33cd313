"""The LM's linear layers for the search's steps, which multiply a few rows (one a beam) by
each weight matrix.

A step of the search reads every weight of the LM to compute a few rows. In float32 on a
CPU, PyTorch's product `x @ W.T` (MKL's, on an AMD EPYC) took 1.5-1.75 times as long for
4 rows as for one; the same product with its operands swapped, `(W @ x.T).T`, made a step of
4 beams 1.6 times faster and a search about 14% shorter, was faster for 2 to 32 rows, about
the same over prompts of up to 960 rows and slower over 1,920 (`bench/lm_step.py`;
docs/inversion.md, "A step of a few beams, weight first"). Elsewhere (bfloat16, a GPU) the
layer is PyTorch's own.
"""

from __future__ import annotations

import torch
from torch import nn


class WeightFirstLinear(nn.Linear):
    """nn.Linear that computes `(W @ x.T).T` on a CPU in float32: the same values up to
    float rounding, in the order that suits a few rows."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dtype != torch.float32 or x.device.type != "cpu":
            return super().forward(x)
        rows = x.reshape(-1, x.shape[-1])
        out = torch.mm(self.weight, rows.T).T
        if self.bias is not None:
            out = out + self.bias
        return out.reshape(*x.shape[:-1], self.out_features)


def multiply_weight_first(model: nn.Module, enabled: bool = True) -> None:
    """Make every linear layer of `model` a WeightFirstLinear (`enabled`) or PyTorch's own
    again (benches compare the two), in place: only its class changes, so its weights,
    hooks and any adapter that wraps it stay as they are."""
    was, becomes = (nn.Linear, WeightFirstLinear) if enabled else (WeightFirstLinear, nn.Linear)
    for module in model.modules():
        if type(module) is was:
            module.__class__ = becomes
