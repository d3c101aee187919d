"""Which occasion each half of a greeting is about: a naive Bayes occasion model on character
1-2-grams, fitted on good greetings labelled with their request's occasion.

Two coherence signals come from it: `topic_fit`, how far each half of the greeting is from the
asked occasion (0 when that occasion is each half's most likely one), and `topic_split`, how
far apart the two halves' occasion distributions are (a splice of two greetings). Stored as
safetensors (log-probabilities) plus a JSON vocabulary."""
from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from safetensors.numpy import load_file, save_file
from sklearn.feature_extraction.text import CountVectorizer
from sklearn.naive_bayes import MultinomialNB

from training.judges.coherence import halves

WEIGHTS_FILE = "topic.safetensors"
META_FILE = "topic.json"
MIN_PER_OCCASION = 5
FLOOR = -10.0  # a log-ratio is never read below this (one odd half should not swamp the stack)


def make_vectorizer(vocabulary: dict[str, int] | None = None) -> CountVectorizer:
    return CountVectorizer(analyzer="char", ngram_range=(1, 2), min_df=1 if vocabulary else 2, vocabulary=vocabulary)


@dataclass
class TopicModel:
    vocabulary: dict[str, int]
    log_prob: np.ndarray  # [occasions, vocabulary]
    occasions: list[str]

    def __post_init__(self):
        self.vectorizer = make_vectorizer(self.vocabulary)
        self.vectorizer.fit(["x"])  # a fixed vocabulary: fitting only marks it ready
        self.index = {o: i for i, o in enumerate(self.occasions)}

    def log_posteriors(self, texts: Sequence[str]) -> np.ndarray:
        """[texts, occasions] log P(occasion | text), uniform prior."""
        counts = self.vectorizer.transform(list(texts))
        joint = np.asarray(counts @ self.log_prob.T)
        joint -= joint.max(axis=1, keepdims=True)
        return joint - np.log(np.exp(joint).sum(axis=1, keepdims=True))

    def signals(self, occasions: Sequence[str | None], greetings: Sequence[str]) -> np.ndarray:
        """[items, 4]: topic_fit (<= 0: both halves' log-ratio of the asked occasion to their likeliest),
        topic_split (<= 0, minus the halves' divergence), topic_tail (the second half's log-ratio
        alone: a splice keeps a fitting first half) and topic_agree (the second half's log-ratio of
        the first half's likeliest occasion: do the halves tell of one occasion, whatever was asked)."""
        if not greetings:
            return np.zeros((0, 4))
        split = [halves(g) for g in greetings]
        head = self.log_posteriors([h for h, _t in split])
        tail = self.log_posteriors([t for _h, t in split])
        out = np.zeros((len(greetings), 4))
        for i, occasion in enumerate(occasions):
            out[i, 3] = max(FLOOR, tail[i, int(head[i].argmax())] - tail[i].max())
            if occasion in self.index:
                k = self.index[occasion]
                out[i, 2] = max(FLOOR, tail[i, k] - tail[i].max())
                out[i, 0] = max(FLOOR, head[i, k] - head[i].max()) + out[i, 2]
            p, q = np.exp(head[i]), np.exp(tail[i])
            m = 0.5 * (p + q)
            js = 0.5 * (p * (head[i] - np.log(m + 1e-12))).sum() + 0.5 * (q * (tail[i] - np.log(m + 1e-12))).sum()
            out[i, 1] = -float(js)
        return out

    def save(self, folder: Path) -> None:
        folder = Path(folder)
        save_file({"log_prob": self.log_prob.astype(np.float32)}, str(folder / WEIGHTS_FILE))
        (folder / META_FILE).write_text(json.dumps({"kind": "topic-nb", "occasions": self.occasions,
                                                    "vocabulary": self.vocabulary}, ensure_ascii=False), encoding="utf-8")

    @classmethod
    def load(cls, folder: Path) -> "TopicModel":
        meta = json.loads((Path(folder) / META_FILE).read_text(encoding="utf-8"))
        if meta.get("kind") != "topic-nb":
            raise ValueError(f"{folder}: not an occasion model (kind={meta.get('kind')!r})")
        return cls(meta["vocabulary"], load_file(str(Path(folder) / WEIGHTS_FILE))["log_prob"], meta["occasions"])


def train_topic(occasions: Sequence[str], greetings: Sequence[str]) -> TopicModel:
    """Occasions with too few greetings are left out (their requests read as 'no occasion known')."""
    counts: dict[str, int] = {}
    for o in occasions:
        counts[o] = counts.get(o, 0) + 1
    kept = [(o, g) for o, g in zip(occasions, greetings) if counts[o] >= MIN_PER_OCCASION]
    if len({o for o, _g in kept}) < 2:
        kept = list(zip(occasions, greetings))
    vectorizer = make_vectorizer()
    x = vectorizer.fit_transform([g for _o, g in kept])
    model = MultinomialNB(alpha=0.1, fit_prior=False).fit(x, [o for o, _g in kept])
    vocabulary = {term: int(i) for term, i in vectorizer.vocabulary_.items()}
    return TopicModel(vocabulary, model.feature_log_prob_.astype(np.float32), [str(c) for c in model.classes_])
