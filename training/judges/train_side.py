"""Train-side data for the principled judge: good (request, greeting) examples with their
occasion and addressee, and preference pairs, from the team corpus and the shared data.

The shared files are read in place (never copied). A caller that benchmarks passes
`exclude_query`, so every held-out query (and so its greetings) stays unseen."""
from __future__ import annotations

import json
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

from generation.requests import OCCASIONS, ADDRESSEES, parse_request
from training.data.formats import iter_records
from training.data.records import PairRecord
from training.judges.evaluation import Pair

STARTER_DIR = Path(__file__).resolve().parents[1] / "data" / "starter"


@dataclass(frozen=True)
class Example:
    """A good greeting for its request; occasion/addressee canonical or None."""

    query: str
    greeting: str
    occasion: str | None
    addressee: str | None
    source: str


@dataclass
class TrainSide:
    examples: list[Example]  # good greetings
    pairs: list[Pair]  # real preferences (chosen better than rejected)
    weak: list[tuple[str, str]]  # (query, greeting) labelled bad by people

    def queries(self) -> set[str]:
        return ({e.query for e in self.examples} | {p.query for p in self.pairs} | {q for q, _ in self.weak})


def _keep_all(query: str) -> bool:
    return False


def _canonical(value, allowed) -> str | None:
    return value if value in allowed else None


def slots_of(query: str, occasion: str | None = None, addressee: str | None = None) -> tuple[str | None, str | None]:
    """Labelled slots win; otherwise what the request parser reads from the query."""
    if occasion and addressee:
        return occasion, addressee
    parsed = parse_request(query)
    return occasion or parsed.occasion, addressee or parsed.addressee


def team_files(folder: Path) -> tuple[list[Path], list[Path]]:
    folder = Path(folder)
    return sorted(folder.glob("greetings*.jsonl")), sorted(folder.glob("pairs*.json*"))


def load_team(folder: Path = STARTER_DIR, exclude_query: Callable[[str], bool] = _keep_all) -> TrainSide:
    """Good and weak lines of greetings*.jsonl (with their labels) and every pairs*.json(l)."""
    greetings, pair_files = team_files(folder)
    examples, weak = [], []
    for path in greetings:
        for line in path.read_text(encoding="utf-8").splitlines():
            if not line.strip():
                continue
            row = json.loads(line)
            query, text = row["query"].strip(), row["response"].strip()
            if not query or not text or exclude_query(query):
                continue
            if int(row.get("label", 1)) != 1:
                weak.append((query, text))
                continue
            occasion, addressee = slots_of(query, _canonical(row.get("occasion"), OCCASIONS),
                                           _canonical(row.get("recipient"), ADDRESSEES))
            examples.append(Example(query, text, occasion, addressee, path.name))
    pairs = [Pair(p.query.strip(), p.chosen.strip(), p.rejected.strip())
             for path in pair_files for p in iter_records(path)
             if isinstance(p, PairRecord) and p.chosen.strip() != p.rejected.strip() and not exclude_query(p.query.strip())]
    return TrainSide(examples, pairs, weak)


def load_shared(data_dir: Path, exclude_query: Callable[[str], bool] = _keep_all) -> TrainSide:
    """reward_data_train.json pairs (chosen also as good examples) and sft_data.json outputs."""
    data_dir = Path(data_dir)
    pairs, examples, seen = [], [], set()
    for record in iter_records(data_dir / "reward_data_train.json"):
        if not isinstance(record, PairRecord):
            continue
        query, chosen, rejected = record.query.strip(), record.chosen.strip(), record.rejected.strip()
        if exclude_query(query) or chosen == rejected:
            continue
        pairs.append(Pair(query, chosen, rejected))
    for query, text in [(p.query, p.chosen) for p in pairs] + _sft(data_dir, exclude_query):
        if (query, text) in seen:
            continue
        seen.add((query, text))
        occasion, addressee = slots_of(query)
        examples.append(Example(query, text, occasion, addressee, "shared"))
    return TrainSide(examples, pairs, [])


def _sft(data_dir: Path, exclude_query) -> list[tuple[str, str]]:
    path = data_dir / "sft_data.json"
    if not path.is_file():
        return []
    rows = json.loads(path.read_text(encoding="utf-8"))
    return [(r["instruction"].strip(), r["output"].strip()) for r in rows
            if r.get("output", "").strip() and not exclude_query(r["instruction"].strip())]


def merge(parts: Iterable[TrainSide]) -> TrainSide:
    out = TrainSide([], [], [])
    for part in parts:
        out.examples += part.examples
        out.pairs += part.pairs
        out.weak += part.weak
    return out


def collect(starter_dir: Path = STARTER_DIR, shared_dir: Path | None = None,
            exclude_query: Callable[[str], bool] = _keep_all) -> TrainSide:
    """The team corpus, plus the shared train-side files when `shared_dir` exists."""
    parts = [load_team(starter_dir, exclude_query)]
    if shared_dir is not None and Path(shared_dir).is_dir():
        parts.append(load_shared(shared_dir, exclude_query))
    return merge(parts)
