"""Agreement metrics as plain functions over lists (no ORM), checked in tests against
scikit-learn, SciPy and the `krippendorff` package.

Missing values are None (or NaN). Every function returns NaN where the statistic is undefined
(e.g. kappa when both raters used one class only) rather than raising, so a page can show "—".
"""
from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass
from itertools import combinations
from typing import Callable, Hashable, Sequence

import numpy as np

NAN = float("nan")


def _is_missing(value) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value))


def agreement_rate(a: Sequence, b: Sequence) -> float:
    _same_length(a, b)
    if not a:
        return NAN
    return sum(x == y for x, y in zip(a, b)) / len(a)


def confusion_matrix(truth: Sequence, predicted: Sequence, labels: Sequence) -> list[list[int]]:
    """Rows: truth; columns: predicted (scikit-learn's layout)."""
    _same_length(truth, predicted)
    index = {label: i for i, label in enumerate(labels)}
    matrix = [[0] * len(labels) for _ in labels]
    for t, p in zip(truth, predicted):
        if t in index and p in index:
            matrix[index[t]][index[p]] += 1
    return matrix


def cohen_kappa(a: Sequence, b: Sequence, labels: Sequence | None = None) -> float:
    _same_length(a, b)
    labels = list(labels) if labels is not None else sorted(set(a) | set(b), key=str)
    matrix = np.array(confusion_matrix(a, b, labels), dtype=float)
    n = matrix.sum()
    if n == 0:
        return NAN
    observed = np.trace(matrix) / n
    expected = float((matrix.sum(axis=1) @ matrix.sum(axis=0)) / (n * n))
    if expected == 1.0:
        return NAN
    return float((observed - expected) / (1.0 - expected))


def _ranks(values: np.ndarray) -> np.ndarray:
    """Average ranks (1-based), ties sharing the mean of their positions."""
    order = np.argsort(values, kind="mergesort")
    sorted_values = values[order]
    ranks = np.empty(len(values), dtype=float)
    start = 0
    while start < len(values):
        end = start
        while end + 1 < len(values) and sorted_values[end + 1] == sorted_values[start]:
            end += 1
        ranks[order[start:end + 1]] = (start + end) / 2.0 + 1.0
        start = end + 1
    return ranks


def spearman(x: Sequence[float], y: Sequence[float]) -> float:
    _same_length(x, y)
    if len(x) < 2:
        return NAN
    rx, ry = _ranks(np.asarray(x, dtype=float)), _ranks(np.asarray(y, dtype=float))
    rx, ry = rx - rx.mean(), ry - ry.mean()
    denominator = math.sqrt(float(rx @ rx) * float(ry @ ry))
    return NAN if denominator == 0 else float(rx @ ry) / denominator


def kendall_tau(x: Sequence[float], y: Sequence[float]) -> float:
    """Kendall's tau-b (the tie-corrected one SciPy computes by default)."""
    _same_length(x, y)
    if len(x) < 2:
        return NAN
    x, y = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
    dx = np.sign(x[:, None] - x[None, :])
    dy = np.sign(y[:, None] - y[None, :])
    numerator = float((dx * dy).sum()) / 2.0
    denominator = math.sqrt((np.count_nonzero(dx) / 2.0) * (np.count_nonzero(dy) / 2.0))
    return NAN if denominator == 0 else numerator / denominator


def krippendorff_alpha(units: Sequence[Sequence], level: str = "nominal") -> float:
    """Krippendorff's alpha. `units` holds one sequence of ratings per item (None = missing);
    only items with two or more ratings are pairable. level: "nominal" or "interval"."""
    if level not in ("nominal", "interval"):
        raise ValueError(f"level must be nominal or interval, not {level!r}")
    pairable = [[v for v in unit if not _is_missing(v)] for unit in units]
    pairable = [unit for unit in pairable if len(unit) >= 2]
    values = [v for unit in pairable for v in unit]
    n = len(values)
    if n < 2:
        return NAN

    def disagreement_within(unit: list) -> float:  # sum over ordered pairs i != j of delta²
        if level == "nominal":
            return len(unit) ** 2 - sum(c * c for c in Counter(unit).values())
        arr = np.asarray(unit, dtype=float)
        return 2.0 * len(arr) * float(((arr - arr.mean()) ** 2).sum())

    observed = sum(disagreement_within(unit) / (len(unit) - 1) for unit in pairable)
    expected = disagreement_within(values)
    if expected == 0:
        return NAN  # everyone used one value: alpha is undefined
    return 1.0 - (n - 1) * observed / expected


