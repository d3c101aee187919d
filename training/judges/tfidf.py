"""The cheap baseline judge: logistic regression on character n-gram TF-IDF features.

Trained on preference pairs as a linear reward: P(chosen > rejected) = sigmoid(w . (x_c - x_r)),
so a text's reward is w . x. A threshold calibrated on held-out pairs turns rewards into
Good or Bad. Saved as JSON (vocabulary, settings) plus safetensors (weights): no pickle."""
import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np
from safetensors import SafetensorError
from safetensors.numpy import load_file, save_file
from scipy import sparse
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.linear_model import LogisticRegression

from training.judges.base import BAD, GOOD, Verdict

NGRAM_RANGE = (1, 3)
MAX_FEATURES = 60000


class JudgeFileError(Exception):
    pass


def make_vectorizer(vocabulary: dict[str, int] | None = None) -> TfidfVectorizer:
    return TfidfVectorizer(analyzer="char", ngram_range=NGRAM_RANGE, max_features=MAX_FEATURES,
                           sublinear_tf=True, vocabulary=vocabulary, dtype=np.float32)


@dataclass
class TfidfJudge:
    vectorizer: TfidfVectorizer
    weights: np.ndarray  # one per feature
    threshold: float = 0.0  # reward above which a text is Good
    scale: float = 1.0  # rewards are divided by this before the sigmoid, so scores spread over [0, 1]
    name: str = "tfidf"
    info: dict = field(default_factory=dict)

    @property
    def version(self) -> str:
        return self.name

    def rewards(self, responses: Sequence[str]) -> np.ndarray:
        features = self.vectorizer.transform(list(responses))
        return np.asarray(features @ self.weights).ravel()

    def scores(self, queries: Sequence[str], responses: Sequence[str]) -> list[float]:
        centred = (self.rewards(responses) - self.threshold) / self.scale
        return [float(1.0 / (1.0 + math.exp(-min(max(value, -50.0), 50.0)))) for value in centred]

    def evaluate(self, query: str, response: str) -> Verdict:
        score = self.scores([query], [response])[0]
        verdict = GOOD if score >= 0.5 else BAD
        return Verdict(verdict, score, f"TF-IDF reward {score:.2f} (Good from 0.50)", self.version)

    def save(self, folder: Path) -> None:
        folder.mkdir(parents=True, exist_ok=True)
        vocabulary = {term: int(index) for term, index in self.vectorizer.vocabulary_.items()}
        meta = {"kind": "tfidf", "name": self.name, "threshold": self.threshold, "scale": self.scale,
                "ngram_range": list(NGRAM_RANGE), "vocabulary": vocabulary, "info": self.info}
        save_file({"weights": self.weights.astype(np.float32), "idf": self.vectorizer.idf_.astype(np.float32)},
                  str(folder / "weights.safetensors"))
        (folder / "judge.json").write_text(json.dumps(meta, ensure_ascii=False))

    @classmethod
    def load(cls, folder: Path) -> "TfidfJudge":
        try:
            meta = json.loads((folder / "judge.json").read_text())
            tensors = load_file(str(folder / "weights.safetensors"))
        except FileNotFoundError as exc:
            raise JudgeFileError(f"{folder}: missing {Path(exc.filename).name}") from exc
        except (ValueError, OSError, SafetensorError) as exc:
            raise JudgeFileError(f"{folder}: unreadable judge files ({exc})") from exc
        if meta.get("kind") != "tfidf":
            raise JudgeFileError(f"{folder}: not a TF-IDF judge (kind={meta.get('kind')!r})")
        vectorizer = make_vectorizer(meta["vocabulary"])
        vectorizer.fit([" "])  # with a fixed vocabulary this only marks it fitted; idf_ is replaced next
        vectorizer.idf_ = tensors["idf"]
        return cls(vectorizer, tensors["weights"], meta["threshold"], meta["scale"], meta["name"], meta["info"])


def pair_difference_features(vectorizer, chosen: Sequence[str], rejected: Sequence[str]):
    """Rows x_c - x_r labelled 1 and their negations labelled 0: a symmetric pairwise problem."""
    diff = vectorizer.transform(list(chosen)) - vectorizer.transform(list(rejected))
    features = sparse.vstack([diff, -diff]).tocsr()
    labels = np.concatenate([np.ones(diff.shape[0]), np.zeros(diff.shape[0])])
    return features, labels


def best_threshold(good_rewards: np.ndarray, bad_rewards: np.ndarray) -> float:
    """The reward cut that best separates known-good from known-bad texts."""
    candidates = np.unique(np.concatenate([good_rewards, bad_rewards]))
    best, best_correct = 0.0, -1
    for cut in candidates:
        correct = int((good_rewards >= cut).sum() + (bad_rewards < cut).sum())
        if correct > best_correct:
            best, best_correct = float(cut), correct
    return best


def train_tfidf_judge(chosen: Sequence[str], rejected: Sequence[str], *, name: str = "tfidf",
                      calibration: tuple[Sequence[str], Sequence[str]] | None = None, c: float = 4.0) -> TfidfJudge:
    """Fit on pairs; calibrate the Good/Bad threshold on `calibration` = (good texts, bad texts),
    by default the training pairs' chosen and rejected sides."""
    if len(chosen) != len(rejected) or not chosen:
        raise ValueError("need the same, non-zero number of chosen and rejected texts")
    vectorizer = make_vectorizer()
    vectorizer.fit(list(chosen) + list(rejected))
    features, labels = pair_difference_features(vectorizer, chosen, rejected)
    model = LogisticRegression(C=c, fit_intercept=False, max_iter=2000)
    model.fit(features, labels)
    judge = TfidfJudge(vectorizer, model.coef_.ravel().astype(np.float32), name=name,
                       info={"pairs": len(chosen), "features": len(vectorizer.vocabulary_), "C": c})
    good, bad = calibration if calibration is not None else (chosen, rejected)
    good_rewards, bad_rewards = judge.rewards(good), judge.rewards(bad)
    judge.threshold = best_threshold(good_rewards, bad_rewards)
    judge.scale = float(np.std(np.concatenate([good_rewards, bad_rewards]))) or 1.0
    return judge
