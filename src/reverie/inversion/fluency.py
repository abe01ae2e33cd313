"""How well a text reads: the LM's own log-probability of it, after a neutral request.

A text close to its vector can still be word salad; the LM that writes knows English
better than the embedder that judges. The score is the mean log-probability per token of
the text and the end of the turn (a fragment that stops mid-phrase is unlikely to end
there), asked for with the same prompt whatever the vector: comparable across texts, and
across an inversion and the sentence it came from (perplexity = exp(-score)).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import torch

from reverie.inversion.base_lm import BaseLM

NEUTRAL_PROMPT = "<|im_start|>user\nWrite one short sentence.<|im_end|>\n<|im_start|>assistant\n"
BATCH = 32


def mean_logprobs(lm: BaseLM, texts: Sequence[str]) -> np.ndarray:
    """Per text, the mean log-probability of its tokens and the end of the turn (nats, <= 0)."""
    totals, counts = _scored(lm, texts)
    return totals / np.maximum(counts, 1)


def perplexity(lm: BaseLM, texts: Sequence[str]) -> float:
    """The LM's perplexity over all the texts' tokens together (lower reads better)."""
    totals, counts = _scored(lm, texts)
    return round(math.exp(-float(totals.sum()) / max(int(counts.sum()), 1)), 2)


def _scored(lm: BaseLM, texts: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
    """Summed log-probabilities and token counts, batched: one LM forward per BATCH texts."""
    prompt = lm.encode(NEUTRAL_PROMPT)
    end = lm.stop_ids[-1]
    totals, counts = np.zeros(len(texts)), np.zeros(len(texts))
    for start in range(0, len(texts), BATCH):
        bodies = [lm.encode(t) + [end] for t in texts[start : start + BATCH]]
        width = len(prompt) + max(len(b) for b in bodies)
        ids = torch.full((len(bodies), width), end, dtype=torch.long)
        mask = torch.zeros_like(ids)
        for row, body in enumerate(bodies):
            ids[row, : len(prompt) + len(body)] = torch.tensor(prompt + body)
            mask[row, : len(prompt) + len(body)] = 1
        with torch.inference_mode():
            logits = lm.model(input_ids=ids, attention_mask=mask).logits.float()
        logprobs = torch.log_softmax(logits[:, :-1], dim=-1).gather(-1, ids[:, 1:, None])[..., 0]
        scored = mask[:, 1:].clone()
        scored[:, : len(prompt) - 1] = 0  # the prompt is given, not read
        totals[start : start + len(bodies)] = (logprobs * scored).sum(-1).numpy()
        counts[start : start + len(bodies)] = scored.sum(-1).numpy()
    return totals, counts