def pairwise_agreement(votes_by_item: Sequence[Sequence[str]], ties: str = "with_ties",
                       tie_values: frozenset = frozenset({"tie", "both_bad"})) -> tuple[float, int]:
    """Chatbot Arena / MT-Bench style human–human agreement: over every pair of annotators who
    voted on the same item, the share of pairs that voted the same.

    ties="with_ties" (MT-Bench's setup S1): tie and both-bad are answers of their own; a pair
    agrees only on the identical answer. ties="without_ties" (setup S2): a pair in which either
    vote is a tie or both-bad is left out. We do not give half credit. Returns (share, pairs)."""
    if ties not in ("with_ties", "without_ties"):
        raise ValueError(f"ties must be with_ties or without_ties, not {ties!r}")
    agree = total = 0
    for votes in votes_by_item:
        for first, second in combinations([v for v in votes if not _is_missing(v)], 2):
            if ties == "without_ties" and (first in tie_values or second in tie_values):
                continue
            total += 1
            agree += first == second
    return (agree / total if total else NAN), total


def majority(values: Sequence[Hashable]) -> Hashable | None:
    """The most common value, or None when the top is shared (no majority to speak of)."""
    counts = Counter(v for v in values if not _is_missing(v)).most_common()
    if not counts or (len(counts) > 1 and counts[0][1] == counts[1][1]):
        return None
    return counts[0][0]


@dataclass(frozen=True)
class PairOutcome:
    """What a pairwise item's votes decide. `choice` is 'a', 'b', 'tie', 'both_bad' or None (no
    majority: a split vote nobody settled); `how` is 'settled', 'unanimous', 'majority' or
    'split'; `agreement` is the share of votes for the decided answer (0 when split)."""

    choice: str | None
    how: str
    agreement: float
    votes: dict


def pair_outcome(votes: Sequence[str], settled: str = "") -> PairOutcome:
    """An admin's settlement wins; else the strict majority of the votes (see `majority`)."""
    counts = dict(Counter(v for v in votes if not _is_missing(v)))
    total = sum(counts.values())
    if settled:
        return PairOutcome(settled, "settled", counts.get(settled, 0) / total if total else 0.0, counts)
    winner = majority(votes)
    if winner is None:
        return PairOutcome(None, "split", 0.0, counts)
    share = counts[winner] / total
    return PairOutcome(winner, "unanimous" if share == 1.0 else "majority", share, counts)


LENGTH_BINS = ((0, 30, "<30"), (30, 50, "30–50"), (50, 80, "50–80"), (80, None, "≥80"))


def length_bin(length: int) -> str:
    for low, high, name in LENGTH_BINS:
        if length >= low and (high is None or length < high):
            return name
    raise ValueError(f"negative length {length}")


def bootstrap_ci(statistic: Callable[..., float], *columns: Sequence, n_resamples: int = 1000,
                 confidence: float = 0.95, seed: int = 0) -> tuple[float, float]:
    """Percentile bootstrap interval, resampling rows (the i-th entries of all columns together).
    Resamples where the statistic is undefined are dropped; (nan, nan) when too few remain."""
    lengths = {len(c) for c in columns}
    if len(lengths) != 1:
        raise ValueError("all columns must have the same length")
    n = lengths.pop()
    if n < 2:
        return NAN, NAN
    rng = np.random.default_rng(seed)
    arrays = [_object_array(c) for c in columns]
    estimates = []
    for _ in range(n_resamples):
        idx = rng.integers(0, n, size=n)
        value = statistic(*[list(a[idx]) for a in arrays])
        if not math.isnan(value):
            estimates.append(value)
    if len(estimates) < n_resamples // 2:
        return NAN, NAN
    tail = (1.0 - confidence) / 2.0 * 100.0
    low, high = np.percentile(estimates, [tail, 100.0 - tail])
    return float(low), float(high)


def _same_length(a: Sequence, b: Sequence) -> None:
    if len(a) != len(b):
        raise ValueError(f"lengths differ: {len(a)} and {len(b)}")


def _object_array(column: Sequence) -> np.ndarray:
    """A 1-D array of the column's entries, even when each entry is itself a list (units)."""
    array = np.empty(len(column), dtype=object)
    for i, value in enumerate(column):
        array[i] = value
    return array
