"""Length baselines: the bar every judge must clear on this data (its preferences are ~96% longer-wins)."""
from dataclasses import dataclass
from typing import Sequence

from training.judges.base import BAD, GOOD, Verdict


def pick_longer(chosen: str, rejected: str) -> bool:
    """The 'pick the longer text' pairwise baseline: True when it picks `chosen` (ties count as wrong)."""
    return len(chosen) > len(rejected)


def best_length_threshold(lengths: Sequence[int], labels: Sequence[int]) -> int:
    """The character count t maximising accuracy of the rule 'good iff length >= t'."""
    if not lengths:
        raise ValueError("no examples to fit a length threshold on")
    best_t, best_correct = 0, -1
    for t in sorted(set(lengths)):
        correct = sum((length >= t) == bool(label) for length, label in zip(lengths, labels))
        if correct > best_correct:
            best_t, best_correct = t, correct
    return best_t


@dataclass
class LengthJudge:
    """'Good iff at least `threshold` characters'; its score grows with length up to twice the threshold."""

    threshold: int = 39

    @property
    def version(self) -> str:
        return f"length>={self.threshold}"

    def scores(self, queries, responses) -> list[float]:
        return [min(1.0, len(r) / (2 * self.threshold)) for r in responses]

    def evaluate(self, query: str, response: str) -> Verdict:
        good = len(response) >= self.threshold
        return Verdict(GOOD if good else BAD, self.scores([query], [response])[0],
                       f"{len(response)} characters vs threshold {self.threshold}", self.version)
