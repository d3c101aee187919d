"""Sampling parameters and the batched sampler.

Order as in transformers' generate: repetition penalty, temperature, top-k, top-p. Each candidate
draws from its own ``torch.Generator`` so its output depends only on its seed, never on what else
is in the batch.
"""
from __future__ import annotations

import secrets
from dataclasses import dataclass, field

import torch


class InvalidRequestError(ValueError):
    """A request the engine refuses at submit time (nothing was allocated for it)."""


@dataclass
class SamplingParams:
    n: int = 1
    max_tokens: int = 64
    temperature: float = 1.0  # 0 decodes greedily
    top_p: float = 1.0
    top_k: int = 0  # 0 switches top-k off
    repetition_penalty: float = 1.0
    max_token_run: int = 0  # a token may follow itself at most this many times in a row; 0 = off
    no_repeat_ngram_size: int = 0  # no n-gram of the generated tokens twice (transformers' rule); 0 = off
    stop: list[str] = field(default_factory=list)
    seed: int | None = None
    json_schema: dict | None = None
    timeout_s: float | None = None  # per-request deadline, from submission
    ignore_eos: bool = False

    def validate(self, max_n: int, max_tokens: int) -> None:
        if not isinstance(self.n, int) or not 1 <= self.n <= max_n:
            raise InvalidRequestError(f"n must be an integer in [1, {max_n}], got {self.n!r}")
        if not isinstance(self.max_tokens, int) or not 1 <= self.max_tokens <= max_tokens:
            raise InvalidRequestError(f"max_tokens must be an integer in [1, {max_tokens}], got {self.max_tokens!r}")
        if self.temperature < 0:
            raise InvalidRequestError(f"temperature must be >= 0, got {self.temperature}")
        if not 0 < self.top_p <= 1:
            raise InvalidRequestError(f"top_p must be in (0, 1], got {self.top_p}")
        if self.top_k < 0:
            raise InvalidRequestError(f"top_k must be >= 0, got {self.top_k}")
        if self.repetition_penalty <= 0:
            raise InvalidRequestError(f"repetition_penalty must be > 0, got {self.repetition_penalty}")
        for name in ("max_token_run", "no_repeat_ngram_size"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 0:
                raise InvalidRequestError(f"{name} must be an integer >= 0, got {value!r}")
        if isinstance(self.stop, str):
            self.stop = [self.stop]
        if any(not isinstance(s, str) or not s for s in self.stop):
            raise InvalidRequestError("stop strings must be non-empty strings")
        if self.timeout_s is not None and self.timeout_s < 0:
            raise InvalidRequestError(f"timeout_s must be >= 0, got {self.timeout_s}")

    @property
    def greedy(self) -> bool:
        return self.temperature == 0


def candidate_generator(seed: int | None, index: int, device="cpu") -> torch.Generator:
    """Candidate ``index`` of a request seeded ``seed`` gets its own stream (random when no seed)."""
    if seed is None:
        seed = secrets.randbits(62)
    return torch.Generator(device=device).manual_seed((seed * 1_000_003 + index) % (1 << 63))


def apply_repetition_penalty(logits: torch.Tensor, rows: list[int], seen: list[torch.Tensor], penalty: list[float]):
    """transformers' RepetitionPenaltyLogitsProcessor: divide positive, multiply negative scores."""
    for row, ids, p in zip(rows, seen, penalty):
        scores = logits[row].gather(0, ids)
        logits[row].scatter_(0, ids, torch.where(scores < 0, scores * p, scores / p))


def banned_repeats(generated: list[int], max_run: int, ngram: int) -> set[int]:
    """Tokens that would make a run longer than ``max_run`` or repeat an ``ngram``-gram of ``generated``.

    A small model stutters (爷爷爷, 岁岁岁岁, 身体健康，身体健康); both rules see only the generated
    tokens, so a prompt may repeat itself freely."""
    banned: set[int] = set()
    if max_run and len(generated) >= max_run and len(set(generated[-max_run:])) == 1:
        banned.add(generated[-1])
    if ngram and len(generated) >= ngram:
        prefix = tuple(generated[len(generated) - ngram + 1:])
        for start in range(len(generated) - ngram + 1):
            if tuple(generated[start:start + ngram - 1]) == prefix:
                banned.add(generated[start + ngram - 1])
    return banned


def filter_top_k_top_p(logits: torch.Tensor, top_k: torch.Tensor, top_p: torch.Tensor) -> torch.Tensor:
    """Per-row top-k (0 = off) then top-p (1 = off) on temperature-scaled logits [R, V]."""
    vocab = logits.shape[-1]
    sorted_logits, order = torch.sort(logits, dim=-1, descending=True)
    ranks = torch.arange(vocab, device=logits.device)
    k = torch.where(top_k > 0, top_k.clamp(max=vocab), vocab)
    # ties at the k-th value survive, as with transformers' `< topk(...)[..., -1]` test
    kth = sorted_logits.gather(1, (k - 1).unsqueeze(1))
    sorted_logits = sorted_logits.masked_fill(sorted_logits < kth, float("-inf"))
    # top-p: drop tokens once the mass *before* them reaches top_p (the first always stays)
    probs = sorted_logits.softmax(dim=-1)
    before = probs.cumsum(dim=-1) - probs
    drop = (before >= top_p.unsqueeze(1) - 1e-9) & (ranks > 0)
    drop &= (top_p < 1).unsqueeze(1)
    sorted_logits = sorted_logits.masked_fill(drop, float("-inf"))
    return torch.full_like(logits, float("-inf")).scatter(1, order, sorted_logits)


def sample_rows(logits: torch.Tensor, params: list[SamplingParams], generators: list[torch.Generator]) -> list[int]:
    """One token per row of ``logits`` [R, V] (already penalised and masked)."""
    tokens = [0] * len(params)
    greedy = [i for i, p in enumerate(params) if p.greedy]
    if greedy:
        rows = logits if len(greedy) == len(params) else logits[greedy]  # all greedy: no row copy
        picked = rows.argmax(dim=-1).tolist()
        for i, t in zip(greedy, picked):
            tokens[i] = t
    sampled = [i for i, p in enumerate(params) if not p.greedy]
    if sampled:
        rows = logits[sampled]
        temperature = torch.tensor([params[i].temperature for i in sampled], dtype=rows.dtype).unsqueeze(1)
        rows = rows / temperature
        if any(params[i].top_k or params[i].top_p < 1 for i in sampled):
            top_k = torch.tensor([params[i].top_k for i in sampled])
            top_p = torch.tensor([params[i].top_p for i in sampled], dtype=rows.dtype)
            rows = filter_top_k_top_p(rows, top_k, top_p)
        probs = rows.softmax(dim=-1)
        for row, i in enumerate(sampled):
            tokens[i] = int(torch.multinomial(probs[row], 1, generator=generators[i]))
    return tokens
