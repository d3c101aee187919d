"""The one judge interface every implementation follows."""
from dataclasses import dataclass, field
from typing import Protocol, Sequence

GOOD, BAD = "Good", "Bad"


@dataclass(frozen=True)
class Verdict:
    verdict: str  # GOOD or BAD
    score: float  # in [0, 1]; higher is better
    reason: str
    judge_version: str
    rubric: dict[str, float] = field(default_factory=dict)

    def __post_init__(self):
        if self.verdict not in (GOOD, BAD):
            raise ValueError(f"verdict must be {GOOD!r} or {BAD!r}, not {self.verdict!r}")
        if not 0.0 <= self.score <= 1.0:
            raise ValueError(f"score must be in [0, 1], not {self.score}")


class Judge(Protocol):
    version: str

    def evaluate(self, query: str, response: str) -> Verdict: ...

    def scores(self, queries: Sequence[str], responses: Sequence[str]) -> list[float]:
        """Scores in [0, 1] for many items at once (pairwise comparisons use these)."""
        ...
