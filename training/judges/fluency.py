"""Fluency, a cheap offline proxy: a character bigram language model fitted on human greetings.

A text's fluency is its mean log-probability per character under an interpolated bigram model
(absolute discounting, backing off to add-one unigrams), so length does not count. Calibration
fits a logistic curve on human greetings against garbled copies of them (characters shuffled
within clauses, random characters swapped in), so garbled text scores low and ordinary human
text scores high. Stored as character and bigram counts in safetensors plus a JSON vocabulary."""
from __future__ import annotations

import json
import math
import random
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from safetensors.numpy import load_file, save_file
from sklearn.linear_model import LogisticRegression

DISCOUNT = 0.75
BOUNDARY = "\x02"  # text start and end
WEIGHTS_FILE = "fluency.safetensors"
META_FILE = "fluency.json"


@dataclass
class BigramModel:
    unigrams: Counter
    bigrams: Counter
    slope: float = 1.0
    intercept: float = 0.0
    info: dict = field(default_factory=dict)

    def __post_init__(self):
        self.total = sum(self.unigrams.values())
        self.vocab = len(self.unigrams) + 1
        self.followers = Counter(a for a, _b in self.bigrams)  # distinct continuations per context
        self.context = Counter()
        for (a, _b), n in self.bigrams.items():
            self.context[a] += n

    def unigram_prob(self, ch: str) -> float:
        return (self.unigrams.get(ch, 0) + 1) / (self.total + self.vocab)

    def prob(self, prev: str, ch: str) -> float:
        seen = self.context.get(prev, 0)
        if not seen:
            return self.unigram_prob(ch)
        pair = self.bigrams.get((prev, ch), 0)
        backoff = DISCOUNT * self.followers[prev] / seen
        return max(pair - DISCOUNT, 0) / seen + backoff * self.unigram_prob(ch)

    def mean_logprob(self, text: str) -> float:
        chars = [BOUNDARY] + list(text) + [BOUNDARY]
        if len(chars) <= 2:
            return -20.0
        return sum(math.log(self.prob(a, b)) for a, b in zip(chars, chars[1:])) / (len(chars) - 1)

    def score(self, text: str) -> float:
        z = self.slope * self.mean_logprob(text) + self.intercept
        return 1.0 / (1.0 + math.exp(-max(min(z, 50.0), -50.0)))

    def save(self, folder: Path) -> None:
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        chars = sorted(set(self.unigrams) | {c for pair in self.bigrams for c in pair})
        index = {c: i for i, c in enumerate(chars)}
        pairs = sorted(self.bigrams.items())
        save_file({"unigram_counts": np.array([self.unigrams.get(c, 0) for c in chars], dtype=np.int64),
                   "bigram_left": np.array([index[a] for (a, _b), _n in pairs], dtype=np.int32),
                   "bigram_right": np.array([index[b] for (_a, b), _n in pairs], dtype=np.int32),
                   "bigram_counts": np.array([n for _p, n in pairs], dtype=np.int64)}, str(folder / WEIGHTS_FILE))
        meta = {"kind": "char-bigram", "discount": DISCOUNT, "chars": chars, "slope": self.slope,
                "intercept": self.intercept, "info": self.info}
        (folder / META_FILE).write_text(json.dumps(meta, ensure_ascii=False), encoding="utf-8")

    @classmethod
    def load(cls, folder: Path) -> "BigramModel":
        meta = json.loads((Path(folder) / META_FILE).read_text(encoding="utf-8"))
        if meta.get("kind") != "char-bigram":
            raise ValueError(f"{folder}: not a character bigram model (kind={meta.get('kind')!r})")
        t = load_file(str(Path(folder) / WEIGHTS_FILE))
        chars = meta["chars"]
        unigrams = Counter({c: int(n) for c, n in zip(chars, t["unigram_counts"]) if n})
        bigrams = Counter({(chars[a], chars[b]): int(n) for a, b, n in
                           zip(t["bigram_left"], t["bigram_right"], t["bigram_counts"])})
        return cls(unigrams, bigrams, meta["slope"], meta["intercept"], meta.get("info", {}))


def count(texts: Iterable[str]) -> tuple[Counter, Counter]:
    unigrams, bigrams = Counter(), Counter()
    for text in texts:
        chars = [BOUNDARY] + list(text) + [BOUNDARY]
        unigrams.update(chars[1:-1])
        bigrams.update(zip(chars, chars[1:]))
    return unigrams, bigrams


def garble(text: str, rng: random.Random, alphabet: Sequence[str]) -> str:
    """A broken copy: characters shuffled, or a third of them replaced by random ones."""
    chars = list(text)
    if rng.random() < 0.5:
        rng.shuffle(chars)
    else:
        for i in rng.sample(range(len(chars)), max(1, len(chars) // 3)):
            chars[i] = rng.choice(alphabet)
    return "".join(chars)


def train_fluency(fit_texts: Sequence[str], calibration_texts: Sequence[str], seed: int = 0) -> BigramModel:
    """Counts from `fit_texts`; the logistic curve from `calibration_texts` (human, unseen by the
    counts, so their log-probabilities are honest) against garbled copies of them."""
    if not fit_texts or not calibration_texts:
        raise ValueError("the fluency model needs human greetings to fit and to calibrate on")
    unigrams, bigrams = count(fit_texts)
    model = BigramModel(unigrams, bigrams)
    rng = random.Random(seed)
    alphabet = sorted(unigrams)
    human = [model.mean_logprob(t) for t in calibration_texts]
    garbled = [model.mean_logprob(garble(t, rng, alphabet)) for t in calibration_texts if len(t) >= 2]
    x = np.array(human + garbled).reshape(-1, 1)
    y = np.array([1] * len(human) + [0] * len(garbled))
    curve = LogisticRegression(C=10.0).fit(x, y)
    model.slope, model.intercept = float(curve.coef_[0, 0]), float(curve.intercept_[0])
    passed_human = float(np.mean([model.score(t) >= 0.5 for t in calibration_texts]))
    model.info = {"fit_texts": len(fit_texts), "calibration_texts": len(calibration_texts),
                  "calibration_human_pass": round(passed_human, 4),
                  "calibration_garbled_pass": round(float(np.mean(curve.predict(np.array(garbled).reshape(-1, 1)))), 4)}
    return model
