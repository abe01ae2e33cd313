"""Guided search: text for a vector, written by a pretrained LM and steered by the embedder.

The LM proposes next tokens; every candidate continuation is embedded and ranked by its
cosine to the target vector (vec2text's sequence-level beam, ZSInvert's zero-shot guided
decoding). Two trained parts steer the proposals when present (inversion/conditioning.py):
a vocabulary bias (which tokens the sentence probably holds) and prefix vectors fed to the
LM before the text (vec2text's decoder-only inverter). Without them the search still runs,
zero-shot, on the LM alone.

Texts that already exist (a merged memory's members, a blend's parents, the nearest texts
in the store) enter as hypotheses: they are candidates themselves, so the text found is
never further from the vector than the best of them, and their words steer the proposals.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, replace

import numpy as np
import torch

from reverie.config import InversionSettings
from reverie.inversion.base_lm import BaseLM
from reverie.inversion.embedders import Embedder
from reverie.inversion.fluency import mean_logprobs

PROMPT = "<|im_start|>user\nWrite one short sentence{hint}.{given}<|im_end|>\n<|im_start|>assistant\n"
GIVEN = " Say what these say:\n{lines}"
LIST_MARK = re.compile(r"^\s*[-*\u2022]\s+")  # the prompt lists given texts as "- text"
PROMPT_HYPOTHESES = 3  # the closest hypotheses shown to the LM
LENGTH_SLACK = 1.4  # a written text may run this much longer than the model expects


@dataclass(frozen=True)
class SearchSettings:
    """How hard to look. The defaults are the ones measured in docs/inversion.md."""

    beam_width: int = 4  # partial texts kept after each token
    expand: int = 6  # next tokens tried per kept text
    max_tokens: int = 64  # at most; a steered search stops near the length the model expects
    patience: int = 6  # tokens without a closer text before the search stops
    keywords: int = 8  # words from the vocabulary bias named in the prompt
    bias: float = 1.0  # weight of the vocabulary bias on the LM's next-token scores
    repeat_penalty: float = 2.0  # taken off a content word's score once the text holds it
    polish: int = 3  # rounds of word edits (drop a word, add a keyword) kept while they bring it closer
    fluency: float = 0.02  # cosine a text may trade for reading one nat per token better (fluency.py)

    @classmethod
    def of(cls, settings: InversionSettings) -> SearchSettings:
        s = settings
        return cls(
            s.beam_width, s.expand, s.max_tokens, s.patience, s.keywords, polish=s.polish, fluency=s.fluency
        )


@dataclass(frozen=True)
class Found:
    text: str
    cosine: float
    from_hypothesis: bool  # the best text is one given, not one written


@dataclass(frozen=True)
class Steering:
    """What a trained model tells the search about one vector (both optional)."""

    token_bias: torch.Tensor | None = None  # (vocab,) added to the LM's log-probabilities
    keywords: tuple[str, ...] = ()
    prefix: torch.Tensor | None = None  # (k, hidden): input vectors before the text
    expected_tokens: float | None = None  # how long the sentence probably is (distinct tokens)


class GuidedSearch:
    def __init__(self, lm: BaseLM, embedder: Embedder, settings: SearchSettings) -> None:
        self.lm, self.embedder, self.settings = lm, embedder, settings
        pieces = _pieces(lm)
        self._content = _content_tokens(pieces) if settings.repeat_penalty else None
        self._line_breaks = _line_break_tokens(pieces)

    def run(
        self,
        vector: np.ndarray,
        steering: Steering,
        hypotheses: Sequence[str] = (),
        context: Sequence[str] = (),
    ) -> Found:
        """The text closest to `vector` among the hypotheses and what the beam writes;
        `context` (texts near the vector that are not its own: another memory's) steers the
        writing only."""
        target = np.asarray(vector, dtype=np.float32)
        target = target / max(float(np.linalg.norm(target)), 1e-12)
        given = [h for h in dict.fromkeys(h.strip() for h in hypotheses) if h]
        best = Found("", -1.0, False)
        closest: list[str] = []
        if given:
            scores = self.embedder.encode(given) @ target
            top = int(np.argmax(scores))
            best = Found(given[top], float(scores[top]), True)
            closest = [given[i] for i in np.argsort(-scores)[:PROMPT_HYPOTHESES]]
        closest = closest or [c for c in context if c.strip()][:PROMPT_HYPOTHESES]
        if given:  # a text read from its members or parents runs about as long as they do
            longest = max(len(self.lm.encode(h)) for h in given)
            steering = replace(steering, expected_tokens=min(steering.expected_tokens or longest, longest))
        drafts = self._beam(target, steering, closest)
        if drafts and max(d.cosine for d in drafts) > best.cosine:
            polished = self._polish(drafts[0], target, steering.keywords)
            texts = list(dict.fromkeys(without_list_mark(d.text) for d in [*drafts, polished]))
            best = self._readable_best(best, texts, target)
        return best

    def _readable_best(self, given: Found, drafts: list[str], target: np.ndarray) -> Found:
        """The draft that is closest once how well it reads is counted, if it is closer than
        the best given text; the given text when that one reads enough better. The fidelity
        is the embedder's own (the search ranked with its fast copy)."""
        cosines = self.embedder.encode(drafts) @ target
        w = self.settings.fluency
        reads = mean_logprobs(self.lm, drafts + ([given.text] if given.text else [])) if w else None
        scores = cosines + (w * reads[: len(drafts)] if reads is not None else 0.0)
        top = int(np.argmax(np.where(cosines > given.cosine, scores, -np.inf)))
        if cosines[top] <= given.cosine:
            return given
        if reads is not None and given.text and given.cosine + w * reads[-1] >= scores[top]:
            return given
        return Found(drafts[top], float(cosines[top]), False)

    def _polish(self, found: Found, target: np.ndarray, keywords: tuple[str, ...]) -> Found:
        """Word edits on the text found, each kept only while it brings the text closer."""
        for _ in range(self.settings.polish):
            words = found.text.split()
            edits = (
                [" ".join(words[:i] + words[i + 1 :]) for i in range(len(words))] if len(words) > 1 else []
            )
            present = {w.lower().strip(".,;:") for w in words}
            edits += [f"{found.text} {k}" for k in keywords if k not in present]
            if not edits:
                break
            cosines = self._cosines(edits, target)
            top = int(np.argmax(cosines))
            if cosines[top] <= found.cosine:
                break
            found = Found(edits[top], float(cosines[top]), False)
        return found

    def _beam(self, target: np.ndarray, steering: Steering, closest: list[str]) -> list[Found]:
        """The best text written, ranked by closeness and how well it reads so far, and the
        best one that ended where the LM would end it (no fragment)."""
        s, lm = self.settings, self.lm
        model = lm.model
        hint = f" using these words: {', '.join(steering.keywords)}" if steering.keywords else ""
        given = GIVEN.format(lines="\n".join(f"- {h}" for h in closest)) if closest else ""
        if steering.prefix is not None:  # the trained prefix stands for the prompt: text follows it
            embeds = steering.prefix[None].to(model.dtype)
        else:
            prompt = torch.tensor([lm.encode(PROMPT.format(hint=hint, given=given))])
            embeds = model.get_input_embeddings()(prompt)
        bias = None if steering.token_bias is None else s.bias * steering.token_bias.float()
        with torch.inference_mode():
            out = model(inputs_embeds=embeds, use_cache=True)
        cache, logits = out.past_key_values, out.logits[:, -1]
        beams: list[list[int]] = [[]]
        logp = [0.0]  # each beam's summed log-probability under the LM (before any steering)
        best: dict[bool, tuple[float, Found]] = {}  # ended or not: the best (score, text)
        stale = 0
        stops = set(lm.stop_ids)
        limit = s.max_tokens
        if steering.expected_tokens is not None:
            limit = min(limit, int(LENGTH_SLACK * steering.expected_tokens) + 8)
        for _ in range(limit):
            scores = raw = torch.log_softmax(logits.float(), dim=-1)
            scores = scores.masked_fill(self._line_breaks[: scores.shape[-1]], -torch.inf)  # one paragraph
            if bias is not None:
                scores = scores + bias
            if self._content is not None:
                scores = scores - s.repeat_penalty * _used(beams, self._content, scores.shape[-1])
            top = torch.topk(scores, s.expand, dim=-1).indices.tolist()
            candidates = [(row, token) for row, tokens in enumerate(top) for token in tokens]
            finished = [(row, token) for row, token in candidates if token in stops and beams[row]]
            live = [(row, token) for row, token in candidates if token not in stops]
            texts = [lm.decode(beams[row] + [token]) for row, token in live + finished]
            rows = torch.tensor([row for row, _ in live + finished])
            tokens = torch.tensor([token for _, token in live + finished])
            # how well each reads so far: mean log-probability per token (an ended one: its end too)
            steps = raw[rows, tokens].numpy()
            reads = (np.asarray(logp)[rows] + steps) / (np.asarray([len(b) for b in beams])[rows] + 1)
            cosines = self._cosines(texts, target)
            ranked = cosines + s.fluency * reads
            improved = False
            for i, (text, cosine, score) in enumerate(zip(texts, cosines, ranked, strict=True)):
                ended = i >= len(live)
                if text and score > best.get(ended, (-np.inf,))[0]:
                    best[ended], improved = (float(score), Found(text, float(cosine), False)), True
            stale = 0 if improved else stale + 1
            if not live or stale >= s.patience:
                break
            keep = np.argsort(-ranked[: len(live)], kind="stable")[: s.beam_width]
            rows = torch.tensor([live[k][0] for k in keep])
            logp = [logp[live[k][0]] + float(steps[k]) for k in keep]
            beams = [beams[live[k][0]] + [live[k][1]] for k in keep]
            cache.reorder_cache(rows)
            with torch.no_grad():
                out = model(
                    input_ids=torch.tensor([[b[-1]] for b in beams]), past_key_values=cache, use_cache=True
                )
            cache, logits = out.past_key_values, out.logits[:, -1]
        return [found for _, found in sorted(best.values(), key=lambda pair: -pair[0])]

    def _cosines(self, texts: list[str], target: np.ndarray) -> np.ndarray:
        present = [i for i, t in enumerate(texts) if t.strip()]
        scores = np.full(len(texts), -1.0, dtype=np.float32)
        if present:
            scores[present] = self.embedder.encode([texts[i] for i in present], ranking=True) @ target
        return scores


def without_list_mark(text: str) -> str:
    """A draft without the "- " it may copy from the prompt's list of given texts."""
    return LIST_MARK.sub("", text, count=1)


def _pieces(lm: BaseLM) -> list[str | None]:
    """The LM's vocabulary as token pieces, by id."""
    return list(lm.tokenizer.convert_ids_to_tokens(list(range(int(lm.model.config.vocab_size)))))


def _content_tokens(pieces: list[str | None]) -> torch.Tensor:
    """Tokens that start a word of four letters or more: the ones worth not repeating."""
    return torch.tensor(
        [p is not None and p.startswith("Ġ") and p[1:].isalpha() and len(p) > 4 for p in pieces]
    )


def _line_break_tokens(pieces: list[str | None]) -> torch.Tensor:
    """Tokens that break the line: a memory is written as one paragraph (a run of lines
    reads as a list, and repeats itself at a low perplexity)."""
    return torch.tensor([p is not None and ("Ċ" in p or "č" in p) for p in pieces])


def _used(beams: list[list[int]], content: torch.Tensor, size: int) -> torch.Tensor:
    """(beams, vocab): 1 where a beam already holds that content token."""
    used = torch.zeros(len(beams), size)
    for row, tokens in enumerate(beams):
        if tokens:
            used[row, tokens] = 1.0
    return used * content[:size]
