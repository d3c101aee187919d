"""The GRPO reward: the judge's score in [0, 1] minus penalties (``compute_rewards``, ``RewardConfig``).

Judges trained on the paper's data pay for length, so a policy optimised against them drifts to
long, padded greetings; the penalties guard against it: length outside the request's bounds
("简短"/"一句话" at most ``short_max`` characters, "长一点"/"详细" at least ``long_min``, else
[``min_chars``, ``max_chars``]), repeated character 4-grams above ``repetition_free``, and a rollout
cut off by the token limit. Two guards against template collapse, off unless their coefficient
is set: ``diversity_coef`` (n-gram containment against the group and a ``DiversityBank`` of recent
rollouts) and ``copy_coef`` (a near-verbatim copy of a training greeting, the gate's novelty check).
"""
from __future__ import annotations

import re
from collections import Counter, deque
from dataclasses import asdict, dataclass
from typing import Iterable, Sequence

# Request wording -> the length it asks for (characters of the greeting).
SHORT_WORDS = ("简短", "简洁", "短句", "短一点", "短些", "一句话", "短的", "精简", "简单")
LONG_WORDS = ("长一点", "长一些", "详细", "长篇", "长的", "多写", "丰富")


@dataclass(frozen=True)
class RewardConfig:
    min_chars: int = 8
    max_chars: int = 100
    short_max: int = 40
    long_min: int = 50
    length_coef: float = 0.5  # most a length violation costs
    repetition_ngram: int = 4
    repetition_free: float = 0.1  # share of repeated n-grams tolerated (Chinese greetings repeat "祝您")
    repetition_coef: float = 0.5
    truncation_penalty: float = 0.2
    diversity_coef: float = 0.0  # most a sample whose n-grams all the others share costs (0: off)
    diversity_ngram: int = 4  # character n-grams: phrases, not the "祝您"/"快乐" every greeting has
    diversity_bank: int = 256  # recent rollouts remembered (8 steps of 8 prompts x 4)
    copy_coef: float = 0.0  # cost of a (near-)copy of a training greeting (0: off)

    def __post_init__(self):
        if not 1 <= self.min_chars <= self.max_chars:
            raise ValueError(f"min_chars must be in [1, max_chars], got {self.min_chars}")
        if not 1 <= self.short_max <= self.max_chars:
            raise ValueError(f"short_max must be in [1, max_chars], got {self.short_max}")
        if not self.min_chars <= self.long_min:
            raise ValueError(f"long_min must be >= min_chars, got {self.long_min}")
        for name in ("length_coef", "repetition_coef", "truncation_penalty", "diversity_coef", "copy_coef"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be >= 0, got {getattr(self, name)}")
        if not 0 <= self.repetition_free < 1:
            raise ValueError(f"repetition_free must be in [0, 1), got {self.repetition_free}")
        if self.repetition_ngram < 1:
            raise ValueError(f"repetition_ngram must be >= 1, got {self.repetition_ngram}")
        if self.diversity_ngram < 1:
            raise ValueError(f"diversity_ngram must be >= 1, got {self.diversity_ngram}")
        if self.diversity_bank < 0:
            raise ValueError(f"diversity_bank must be >= 0, got {self.diversity_bank}")


@dataclass(frozen=True)
class Reward:
    judge_score: float
    length_penalty: float
    repetition_penalty: float
    truncation_penalty: float
    diversity_penalty: float = 0.0
    copy_penalty: float = 0.0

    @property
    def total(self) -> float:
        return (self.judge_score - self.length_penalty - self.repetition_penalty - self.truncation_penalty
                - self.diversity_penalty - self.copy_penalty)

    def as_dict(self) -> dict:
        return {**asdict(self), "total": self.total}


def requested_length(query: str, cfg: RewardConfig = RewardConfig()) -> tuple[int, int]:
    """(min, max) characters the request asks for; an explicit "N字" wins over the words."""
    explicit = re.search(r"(\d{1,3})\s*(?:个)?字", query)
    if explicit:
        n = int(explicit.group(1))
        return max(1, int(n * 0.7)), max(int(n * 1.3), n + 5)
    if any(word in query for word in SHORT_WORDS):
        return cfg.min_chars, cfg.short_max
    if any(word in query for word in LONG_WORDS):
        return cfg.long_min, max(cfg.max_chars, cfg.long_min * 2)
    return cfg.min_chars, cfg.max_chars


def length_penalty(query: str, response: str, cfg: RewardConfig = RewardConfig()) -> float:
    """0 inside the requested bounds; grows with the relative distance outside, capped at length_coef."""
    low, high = requested_length(query, cfg)
    n = len(response.strip())
    if n > high:
        excess = (n - high) / high
    elif n < low:
        excess = (low - n) / low
    else:
        return 0.0
    return cfg.length_coef * min(1.0, excess)


def repeated_ngram_share(text: str, n: int = 4) -> float:
    """Share of the text's character n-grams that already occurred earlier in it."""
    grams = [text[i : i + n] for i in range(len(text) - n + 1)]
    if not grams:
        return 0.0
    return 1.0 - len(set(grams)) / len(grams)


def repetition_penalty(response: str, cfg: RewardConfig = RewardConfig()) -> float:
    share = repeated_ngram_share(response.strip(), cfg.repetition_ngram)
    if share <= cfg.repetition_free:
        return 0.0
    return cfg.repetition_coef * min(1.0, (share - cfg.repetition_free) / (1.0 - cfg.repetition_free) * 2)


def ngram_set(text: str, n: int) -> frozenset[str]:
    text = text.strip()
    return frozenset(text[i : i + n] for i in range(len(text) - n + 1))


class DiversityBank:
    """Document frequencies of character n-grams over the last ``size`` rollouts."""

    def __init__(self, size: int = 256, n: int = 4):
        self.n = n
        self.texts: deque[frozenset[str]] = deque(maxlen=size)
        self.frequency: Counter[str] = Counter()

    def __len__(self) -> int:
        return len(self.texts)

    def containment(self, grams: frozenset[str]) -> float:
        """Mean over the remembered texts of the share of ``grams`` found in each one."""
        if not grams or not self.texts:
            return 0.0
        return sum(self.frequency[g] for g in grams) / (len(grams) * len(self.texts))

    def add(self, texts: Iterable[str]) -> None:
        for text in texts:
            if self.texts.maxlen == 0:
                return
            if len(self.texts) == self.texts.maxlen:
                self.frequency.subtract(self.texts[0])
            grams = ngram_set(text, self.n)
            self.texts.append(grams)  # the deque drops the oldest itself
            self.frequency.update(grams)
        self.frequency = +self.frequency  # drop the zero counts


def group_containment(gram_sets: Sequence[frozenset[str]], i: int, group_size: int) -> float:
    """Mean share of sample i's n-grams found in each other sample of its group."""
    start = i - i % group_size
    others = [gram_sets[j] for j in range(start, start + group_size) if j != i and j < len(gram_sets)]
    grams = gram_sets[i]
    if not grams or not others:
        return 0.0
    return sum(len(grams & other) / len(grams) for other in others) / len(others)


def diversity_penalties(responses: Sequence[str], group_size: int, bank: DiversityBank | None,
                        cfg: RewardConfig) -> list[float]:
    """``diversity_coef`` x (group containment + bank containment) / 2 per response, in order;
    then the responses join the bank (they are judged against earlier steps only)."""
    if cfg.diversity_coef == 0:
        return [0.0] * len(responses)
    gram_sets = [ngram_set(r, cfg.diversity_ngram) for r in responses]
    penalties = [cfg.diversity_coef * (group_containment(gram_sets, i, group_size)
                                       + (bank.containment(g) if bank is not None else 0.0)) / 2
                 for i, g in enumerate(gram_sets)]
    if bank is not None:
        bank.add(responses)
    return penalties


def compute_rewards(judge, queries: Sequence[str], responses: Sequence[str], cfg: RewardConfig = RewardConfig(),
                    truncated: Sequence[bool] | None = None, group_size: int = 1, bank: DiversityBank | None = None,
                    copies=None) -> list[Reward]:
    """One Reward per (query, response); the judge scores them in one batch. Responses come group
    after group (``group_size`` per query) for the diversity term; ``copies`` is a CopyDetector."""
    if len(queries) != len(responses):
        raise ValueError(f"{len(queries)} queries but {len(responses)} responses")
    if not responses:
        return []
    # An empty greeting gets no judge credit at all (some judges score "" above 0).
    scores = [float(s) for s in judge.scores(list(queries), list(responses))]
    truncated = truncated or [False] * len(responses)
    diversity = diversity_penalties(responses, group_size, bank, cfg)
    copied = [cfg.copy_coef if cfg.copy_coef and copies is not None and copies.is_copy(r) else 0.0 for r in responses]
    return [
        Reward(judge_score=score if response.strip() else 0.0,
               length_penalty=length_penalty(query, response, cfg),
               repetition_penalty=repetition_penalty(response, cfg),
               truncation_penalty=cfg.truncation_penalty if cut else 0.0,
               diversity_penalty=div, copy_penalty=copy)
        for query, response, score, cut, div, copy in zip(queries, responses, scores, truncated, diversity, copied)
    ]
