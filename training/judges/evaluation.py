"""How well a judge separates good from bad greetings, always beside the length baselines.

This data's preferences are ~96% 'the longer one wins', so overall pairwise accuracy says
little: every figure comes with the pairs where the chosen text is NOT longer and the
length-matched pairs (length difference at most 10 characters), each with its count."""
import hashlib
from dataclasses import dataclass
from typing import Sequence

from training.judges.length import pick_longer

LENGTH_MATCH_CHARS = 10


@dataclass(frozen=True)
class Pair:
    query: str
    chosen: str
    rejected: str


@dataclass(frozen=True)
class LabeledItem:
    query: str
    response: str
    label: int  # 1 good, 0 bad


def in_heldout(query: str, fraction: float) -> bool:
    """A stable split by query: the same query is always on the same side, on every machine."""
    digest = int(hashlib.sha256(query.strip().encode()).hexdigest()[:8], 16)
    return digest % 10_000 < fraction * 10_000


def split_by_query(items: Sequence, fraction: float) -> tuple[list, list]:
    train, heldout = [], []
    for item in items:
        (heldout if in_heldout(item.query, fraction) else train).append(item)
    return train, heldout


def pair_subsets(pairs: Sequence[Pair]) -> dict[str, list[int]]:
    """Indices of the pairs in each reported subset."""
    return {
        "overall": list(range(len(pairs))),
        "chosen_not_longer": [i for i, p in enumerate(pairs) if len(p.chosen) <= len(p.rejected)],
        "length_matched": [i for i, p in enumerate(pairs) if abs(len(p.chosen) - len(p.rejected)) <= LENGTH_MATCH_CHARS],
    }


def accuracy_on(correct: Sequence[bool], indices: Sequence[int]) -> dict:
    hits = sum(bool(correct[i]) for i in indices)
    return {"accuracy": hits / len(indices) if indices else None, "correct": hits, "count": len(indices)}


def judge_pair_correctness(judge, pairs: Sequence[Pair]) -> list[bool]:
    """A pair is judged right when the chosen text scores strictly higher (a tie is wrong)."""
    queries = [p.query for p in pairs]
    chosen = judge.scores(queries, [p.chosen for p in pairs])
    rejected = judge.scores(queries, [p.rejected for p in pairs])
    return [c > r for c, r in zip(chosen, rejected)]


def evaluate_pairs(pairs: Sequence[Pair], judges: dict) -> dict:
    """{subset: {judge name: {accuracy, correct, count}}}, with the pick-longer baseline included."""
    if not pairs:
        raise ValueError("no pairs to evaluate")
    subsets = pair_subsets(pairs)
    correctness = {"pick_longer": [pick_longer(p.chosen, p.rejected) for p in pairs]}
    for name, judge in judges.items():
        correctness[name] = judge_pair_correctness(judge, pairs)
    return {subset: {name: accuracy_on(hits, indices) for name, hits in correctness.items()}
            for subset, indices in subsets.items()}


def cohen_kappa(y_true: Sequence[int], y_pred: Sequence[int]) -> float:
    """Cohen's kappa for two binary raters: agreement beyond what their marginals give by chance."""
    n = len(y_true)
    if n == 0:
        raise ValueError("no items")
    observed = sum(t == p for t, p in zip(y_true, y_pred)) / n
    true_pos, pred_pos = sum(y_true) / n, sum(y_pred) / n
    expected = true_pos * pred_pos + (1 - true_pos) * (1 - pred_pos)
    if expected == 1.0:
        return 1.0 if observed == 1.0 else 0.0
    return (observed - expected) / (1 - expected)


def binary_metrics(y_true: Sequence[int], y_pred: Sequence[int]) -> dict:
    tp = sum(t == 1 and p == 1 for t, p in zip(y_true, y_pred))
    fp = sum(t == 0 and p == 1 for t, p in zip(y_true, y_pred))
    fn = sum(t == 1 and p == 0 for t, p in zip(y_true, y_pred))
    precision = tp / (tp + fp) if tp + fp else 0.0
    recall = tp / (tp + fn) if tp + fn else 0.0
    return {
        "count": len(y_true),
        "accuracy": sum(t == p for t, p in zip(y_true, y_pred)) / len(y_true),
        "precision": precision,
        "recall": recall,
        "f1": 2 * precision * recall / (precision + recall) if precision + recall else 0.0,
        "kappa": cohen_kappa(y_true, y_pred),
    }


def evaluate_labeled(items: Sequence[LabeledItem], judges: dict) -> dict:
    """{judge name: accuracy, precision, recall, F1, kappa, count} on pointwise Good/Bad labels."""
    if not items:
        raise ValueError("no labeled items to evaluate")
    truth = [item.label for item in items]
    report = {}
    for name, judge in judges.items():
        scores = judge.scores([i.query for i in items], [i.response for i in items])
        report[name] = binary_metrics(truth, [int(s >= 0.5) for s in scores])
    return report
