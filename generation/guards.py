"""Serve-time guards: what a candidate greeting must pass before a writer sees it.

Each guard looks at one finished candidate against the request's slots (``generation.requests``):
``occasion`` (names the asked occasion, or a compatible one, and no other), ``addressee``,
``length`` (the asked length constraint), ``repeat`` (no character four or more times in a row),
``copy`` (not a near-copy of a training greeting) and ``distinct`` (not a text another candidate
of the request already has). A guard with nothing to check (no occasion asked, no training
greetings known) passes. ``generation.greeting.stream_greetings`` resamples failed candidates
within a ``Budget`` of rounds, then keeps the best distinct ones (``best_of``); every candidate
carries what each guard said about it. ``Guards.scorer`` (optional, injected by the caller: a judge's
``texts -> scores``, higher better) breaks ties among drafts with the same failures; this module
never imports a judge.
"""
from __future__ import annotations

import unicodedata
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

from generation import requests as slots_lib

COPY_NGRAM = 8
NEAR_COPY_THRESHOLD = 0.5
REPEAT_LIMIT = 4  # a run of this many identical characters fails ("香香香香")
# Worst first: a wrong occasion is what a writer notices before anything else.
GUARD_ORDER = ("occasion", "age", "repeat", "copy", "distinct", "addressee", "length")


def _normalise(text: str) -> str:
    return unicodedata.normalize("NFC", text).strip()


def char_ngrams(text: str, n: int) -> list[str]:
    return [text[i : i + n] for i in range(len(text) - n + 1)]


class CopyDetector:
    """Finds verbatim and near-verbatim copies of training greetings (character 8-gram overlap)."""

    def __init__(self, training_greetings: Iterable[str], n: int = COPY_NGRAM, threshold: float = NEAR_COPY_THRESHOLD):
        self.n, self.threshold = n, threshold
        self.exact: set[str] = set()
        self.index: dict[str, list[int]] = defaultdict(list)
        for i, text in enumerate(dict.fromkeys(_normalise(t) for t in training_greetings)):
            self.exact.add(text)
            for gram in set(char_ngrams(text, n)):
                self.index[gram].append(i)

    def __len__(self) -> int:
        return len(self.exact)

    def overlap(self, text: str) -> float:
        """The largest share of ``text``'s n-grams found in one training greeting."""
        grams = set(char_ngrams(_normalise(text), self.n))
        if not grams:
            return 0.0
        hits = Counter(i for gram in grams for i in self.index.get(gram, ()))
        return max(hits.values()) / len(grams) if hits else 0.0

    def is_copy(self, text: str) -> bool:
        text = _normalise(text)
        return text in self.exact or self.overlap(text) > self.threshold


@dataclass
class Checked:
    """One candidate text with what each guard said and how many texts were sampled for its place."""

    text: str
    checks: dict[str, bool]
    attempts: int = 1
    finish_reason: str = "stop"

    @property
    def failed(self) -> list[str]:
        return [name for name in GUARD_ORDER if not self.checks.get(name, True)]

    @property
    def passed(self) -> bool:
        return not self.failed

    def badness(self) -> tuple:
        """Sort key: fewer and less severe failures first."""
        return tuple(not self.checks.get(name, True) for name in GUARD_ORDER)

    def record(self) -> dict:
        return {"checks": dict(self.checks), "failed": self.failed, "attempts": self.attempts}


@dataclass
class Guards:
    slots: "slots_lib.RequestSlots"
    copies: CopyDetector | None = None
    enabled: tuple[str, ...] = GUARD_ORDER
    scorer: Callable[[Sequence[str]], Sequence[float]] | None = None  # texts -> scores, higher better

    def check(self, text: str, taken: Sequence[str] = (), finish_reason: str = "stop") -> Checked:
        text = _normalise(text)
        results = {
            "occasion": occasion_fit(self.slots.occasion, text),
            "age": not self.slots.age or slots_lib.ages_named(text) <= {self.slots.age},
            "addressee": not self.slots.addressee or slots_lib.names_addressee(text, self.slots.addressee),
            "length": self.slots.length is None or slots_lib.length_fits(text, self.slots.length),
            "repeat": slots_lib.longest_repeat_run(text) < REPEAT_LIMIT,
            "copy": self.copies is None or not self.copies.is_copy(text),
            "distinct": bool(text) and text not in taken,
        }
        return Checked(text, {k: v for k, v in results.items() if k in self.enabled}, finish_reason=finish_reason)


def occasion_fit(occasion: str | None, text: str) -> bool:
    """The text names the asked occasion (or a compatible one) and no incompatible one."""
    named = slots_lib.occasions_named(text)
    if occasion is None:
        return True
    fits = any(o == occasion or slots_lib.occasions_compatible(o, occasion) for o in named)
    return fits and not wrong_occasions(occasion, named)


def wrong_occasions(occasion: str | None, named: Iterable[str]) -> set[str]:
    if occasion is None:
        return set()
    return {o for o in named if o != occasion and not slots_lib.occasions_compatible(o, occasion)}


@dataclass
class Budget:
    """How many extra sampling rounds a request may spend on its failed candidates (each round
    draws one new text for every place still without a passing one)."""

    rounds: int = 3


def best_of(pool: Sequence[Checked], taken: Sequence[str], guards: Guards) -> Checked:
    """After the budget: the least bad drawn text that no other place has, else the least bad one;
    among equally bad texts the one `guards.scorer` scores highest (the first drawn without one)."""
    rechecked = [guards.check(c.text, taken, c.finish_reason) for c in pool]
    scores = list(guards.scorer([c.text for c in rechecked])) if guards.scorer and len(rechecked) > 1 else []
    order = sorted(range(len(rechecked)), key=lambda i: (rechecked[i].badness(), -scores[i] if scores else 0.0))
    ranked = [rechecked[i] for i in order]
    return next((c for c in ranked if c.checks.get("distinct", True)), ranked[0])
