"""parse_request: a free-text Chinese greeting request into RequestSlots. A form value wins over
what the text says; the slots where they disagree are kept in `conflicts`."""
from __future__ import annotations

import re

from generation.requests.form_values import _length_from_form, normalise_slot
from generation.requests.lexicon import (DEFAULT_ADDRESSEE, KEEP_IN_DETAILS, NOT_ADDRESSEE_WORDS,
                                         OCCASION_WORD_ADDRESSEE, RELATIONSHIP_OF)
from generation.requests.matching import (_ADDRESSEE_INDEX, _another_occasion, _claim, _claim_words, _details, _find,
                                          _OCCASION_INDEX, occasions_compatible, _opened_shops, _parse_age,
                                          _parse_count, _parse_length, _parse_tone, _pick_addressee, _pick_occasion,
                                          _surnamed_people)
from generation.requests.slots import LengthSpec, RequestSlots


def parse_request(text: str, *, occasion: str | None = None, addressee: str | None = None,
                  tone: str | None = None, length: str | LengthSpec | None = None) -> RequestSlots:
    """Slots of a free-text request. Explicit form fields (keyword arguments) win over the text;
    the slots where they disagree with what the text says are listed in `conflicts`."""
    text = (text or "").strip()
    mask = [False] * len(text)
    kept: list[str] = []

    length_spec = _parse_length(text, mask)  # before counts: 12个字 is a length, not a count
    age = _parse_age(text, mask)
    count = _parse_count(text, mask)
    occasion_matches = _find(text, _OCCASION_INDEX, mask) + _opened_shops(text, mask)
    text_occasion = _pick_occasion(text, occasion_matches)
    for start, end, word, canonical in occasion_matches:
        if WORD_KEEPS_DETAIL(word, canonical) or _another_occasion(canonical, text_occasion):
            kept.append(word)  # 重阳节给退休的老同事: 退休 is a detail of the 重阳 request

    addressee_mask = list(mask)
    _claim_words(text, addressee_mask, NOT_ADDRESSEE_WORDS)  # 朋友圈 stays a detail, but names no 朋友
    addressee_matches = _find(text, _ADDRESSEE_INDEX, addressee_mask)
    for start, end, _w, _c in addressee_matches:
        _claim(mask, start, end)
    kept += _surnamed_people(text, addressee_matches, mask)  # 王阿姨, 张教授, 李姐
    text_addressee, relationship = None, None
    chosen = _pick_addressee(text, addressee_matches)
    if chosen:
        _s, _e, word, canonical = chosen
        text_addressee = canonical or None
        relationship = RELATIONSHIP_OF[canonical] if canonical else "伴侣"
        # 婆婆 -> 长辈 loses the word; other people named (她老公, 一只猫) are details too.
        others = [m for m in addressee_matches if not chosen[0] <= m[0] < chosen[1]]  # 妈妈和爸爸 is one 父母
        kept += [w for _s, _e, w, c in others if w in KEEP_IN_DETAILS or (w, c) != (word, canonical)]
        kept += [word] if word in KEEP_IN_DETAILS else []
    if text_addressee is None and relationship is None:
        implied = [OCCASION_WORD_ADDRESSEE[w] for _s, _e, w, _c in occasion_matches if w in OCCASION_WORD_ADDRESSEE]
        text_addressee = implied[0] if implied else DEFAULT_ADDRESSEE.get(text_occasion)
        relationship = RELATIONSHIP_OF.get(text_addressee)

    text_tone = _parse_tone(text, mask)

    details = "，".join(filter(None, [_details(text, mask)] + kept))
    if age == 1 and text_occasion in ("生日", "周岁", None) and re.search(r"(一|1)\s*(周)?岁", text):
        text_occasion, age = "周岁", None  # 一岁生日 is the 周岁 occasion

    conflicts = []
    if occasion:
        occasion = normalise_slot("occasion", occasion)
        if text_occasion and text_occasion != occasion and not occasions_compatible(text_occasion, occasion):
            conflicts.append("occasion")
        text_occasion = occasion
    if addressee:
        addressee = normalise_slot("addressee", addressee)
        if text_addressee and text_addressee != addressee:
            conflicts.append("addressee")
        text_addressee, relationship = addressee, RELATIONSHIP_OF[addressee]
    if tone:
        tone = normalise_slot("tone", tone)
        if text_tone and text_tone != tone:
            conflicts.append("tone")
        text_tone = tone
    if length:
        spec = length if isinstance(length, LengthSpec) else _length_from_form(length)
        if length_spec and length_spec != spec:
            conflicts.append("length")
        length_spec = spec
    return RequestSlots(text_occasion, text_addressee, relationship, text_tone, length_spec, count, age,
                        details, tuple(conflicts))


def WORD_KEEPS_DETAIL(word: str, canonical: str) -> bool:
    """Year animals (蛇年) and exam kinds (考公, 四六级) say more than the canonical occasion."""
    return (canonical == "春节" and word.endswith("年") and len(word) == 2 and word not in ("新年", "过年", "开年")) or \
        (canonical in ("考试", "出行", "录取") and word != canonical and len(word) >= 2 and word not in (
            "期末考", "一路平安", "一路顺风", "考上", "被录", "上岸", "题名", "金榜题名")) or \
        (canonical == "宝宝出生" and word in _BIRTH_DETAIL_WORDS)


# Birth words that say more than 宝宝出生 (not born yet, twins, a second child).
_BIRTH_DETAIL_WORDS = frozenset({"怀孕", "预产期", "双胞胎", "龙凤胎", "二胎", "三胎", "剖腹产", "顺产"})
