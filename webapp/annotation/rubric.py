"""The five-part rubric: each part 1 to 3; the weighted score (1..3) of 2 or more is excellent."""
from dataclasses import dataclass


@dataclass(frozen=True)
class RubricPart:
    key: str
    title: str
    weight: float


RUBRIC = (
    RubricPart("language", "语言表达 Language", 0.30),
    RubricPart("creativity", "创意 Creativity", 0.30),
    RubricPart("emotion", "情感共鸣 Emotional resonance", 0.15),
    RubricPart("culture", "文化契合 Cultural fit", 0.15),
    RubricPart("richness", "内容丰富 Content richness", 0.10),
)
RUBRIC_KEYS = tuple(part.key for part in RUBRIC)
RUBRIC_MIN, RUBRIC_MAX = 1, 3
EXCELLENT_AT = 2.0


def weighted_score(parts: dict[str, int]) -> float:
    """The weighted rubric score in [1, 3]; every part must be present and in range."""
    total = 0.0
    for part in RUBRIC:
        value = parts[part.key]
        if not (isinstance(value, int) and RUBRIC_MIN <= value <= RUBRIC_MAX):
            raise ValueError(f"{part.key} must be an integer from {RUBRIC_MIN} to {RUBRIC_MAX}, not {value!r}")
        total += part.weight * value
    return round(total, 4)
