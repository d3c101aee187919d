"""Judges: `evaluate(query, response) -> Verdict`. Baselines live here beside the learned ones."""
from training.judges.base import GOOD, BAD, Judge, Verdict

__all__ = ["GOOD", "BAD", "Judge", "Verdict"]
