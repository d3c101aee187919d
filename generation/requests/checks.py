"""Checks on a finished greeting against the slots (the serve-time guards and the judges use them):
which occasions it names, whether it names the addressee, fits the length ask, repeats a character."""
from __future__ import annotations

import re

from generation.requests.lexicon import (ADDRESSEE_NAMES, _COMPANY_WORDS, _FESTIVAL_WORDS, _FIGURE_AFTER_RE,
                                         GREETING_CUE_CONTEXT, GREETING_CUE_EXCLUDED_BY, GREETING_DOMINATES,
                                         _GREETING_DURATION_RE, GREETING_NEUTRAL_PHRASES, GREETING_OCCASION_PATTERNS,
                                         GREETING_WEAK_CUES, GREETING_WEAK_OCCASIONS, _NEGATED_BEFORE_RE,
                                         _OPENING_QUOTES)
from generation.requests.matching import (_AGE_RE, _claim, _claim_words, _find, _GREETING_OCCASION_INDEX,
                                          _GREETING_OCCASIONS_OF, _SPLIT_RE, chinese_number)
from generation.requests.slots import LengthSpec


def occasions_named(greeting: str) -> set[str]:
    """Canonical occasions a greeting text names (新年 names both 春节 and 元旦).

    Cues come in tiers: a plain cue of a festival or event, then a cue shared with other occasions
    (GREETING_WEAK_CUES), then the everyday occasions (GREETING_WEAK_OCCASIONS), then 感谢 (thanks
    are in every kind of greeting). Only the first tier with a cue names occasions, so a 元宵
    greeting's 月儿圆 and a 春节 greeting's 谢谢 name no other occasion."""
    text = greeting or ""
    mask = [False] * len(text)
    tiers: list[set[str]] = [set(), set(), set(), set()]
    for pattern, occasion in GREETING_OCCASION_PATTERNS:
        for m in pattern.finditer(text):
            if not any(mask[m.start():m.end()]):
                _claim(mask, m.start(), m.end())
                tiers[0].add(occasion)
    _claim_words(text, mask, GREETING_NEUTRAL_PHRASES)
    for match in _find(text, _GREETING_OCCASION_INDEX, mask):
        if match[2] == "周年" and any(w in text for w in _COMPANY_WORDS):
            tiers[1].add("开业")
            continue
        if _cue_is_figurative_or_time(text, match):
            continue
        # A word may belong to several occasions: _find claims a span once, so add the others here.
        for occasion in _GREETING_OCCASIONS_OF[match[2]]:
            tiers[_cue_tier(match[2], occasion)].add(occasion)
    if any(w in text for w in _FESTIVAL_WORDS):
        tiers[3].clear()
    named = next((tier for tier in tiers if tier), set())
    return {o for o in named if not any(o in GREETING_DOMINATES.get(d, ()) for d in named)}


def _cue_tier(word: str, occasion: str) -> int:
    if occasion == "感谢":
        return 3
    if occasion in GREETING_WEAK_OCCASIONS:
        return 2
    return 1 if word in GREETING_WEAK_CUES else 0


def _cue_is_figurative_or_time(text: str, match: tuple[int, int, str, str]) -> bool:
    start, end, word, _c = match
    if word in GREETING_CUE_CONTEXT and not any(w in text for w in GREETING_CUE_CONTEXT[word]):
        return True
    if any(w in text for w in GREETING_CUE_EXCLUDED_BY.get(word, ())):
        return True
    if start > 0 and text[start - 1] in _OPENING_QUOTES:
        return True
    return bool(_GREETING_DURATION_RE.match(text, end) or _FIGURE_AFTER_RE.match(text, end)
                or _NEGATED_BEFORE_RE.search(text[max(0, start - 6):start]))


def names_addressee(greeting: str, addressee: str) -> bool:
    """Whether the greeting uses a 称呼 word of the addressee (妈妈 -> 妈/母亲/娘...)."""
    words = ADDRESSEE_NAMES.get(addressee, ()) + (addressee,)
    return any(w in (greeting or "") for w in words)


def _char_count(text: str) -> int:
    return sum(1 for ch in text if not ch.isspace())


def length_fits(greeting: str, spec: LengthSpec | None) -> bool:
    """Whether the greeting's length fits the spec (no spec: anything fits)."""
    if spec is None:
        return True
    low, high = spec.bounds()
    if not low <= _char_count(greeting) <= high:
        return False
    if spec.kind == "four_char":  # every phrase between punctuation has four characters
        phrases = [p for p in _SPLIT_RE.split(greeting) if p]
        return bool(phrases) and all(len(p) == 4 for p in phrases)
    if spec.kind == "sentence":  # at most one sentence end inside the text
        return len(re.findall(r"[。！!？?]", greeting.rstrip("。！!？?…~～"))) == 0
    return True


def longest_repeat_run(text: str) -> int:
    """Longest run of one character repeated back to back (香香香香 -> 4; '' -> 0)."""
    best, run, prev = 0, 0, None
    for ch in text or "":
        run = run + 1 if ch == prev else 1
        prev = ch
        best = max(best, run)
    return best


def ages_named(greeting: str) -> set[int]:
    """Ages a greeting gives (八十大寿, 60岁生日, 七十寿辰). 一岁 is left out: 新的一岁 is any birthday."""
    ages = set()
    for m in _AGE_RE.finditer(greeting or ""):
        n = chinese_number(m.group(1))
        if n is not None and 2 <= n <= 130:
            ages.add(n)
    return ages
