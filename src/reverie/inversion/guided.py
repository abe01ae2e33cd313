"""Guided search: text for a vector, written by a pretrained LM and steered by the embedder.

The LM proposes next tokens; every candidate continuation is embedded and ranked by its
cosine to the target vector (vec2text's sequence-level beam, ZSInvert's zero-shot guided
decoding). Two trained parts steer the proposals when present (inversion/conditioning.py):
a vocabulary bias (which tokens the sentence probably holds) and prefix vectors fed to the
LM before the text (vec2text's decoder-only inverter). Without them the search still runs,
zero-shot, on the LM alone.

Texts that already exist (a merged memory's members, a blend's parents) enter as
hypotheses: they are candidates themselves, so the text found is never further from the
vector than the best of them, and their words steer the proposals. A vector with no texts
of its own is steered by the texts nearest to it (its partition's, the inverter's
phrasebook's: phrasebook.py), which are never shown as its text.

Several vectors are searched together (the invert job's batch): the LM reads their beams as
rows of one batch, which on a CPU costs little more than one vector's rows (the step is
bound by reading the weights), and their candidates are ranked in one embedding call.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field, replace

import numpy as np
import torch

from reverie.config import InversionSettings
from reverie.inversion.base_lm import BaseLM
from reverie.inversion.embedders import Embedder
from reverie.inversion.fluency import mean_logprobs
from reverie.inversion.keywords import choose_keywords, words_of

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
    max_tokens: int = 64  # at most; a steered search's own cap grows with the expected length
    patience: int = 6  # tokens without a closer text before the search stops
    keywords: int = 8  # words from the vocabulary bias named in the prompt
    keyword_pool: int = 40  # likeliest words the embedder chooses them from (keywords.py); 0: the likeliest
    bias: float = 1.0  # weight of the vocabulary bias on the LM's next-token scores
    repeat_penalty: float = 2.0  # taken off a content word's score once the text holds it
    no_repeat: int = 3  # a run of this many tokens is never written twice (0: allowed)
    polish: int = 3  # rounds of word edits (drop a word, add a keyword) kept while they bring it closer
    fluency: float = 0.025  # cosine a text may trade for reading one nat per token better (fluency.py)
    enough: float = 0.97  # a given text this close is shown as it is: no search

    @classmethod
    def of(cls, settings: InversionSettings) -> SearchSettings:
        s = settings
        return cls(
            s.beam_width,
            s.expand,
            s.max_tokens,
            s.patience,
            s.keywords,
            keyword_pool=s.keyword_pool,
            polish=s.polish,
            fluency=s.fluency,
            enough=s.enough,
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
    words: tuple[str, ...] = ()  # more likely words, the likeliest first: a pool to choose keywords from
    prefix: torch.Tensor | None = None  # (k, hidden): input vectors before the text
    expected_tokens: float | None = None  # how long the search may write grows with it


@dataclass(frozen=True)
class Task:
    """One vector to write text for, with what steers the search."""

    vector: np.ndarray
    steering: Steering
    hypotheses: Sequence[str] = ()  # texts that may be shown for it (its members, a blend's parents)
    context: Sequence[str] = ()  # texts near it that are not its own: they steer the writing only


class GuidedSearch:
    def __init__(self, lm: BaseLM, embedder: Embedder, settings: SearchSettings) -> None:
        self.lm, self.embedder, self.settings = lm, embedder, settings
        pieces = _pieces(lm)
        self._content = _content_tokens(pieces) if settings.repeat_penalty else None
        self._line_breaks = _line_break_tokens(pieces)
        self._stops = set(lm.stop_ids)

    def run(self, tasks: Sequence[Task]) -> list[Found]:
        """For each task, the text closest to its vector among its hypotheses and what the
        beam writes. The vectors' beams share each LM step (rows of one batch, which costs
        little more than one vector's) and each ranking call. A vector with a given text
        already `enough` close is not searched: no written text was measured to beat one
        (docs/inversion.md)."""
        starts = [self._start(task) for task in tasks]
        searches = {
            i: _Search(target, self._chosen(steering, closest, target), closest, self._limit(steering))
            for i, (target, steering, best, closest) in enumerate(starts)
            if best.cosine < self.settings.enough
        }
        if searches:
            self._beams(list(searches.values()))
        out = []
        for i, (target, _, best, _) in enumerate(starts):
            drafts = searches[i].drafts() if i in searches else []
            if drafts and max(d.cosine for d in drafts) > best.cosine:
                polished = self._polish(drafts[0], target, searches[i].steering.keywords)
                texts = list(dict.fromkeys(without_list_mark(d.text) for d in [*drafts, polished]))
                best = self._readable_best(best, texts, target)
            out.append(best)
        return out

    def steered(self, task: Task) -> Steering:
        """How the search steers this task: the keywords its prompt names, chosen."""
        target, steering, _, closest = self._start(task)
        return self._chosen(steering, closest, target)

    def _start(self, task: Task) -> tuple[np.ndarray, Steering, Found, list[str]]:
        """The unit target, the steering, the best given text, and the texts the prompt shows."""
        target = np.asarray(task.vector, dtype=np.float32)
        target = target / max(float(np.linalg.norm(target)), 1e-12)
        given, scores = self._by_closeness(task.hypotheses, target)
        steering, best, closest = task.steering, Found("", -1.0, False), given[:PROMPT_HYPOTHESES]
        if given:
            best = Found(given[0], float(scores[0]), True)
            # a text read from its members or parents runs about as long as they do
            longest = max(len(self.lm.encode(h)) for h in given)
            steering = replace(steering, expected_tokens=min(steering.expected_tokens or longest, longest))
        else:  # steered by the texts near it, never shown: the fast ranking copy will do
            closest = self._by_closeness(task.context, target, ranking=True)[0][:PROMPT_HYPOTHESES]
        return target, steering, best, closest

    def _chosen(self, steering: Steering, closest: list[str], target: np.ndarray) -> Steering:
        """The steering with its keywords chosen by the embedder (keywords.py) among its
        likely words and the closest texts' words; only a vector searched pays for it."""
        if not (steering.words and steering.keywords):
            return steering
        pool = [*steering.words, *words_of(closest)]
        chosen = choose_keywords(self.embedder, target, pool, len(steering.keywords))
        return replace(steering, keywords=chosen)

    def _by_closeness(
        self, texts: Sequence[str], target: np.ndarray, ranking: bool = False
    ) -> tuple[list[str], np.ndarray]:
        """The distinct non-empty texts, the closest to the target first, and their cosines."""
        distinct = [t for t in dict.fromkeys(t.strip() for t in texts) if t]
        if not distinct:
            return [], np.zeros(0, dtype=np.float32)
        scores = self.embedder.encode(distinct, ranking=ranking) @ target
        order = np.argsort(-scores, kind="stable")
        return [distinct[i] for i in order], scores[order]

    def _limit(self, steering: Steering) -> int:
        """How many tokens the search may write: 1.4 times the length the model expects, plus 8."""
        if steering.expected_tokens is None:
            return self.settings.max_tokens
        return min(self.settings.max_tokens, int(LENGTH_SLACK * steering.expected_tokens) + 8)

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

    def _beams(self, searches: list[_Search]) -> None:
        """Write for every search at once, each keeping its best texts (_Search). The
        prompts are padded on the left into one batch; a search that stops gives up its rows."""
        s, model = self.settings, self.lm.model
        prompts = [self._prompt(search) for search in searches]
        width = max(len(prompt) for prompt in prompts)
        inputs = torch.zeros(len(prompts), width, prompts[0].shape[-1], dtype=model.dtype)
        mask = torch.zeros(len(prompts), width, dtype=torch.long)
        for row, prompt in enumerate(prompts):
            inputs[row, width - len(prompt) :], mask[row, width - len(prompt) :] = prompt, 1
        positions = (mask.cumsum(-1) - 1).clamp(min=0)
        with torch.inference_mode():
            out = model(inputs_embeds=inputs, attention_mask=mask, position_ids=positions, use_cache=True)
        cache, logits, positions = out.past_key_values, out.logits[:, -1], positions[:, -1:]
        for step in range(max(search.limit for search in searches)):
            live = [search for search in searches if not search.done]
            raw = torch.log_softmax(logits.float(), dim=-1)
            scores = raw.masked_fill(self._line_breaks[: raw.shape[-1]], -torch.inf)  # one paragraph
            scores = scores + self._biases(live, raw.shape[-1])
            beams = [beam for search in live for beam in search.beams]
            if self._content is not None:
                scores = scores - s.repeat_penalty * _used(beams, self._content, raw.shape[-1])
            if s.no_repeat:
                scores = scores.masked_fill(_repeating(beams, s.no_repeat, raw.shape[-1]), -torch.inf)
            top = torch.topk(scores, s.expand, dim=-1)
            rows = np.cumsum([0] + [len(search.beams) for search in live])
            for search, a, b in zip(live, rows[:-1], rows[1:], strict=True):
                search.propose(top.indices[a:b], raw[a:b], self._stops, self.lm)
            self._rank(live)
            kept = [
                int(a) + k
                for search, a in zip(live, rows[:-1], strict=True)
                for k in search.advance(s, last=step + 1 >= search.limit)
            ]
            if not kept:
                break
            chosen = torch.tensor(kept)
            cache.reorder_cache(chosen)
            mask = torch.cat([mask[chosen], torch.ones(len(kept), 1, dtype=torch.long)], dim=-1)
            positions = positions[chosen] + 1
            tokens = torch.tensor(
                [[beam[-1]] for search in searches if not search.done for beam in search.beams]
            )
            with torch.inference_mode():
                out = model(
                    input_ids=tokens,
                    attention_mask=mask,
                    position_ids=positions,
                    past_key_values=cache,
                    use_cache=True,
                )
            cache, logits = out.past_key_values, out.logits[:, -1]

    def _rank(self, searches: list[_Search]) -> None:
        """Each search's candidate texts scored against its target, in one embedding call;
        a text seen before (an ended beam is the text it already was) keeps its cosine."""
        wanted = list(
            dict.fromkeys(
                (k, t) for k, search in enumerate(searches) for t in search.texts if t not in search.seen
            )
        )
        if wanted:
            targets = np.stack([searches[k].target for k, _ in wanted])
            cosines = self._cosines([text for _, text in wanted], targets)
            for (k, text), cosine in zip(wanted, cosines, strict=True):
                searches[k].seen[text] = float(cosine)

    def _prompt(self, search: _Search) -> torch.Tensor:
        """(length, hidden): what the LM reads before the text: the trained prefix, which
        stands for the prompt, or the prompt naming the keywords and the closest texts."""
        model, steering = self.lm.model, search.steering
        if steering.prefix is not None:
            return steering.prefix.to(model.dtype)
        hint = f" using these words: {', '.join(steering.keywords)}" if steering.keywords else ""
        given = GIVEN.format(lines="\n".join(f"- {h}" for h in search.closest)) if search.closest else ""
        prompt = torch.tensor(self.lm.encode(PROMPT.format(hint=hint, given=given)))
        with torch.inference_mode():
            return model.get_input_embeddings()(prompt)

    def _biases(self, live: list[_Search], vocab: int) -> torch.Tensor | float:
        """(rows, vocab): each search's vocabulary bias on its beams' rows."""
        if all(search.steering.token_bias is None for search in live):
            return 0.0
        none = torch.zeros(vocab)
        rows = [
            none if (bias := search.steering.token_bias) is None else bias.float()
            for search in live
            for _ in search.beams
        ]
        return self.settings.bias * torch.stack(rows)

    def _cosines(self, texts: list[str], targets: np.ndarray) -> np.ndarray:
        """Each text's cosine to its target (one for all, or one a text), embedded in one
        call with the fast ranking copy; an empty text scores -1."""
        present = [i for i, t in enumerate(texts) if t.strip()]
        scores = np.full(len(texts), -1.0, dtype=np.float32)
        if present:
            embedded = self.embedder.encode([texts[i] for i in present], ranking=True)
            per_text = np.broadcast_to(targets, (len(texts), embedded.shape[1]))
            scores[present] = np.sum(embedded * per_text[present], axis=1)
        return scores


