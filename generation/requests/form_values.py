"""Form values: a user-typed slot value to its canonical string (normalise_slot), or
UnknownSlotValue listing the valid ones."""
from __future__ import annotations

import re

from generation.requests.lexicon import ADDRESSEES, LENGTH_KINDS, OCCASIONS, TONES
from generation.requests.matching import _ADDRESSEE_INDEX, _find, _OCCASION_INDEX, _parse_length, _TONE_INDEX
from generation.requests.slots import LengthSpec, UnknownSlotValue


_CANONICAL = {"occasion": OCCASIONS, "addressee": ADDRESSEES, "tone": TONES}
_SLOT_NAMES_ZH = {"occasion": "场合", "addressee": "对象", "tone": "语气", "length": "长度"}


def normalise_slot(kind: str, value: str) -> str:
    """A user-typed form value -> its canonical string ("中秋节" -> "中秋", "古文" -> "古风",
    "12个字" -> "12字"); raises UnknownSlotValue naming the field and listing the valid values."""
    if kind not in _SLOT_NAMES_ZH:
        raise UnknownSlotValue(f"未知的字段 {kind!r} / unknown slot kind {kind!r}; "
                               f"可用 / valid: {', '.join(_SLOT_NAMES_ZH)}")
    value = (value or "").strip()
    if kind == "length":
        return _length_from_form(value).render()
    if value in _CANONICAL[kind]:
        return value
    index = {"occasion": _OCCASION_INDEX, "addressee": _ADDRESSEE_INDEX, "tone": _TONE_INDEX}[kind]
    exact = {c for w, c in index if w.lower() == value.lower() and c}
    if not exact and value:
        stripped = re.sub(r"(节日|节|快乐|的|风格|风|一点|语气)$", "", value)
        exact = {c for w, c in index if w.lower() == stripped.lower() and c}
        if not exact:
            found = {m[3] for m in _find(value, index, [False] * len(value)) if m[3]}
            exact = found if len(found) == 1 else set()
    if len(exact) == 1:
        return exact.pop()
    valid = "、".join(_CANONICAL[kind])
    raise UnknownSlotValue(f"{_SLOT_NAMES_ZH[kind]}（{kind}）的值 {value!r} 无法识别，可用的值：{valid} / "
                           f"unknown {kind} value {value!r}; valid values: {valid}")


def _length_from_form(value: str) -> LengthSpec:
    if value == "chars":
        raise UnknownSlotValue(f"长度（length）的值 {value!r} 缺字数 / length {value!r} needs a form like 12字")
    named = {rendered: kind for kind, rendered in LENGTH_KINDS.items()} | {kind: kind for kind in LENGTH_KINDS}
    if value in named:  # the values the refusal below lists, and the kinds' own names
        return LengthSpec(named[value])
    spec = _parse_length(value, [False] * len(value)) if value else None
    if spec is None and value.isdigit():
        spec = LengthSpec("four_char") if int(value) == 4 else LengthSpec("chars", int(value))
    if spec is None:
        raise UnknownSlotValue(f"长度（length）的值 {value!r} 无法识别，可用：N字（如 12字）、简短、一句、四字、长 / "
                               f"unknown length value {value!r}; valid: N字 (e.g. 12字), 简短, 一句, 四字, 长")
    return spec
