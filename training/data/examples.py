"""(query, response) training examples from any importer format, and the split by query."""
from __future__ import annotations

import hashlib
import random
from collections.abc import Iterable
from pathlib import Path

from training.data.formats import iter_records
from training.data.records import LabeledRecord, PairRecord, QueryRecord, SftRecord

STARTER_DIR = Path(__file__).resolve().parent / "starter"
# The team's corpus: greetings first (greetings.jsonl, then greetings_<part>.jsonl), then the pairs.
STARTER_FILES = tuple(sorted(STARTER_DIR.glob("greetings*.jsonl"))) + tuple(sorted(STARTER_DIR.glob("pairs*.json*")))


def record_example(record) -> tuple[str, str] | None:
    """The good (query, response) a record carries, or None (queries only, bad labels, ties)."""
    if isinstance(record, SftRecord):
        return record.query, record.response
    if isinstance(record, PairRecord):
        return (record.query, record.chosen) if record.chosen != record.rejected else None
    if isinstance(record, LabeledRecord):
        return (record.query, record.response) if record.label == 1 else None
    return None


def load_examples(paths: Iterable[Path]) -> list[tuple[str, str]]:
    """De-duplicated (query, response) pairs, in file order; raises FormatError on bad files."""
    seen: set[tuple[str, str]] = set()
    examples = []
    for path in paths:
        for record in iter_records(path):
            example = record_example(record)
            if example is None:
                continue
            example = (example[0].strip(), example[1].strip())
            if example[0] and example[1] and example not in seen:
                seen.add(example)
                examples.append(example)
    return examples


def load_texts(paths: Iterable[Path]) -> list[str]:
    """Plain texts for pretraining: the lines of query lists (plain text files) and verl prompts."""
    texts = []
    for path in paths:
        for record in iter_records(path):
            if isinstance(record, QueryRecord) and record.query.strip():
                texts.append(record.query.strip())
    return texts


def split_by_query(
    examples: list[tuple[str, str]], heldout_fraction: float, seed: int = 0
) -> tuple[list[tuple[str, str]], list[tuple[str, str]]]:
    """(train, held-out): every response of a query lands on the same side, so no query leaks."""
    queries = sorted({query for query, _ in examples})
    random.Random(seed).shuffle(queries)
    n_heldout = round(len(queries) * heldout_fraction)
    if heldout_fraction > 0 and len(queries) > 1:
        n_heldout = min(max(n_heldout, 1), len(queries) - 1)  # keep both sides non-empty
    heldout_queries = set(queries[:n_heldout])
    train = [e for e in examples if e[0] not in heldout_queries]
    heldout = [e for e in examples if e[0] in heldout_queries]
    return train, heldout


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()