@dataclass
class _Search:
    """One vector's beam: its partial texts (token ids), how well each reads so far (summed
    log-probability under the LM, before any steering), and the best texts it has written,
    ranked by closeness and how well they read: the best of all and the best that ended
    where the LM would end it (no fragment)."""

    target: np.ndarray
    steering: Steering
    closest: list[str]
    limit: int
    beams: list[list[int]] = field(default_factory=lambda: [[]])
    logp: list[float] = field(default_factory=lambda: [0.0])
    best: dict[bool, tuple[float, Found]] = field(default_factory=dict)  # ended or not: (score, text)
    stale: int = 0  # tokens since a better text came
    done: bool = False
    candidates: list[tuple[int, int]] = field(default_factory=list)  # (beam, token) proposed this step
    live: int = 0  # the first `live` candidates go on; the rest end their beam
    steps: np.ndarray = field(default_factory=lambda: np.zeros(0))  # each candidate's log-probability
    texts: list[str] = field(default_factory=list)  # each candidate's text
    seen: dict[str, float] = field(default_factory=dict)  # the cosine of every text ranked

    def propose(self, tokens: torch.Tensor, raw: torch.Tensor, stops: set[int], lm: BaseLM) -> None:
        """The candidate texts of this step: each beam's top tokens (`tokens`, its rows of
        the batch). `raw`: the LM's unsteered log-probabilities, how well each reads."""
        proposed = [(row, token) for row, top in enumerate(tokens.tolist()) for token in top]
        live = [(row, token) for row, token in proposed if token not in stops]
        ended = [(row, token) for row, token in proposed if token in stops and self.beams[row]]
        self.candidates, self.live = live + ended, len(live)
        rows = torch.tensor([row for row, _ in self.candidates], dtype=torch.long)
        tokens = torch.tensor([token for _, token in self.candidates], dtype=torch.long)
        self.steps = raw[rows, tokens].numpy()
        self.texts = lm.decode_many([self.beams[row] + [token] for row, token in self.candidates])

    def advance(self, s: SearchSettings, last: bool) -> list[int]:
        """Keep the best texts and the best `beam_width` live candidates (by their ranked
        cosines); the rows (of this search's beams) the next step extends, none when the
        search stops."""
        cosines = np.asarray([self.seen[text] for text in self.texts], dtype=np.float32)
        rows = np.asarray([row for row, _ in self.candidates], dtype=int)
        lengths = np.asarray([len(b) for b in self.beams])[rows] + 1
        reads = (np.asarray(self.logp)[rows] + self.steps) / lengths  # mean log-probability per token
        ranked = cosines + s.fluency * reads
        improved = False
        for i, (text, cosine, score) in enumerate(zip(self.texts, cosines, ranked, strict=True)):
            ended = i >= self.live
            if text and score > self.best.get(ended, (-np.inf,))[0]:
                self.best[ended], improved = (float(score), Found(text, float(cosine), False)), True
        self.stale = 0 if improved else self.stale + 1
        if last or not self.live or self.stale >= s.patience:
            self.done = True
            return []
        keep = np.argsort(-ranked[: self.live], kind="stable")[: s.beam_width]
        self.logp = [self.logp[rows[k]] + float(self.steps[k]) for k in keep]
        self.beams = [self.beams[rows[k]] + [self.candidates[k][1]] for k in keep]
        return [int(rows[k]) for k in keep]

    def drafts(self) -> list[Found]:
        """Its best texts, the best first."""
        return [found for _, found in sorted(self.best.values(), key=lambda pair: -pair[0])]


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


def _repeating(beams: list[list[int]], n: int, size: int) -> torch.Tensor:
    """(beams, vocab): True for a token that would end a run of `n` tokens the beam has
    already written. Without it a search loops ("to find her to find her"): a repeated
    phrase reads as likely to the LM and pulls the mean-pooled embedding its way."""
    banned = torch.zeros(len(beams), size, dtype=torch.bool)
    for row, tokens in enumerate(beams):
        tail = tokens[len(tokens) - n + 1 :] if n > 1 else []
        for i in range(len(tokens) - n + 1):
            if tokens[i : i + n - 1] == tail:
                banned[row, tokens[i + n - 1]] = True
    return banned
