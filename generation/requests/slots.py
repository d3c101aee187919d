"""The request slots' data types: RequestSlots, LengthSpec, and UnknownSlotValue (a form value
that maps to no canonical value)."""
from __future__ import annotations

from dataclasses import dataclass, field

from generation.requests.lexicon import LENGTH_KINDS


class UnknownSlotValue(ValueError):
    """A form value that maps to no canonical slot value; the message lists the valid ones."""


@dataclass(frozen=True)
class LengthSpec:
    kind: str            # "chars", "short", "sentence", "four_char", "long"
    target: int | None = None

    def bounds(self) -> tuple[int, int]:
        """Allowed character count (Chinese characters and punctuation, no whitespace)."""
        if self.kind == "chars":
            n = self.target or 0
            slack = max(2, round(n * 0.15))  # 12字 may be 10..14: punctuation is counted too
            return max(1, n - slack), n + slack
        return {"short": (4, 40), "sentence": (4, 40), "four_char": (4, 40), "long": (60, 600)}[self.kind]

    def render(self) -> str:
        return f"{self.target}字" if self.kind == "chars" else LENGTH_KINDS[self.kind]


@dataclass(frozen=True)
class RequestSlots:
    occasion: str | None = None
    addressee: str | None = None
    relationship: str | None = None
    tone: str | None = None
    length: LengthSpec | None = None
    count: int | None = None
    age: int | None = None
    details: str = ""
    conflicts: tuple[str, ...] = field(default=())  # slots where an explicit form field overrode the text

    def to_prefix(self) -> str:
        """The model's conditioning text: 场合：中秋｜对象：猫｜语气：温馨｜长度：一句｜岁数：70｜细节：…"""
        parts = [
            ("场合", self.occasion), ("对象", self.addressee), ("语气", self.tone),
            ("长度", self.length.render() if self.length else None),
            ("岁数", str(self.age) if self.age is not None else None), ("细节", self.details or None),
        ]
        return "｜".join(f"{name}：{value}" for name, value in parts if value)
