"""Flawed greetings made from good ones, for contrastive training and for the bench's splits.

Every maker takes a good Example, a pool of other good Examples and a Random, and returns the
(request, flawed greeting) it makes, or None when the example does not lend itself (no clause
mark to splice at, no other occasion in the pool...)."""
from __future__ import annotations

import random
import re
from collections import defaultdict
from collections.abc import Callable, Sequence

from generation.requests import ADDRESSEE_NAMES, RELATIONSHIP_OF, occasions_compatible
from training.judges.train_side import Example

CLAUSE_END = re.compile(r"(?<=[，。！？；、,.!?;~～…])")
SENTENCE_MARKS = "，。！？；,.!?;"


def clauses(text: str) -> list[str]:
    """The text cut after each clause mark, marks kept ('甲，乙。' -> ['甲，', '乙。'])."""
    return [c for c in CLAUSE_END.split(text) if c]


def cut_near_middle(text: str) -> int | None:
    """The clause boundary closest to the middle, or None when there is none inside the text."""
    bounds, at = [], 0
    for part in clauses(text)[:-1]:
        at += len(part)
        bounds.append(at)
    bounds = [b for b in bounds if 4 <= b <= len(text) - 4]
    return min(bounds, key=lambda b: abs(b - len(text) / 2)) if bounds else None


class OccasionPool:
    """Good examples grouped by occasion, to draw 'another occasion's greeting' from."""

    def __init__(self, examples: Sequence[Example]):
        self.by_occasion: dict[str, list[Example]] = defaultdict(list)
        for e in examples:
            if e.occasion:
                self.by_occasion[e.occasion].append(e)
        self.occasions = sorted(self.by_occasion)

    def other(self, example: Example, rng: random.Random, length_within: int | None = None,
              tries: int = 30) -> Example | None:
        """A greeting of an occasion that is neither the example's nor compatible with it."""
        if not example.occasion:
            return None
        fallback = None
        for _ in range(tries):
            occasion = rng.choice(self.occasions)
            if occasions_compatible(occasion, example.occasion):
                continue
            other = rng.choice(self.by_occasion[occasion])
            if other.greeting == example.greeting:
                continue
            if length_within is None or abs(len(other.greeting) - len(example.greeting)) <= length_within:
                return other
            fallback = fallback or other
        return None if length_within is not None else fallback


def other_occasion(example: Example, pool: OccasionPool, rng: random.Random, length_within: int | None = None):
    other = pool.other(example, rng, length_within)
    return None if other is None else (example.query, other.greeting)


def spliced(example: Example, pool: OccasionPool, rng: random.Random):
    """The first half of the greeting (to a clause mark), then the second half of another occasion's."""
    cut = cut_near_middle(example.greeting)
    if cut is None:
        return None
    for _ in range(5):
        other = pool.other(example, rng)
        if other is None:
            return None
        other_cut = cut_near_middle(other.greeting)
        if other_cut is not None:
            return example.query, example.greeting[:cut] + other.greeting[other_cut:]
    return None


def shuffled(example: Example, pool, rng: random.Random):
    parts = clauses(example.greeting)
    if len(parts) < 3:
        return None
    order = list(range(len(parts)))
    while order == sorted(order):
        rng.shuffle(order)
    text = "".join(parts[i] for i in order)
    return (example.query, text) if text != example.greeting else None


def truncated(example: Example, pool, rng: random.Random):
    """Cut inside a clause, between 30% and 70% of the text: a greeting that stops mid-thought."""
    text = example.greeting
    spots = [i for i in range(int(len(text) * 0.3), int(len(text) * 0.7) + 1)
             if 0 < i < len(text) and text[i - 1] not in SENTENCE_MARKS and text[i] not in SENTENCE_MARKS]
    return (example.query, text[: rng.choice(spots)]) if spots else None


def repeated(example: Example, pool, rng: random.Random):
    """A clause said three times, or a short chunk stuttered."""
    parts = clauses(example.greeting)
    if len(parts) >= 2 and rng.random() < 0.5:
        i = rng.randrange(len(parts))
        return example.query, "".join(parts[:i] + [parts[i]] * 3 + parts[i + 1:])
    text = example.greeting
    if len(text) < 6:
        return None
    start = rng.randrange(len(text) - 3)
    chunk = text[start: start + rng.choice((2, 3))]
    return example.query, text[:start] + chunk * 3 + text[start + len(chunk):]


def wrong_addressee(example: Example, pool, rng: random.Random):
    """The same greeting under a request for someone of another relationship group."""
    if not example.addressee or example.addressee not in RELATIONSHIP_OF:
        return None
    group = RELATIONSHIP_OF[example.addressee]
    others = sorted(a for a, g in RELATIONSHIP_OF.items() if g != group and a != "自己")
    target = rng.choice(others)
    words = [w for w in (example.addressee,) + ADDRESSEE_NAMES.get(example.addressee, ()) if len(w) >= 2]
    for word in sorted(words, key=len, reverse=True):
        if word in example.query:
            return example.query.replace(word, target, 1), example.greeting
    occasion = example.occasion or ""
    return f"给{target}的{occasion}祝福语", example.greeting


MAKERS: dict[str, Callable] = {
    "other_occasion": other_occasion,
    "spliced": spliced,
    "shuffled": shuffled,
    "truncated": truncated,
    "repeated": repeated,
    "wrong_addressee": wrong_addressee,
}


def make_contrasts(examples: Sequence[Example], pool: OccasionPool, rng: random.Random,
                   kinds: Sequence[str] = tuple(MAKERS), per_example: int = 2,
                   always: Sequence[str] = ()) -> list[tuple[Example, str, str, str]]:
    """(good example, request, flawed greeting, kind): the `always` kinds, then `per_example` more
    drawn from the rest, for each example."""
    rows = []
    rest = [k for k in kinds if k not in always]
    for example in examples:
        for kind in list(always) + rng.sample(rest, min(per_example, len(rest))):
            made = MAKERS[kind](example, pool, rng)
            if made is None:
                continue
            query, text = made
            if text.strip() and (text != example.greeting or query != example.query):
                rows.append((example, query, text, kind))
    return rows


def make_negatives(examples: Sequence[Example], pool: OccasionPool, rng: random.Random,
                   kinds: Sequence[str] = tuple(MAKERS), per_example: int = 2) -> list[tuple[str, str, str]]:
    """(request, flawed greeting, kind) rows: `per_example` kinds drawn for each good example."""
    return [(q, t, kind) for _e, q, t, kind in make_contrasts(examples, pool, rng, kinds, per_example)]
