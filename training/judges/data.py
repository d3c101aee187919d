"""Read judge training and evaluation data from any importable file (training.data.formats)."""
from pathlib import Path

from training.data.formats import iter_records
from training.data.records import LabeledRecord, PairRecord
from training.judges.evaluation import LabeledItem, Pair


def load_pairs(path: Path) -> list[Pair]:
    pairs = [Pair(r.query, r.chosen, r.rejected) for r in iter_records(path) if isinstance(r, PairRecord)]
    if not pairs:
        raise ValueError(f"{path}: no preference pairs in this file")
    return pairs


def load_labeled(path: Path) -> list[LabeledItem]:
    items = [LabeledItem(r.query, r.response, int(r.label)) for r in iter_records(path) if isinstance(r, LabeledRecord)]
    if not items:
        raise ValueError(f"{path}: no labeled greetings in this file")
    return items
