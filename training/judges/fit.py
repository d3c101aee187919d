"""Request fit, by rule: the request's slots (generation.requests) against what the greeting says.

Each slot the request asks for is one check with a 0..1 mark: the occasion (named, or at least
no incompatible one), the addressee (a 称呼 of theirs), the length constraint, and the details
(names, hobbies) found in the greeting. The principle's score is the product of the marks, so
a wrong occasion or a broken length constraint sinks it whatever the rest says."""
from __future__ import annotations

from dataclasses import dataclass, field

from collections import Counter
from collections.abc import Iterable

from generation.requests import (GREETING_OCCASION_WORDS, WEAK_OCCASIONS, RequestSlots, length_fits,
                                 names_addressee, occasions_compatible, occasions_named, parse_request)

# A greeting that evokes its occasion without a lexicon word is common and fine; one that names
# none of it is weaker evidence of fit, not a failure.
UNNAMED_OCCASION_MARK = 0.7
UNNAMED_ADDRESSEE_MARK = 0.8
MISSING_DETAIL_FLOOR = 0.6  # the mark when no detail the request gave appears
# A word is too ambiguous to prove a wrong occasion when this share of the good training greetings
# that use it were written for an occasion it does not name (一岁 in 新的一岁, 感谢 in any greeting).
AMBIGUOUS_SHARE = 0.3
AMBIGUOUS_MIN_COUNT = 3
# Pairs the request parser keeps apart but a greeting may well join (一周岁生日, 结婚纪念日 recalls the wedding).
EXTRA_COMPATIBLE = frozenset(frozenset(p) for p in (("生日", "周岁"), ("结婚", "结婚纪念日"), ("订婚", "结婚")))
HARD_CHECKS = ("occasion", "length")


@dataclass
class FitReport:
    score: float
    marks: dict[str, float] = field(default_factory=dict)
    problems: dict[str, tuple[str, str]] = field(default_factory=dict)  # check -> (Chinese, English)
    hard: set[str] = field(default_factory=set)  # the HARD_CHECKS that failed


def compatible(a: str, b: str) -> bool:
    return occasions_compatible(a, b) or frozenset((a, b)) in EXTRA_COMPATIBLE


def _words_in(text: str) -> set[str]:
    return {w for words in GREETING_OCCASION_WORDS.values() for w in words if w in text}


def masked(text: str, words: Iterable[str]) -> str:
    """The text with the given words blanked out (longest first), so they name nothing."""
    for word in sorted(words, key=len, reverse=True):
        text = text.replace(word, "\x00" * len(word))
    return text


def wrong_named(occasion: str, greeting: str, ambiguous: frozenset[str] = frozenset()) -> set[str]:
    """Occasions the greeting names that a greeting for `occasion` should not: weak occasions
    (感谢, 早安...) and ambiguous words prove nothing."""
    named = occasions_named(masked(greeting, ambiguous))
    return {o for o in named if o not in WEAK_OCCASIONS and not compatible(o, occasion)}


def ambiguous_words(examples: Iterable[tuple[str, str]]) -> frozenset[str]:
    """From good (occasion, greeting) examples: the occasion words too often used for other occasions."""
    used, wrong = Counter(), Counter()
    for occasion, greeting in examples:
        for word in _words_in(greeting):
            used[word] += 1
            if not any(compatible(o, occasion) for o in occasions_named(word)):
                wrong[word] += 1
    return frozenset(w for w, n in used.items() if n >= AMBIGUOUS_MIN_COUNT and wrong[w] / n >= AMBIGUOUS_SHARE)


def detail_segments(slots: RequestSlots) -> list[str]:
    return [s for s in (slots.details or "").split("，") if len(s) >= 2]


def detail_named(segment: str, greeting: str) -> bool:
    """A detail counts as woven in when most of its characters appear in the greeting."""
    return sum(ch in greeting for ch in segment) >= max(2, (len(segment) + 1) // 2)


def request_fit(query: str, greeting: str, slots: RequestSlots | None = None,
                ambiguous: frozenset[str] = frozenset()) -> FitReport:
    slots = slots if slots is not None else parse_request(query)
    report = FitReport(1.0)
    if slots.occasion:
        named = occasions_named(greeting)
        wrong = wrong_named(slots.occasion, greeting, ambiguous)
        if wrong:
            report.marks["occasion"] = 0.0
            report.hard.add("occasion")
            names = "、".join(sorted(wrong))
            report.problems["occasion"] = (f"请求的是{slots.occasion}，祝福却说了{names}",
                                           f"asked for {slots.occasion} but the greeting names {names}")
        elif any(compatible(o, slots.occasion) for o in named):
            report.marks["occasion"] = 1.0
        else:
            report.marks["occasion"] = UNNAMED_OCCASION_MARK
    if slots.addressee:
        report.marks["addressee"] = 1.0 if names_addressee(greeting, slots.addressee) else UNNAMED_ADDRESSEE_MARK
    if slots.length is not None:
        fits = length_fits(greeting, slots.length)
        report.marks["length"] = 1.0 if fits else 0.0
        if not fits:
            report.hard.add("length")
            asked = slots.length.render()
            report.problems["length"] = (f"长度不符：要求{asked}，实为{len(greeting)}字",
                                         f"length: asked {asked}, got {len(greeting)} characters")
    segments = detail_segments(slots)
    if segments:
        share = sum(detail_named(s, greeting) for s in segments) / len(segments)
        report.marks["details"] = MISSING_DETAIL_FLOOR + (1 - MISSING_DETAIL_FLOOR) * share
    for mark in report.marks.values():
        report.score *= mark
    return report
