"""Naturalness: does a greeting read like people's writing or like the small model's?

A logistic regression on hashed character 1-3-grams, trained on human greetings against the
shipped model's own samples (training/data/generated/, written by
`python -m bench.naturalness_samples`). The bigram fluency model cannot see the model's
failure: its text is fluent from one character to the next and incoherent over a clause (您是我们
熬夜，把一只是温柔的). The fluency principle takes the lower of the two scores, so a judge trained
without samples (or saved before this) behaves as before. Stored as safetensors + JSON."""
from __future__ import annotations

import json
import random
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from safetensors.numpy import load_file, save_file
from sklearn.feature_extraction.text import HashingVectorizer
from sklearn.linear_model import LogisticRegression

REPO = Path(__file__).resolve().parents[2]
SAMPLES_FILE = REPO / "training" / "data" / "generated" / "zhufu-small_samples.jsonl"
WEIGHTS_FILE = "naturalness.safetensors"
META_FILE = "naturalness.json"
FEATURES = 2 ** 18
NGRAMS = (1, 3)


def _vectorizer() -> HashingVectorizer:
    return HashingVectorizer(analyzer="char", ngram_range=NGRAMS, n_features=FEATURES, alternate_sign=False,
                             norm="l2", binary=True)


@dataclass
class NaturalnessModel:
    coef: np.ndarray
    intercept: float
    info: dict = field(default_factory=dict)

    def human_probability(self, texts: Sequence[str]) -> list[float]:
        if not texts:
            return []
        z = _vectorizer().transform(list(texts)) @ self.coef + self.intercept
        return (1.0 / (1.0 + np.exp(-np.clip(z, -50, 50)))).tolist()

    def save(self, folder: Path) -> None:
        save_file({"coef": self.coef.astype(np.float32)}, str(Path(folder) / WEIGHTS_FILE))
        meta = {"kind": "char-ngram-logistic", "features": FEATURES, "ngrams": list(NGRAMS),
                "intercept": self.intercept, "info": self.info}
        (Path(folder) / META_FILE).write_text(json.dumps(meta, ensure_ascii=False), encoding="utf-8")

    @classmethod
    def load(cls, folder: Path) -> "NaturalnessModel | None":
        """None for a judge saved without one."""
        path = Path(folder) / META_FILE
        if not path.is_file():
            return None
        meta = json.loads(path.read_text(encoding="utf-8"))
        if meta.get("features") != FEATURES or meta.get("ngrams") != list(NGRAMS):
            raise ValueError(f"{folder}: naturalness model of another shape ({meta.get('features')}, {meta.get('ngrams')})")
        return cls(load_file(str(Path(folder) / WEIGHTS_FILE))["coef"].astype(np.float64), float(meta["intercept"]),
                   meta.get("info", {}))


def read_samples(path: Path = SAMPLES_FILE) -> list[tuple[str, str]]:
    """(query, greeting) rows of the model's greetings in `path` (JSON Lines); [] when absent."""
    if not Path(path).is_file():
        return []
    rows = [json.loads(line) for line in Path(path).read_text(encoding="utf-8").splitlines() if line.strip()]
    return [(r["query"], r["greeting"]) for r in rows if r.get("greeting")]


def train_naturalness(human: Sequence[str], machine: Sequence[str], seed: int = 0) -> NaturalnessModel | None:
    """Balanced classes (the larger side subsampled); None without machine samples."""
    human = [t for t in human if t]
    machine = [t for t in machine if t]
    if not human or not machine:
        return None
    rng = random.Random(seed)
    n = min(len(human), len(machine))
    human, machine = rng.sample(human, n), rng.sample(machine, n)
    x = _vectorizer().transform(human + machine)
    y = np.array([1] * n + [0] * n)
    fitted = LogisticRegression(C=4.0, max_iter=2000).fit(x, y)
    return NaturalnessModel(fitted.coef_[0].astype(np.float64), float(fitted.intercept_[0]),
                            {"human": n, "machine": n, "train_accuracy": round(float(fitted.score(x, y)), 4)})


def machine_contrasts(data, machine: Sequence[tuple[str, str]]) -> list[tuple[str, str, str, str]]:
    """A person's greeting against the model's for the same request: what the stack must rank."""
    human: dict[str, str] = {}
    for e in data.examples:
        human.setdefault(e.query, e.greeting)
    return [(q, human[q], q, g) for q, g in machine if q in human]
