"""The learned, query-aware coherence-and-fit scorer of (request, greeting).

A logistic model on hashed features in four blocks, each row-normalised:
* style: the greeting's character 1-3-grams (what good greetings sound like);
* head and tail: the request's keys (its parsed occasion and addressee and its content
  characters) crossed with the character bigrams of the greeting's first and second half, so
  a second half written for another occasion (a splice) or a greeting for someone else shows;
* joint: the first half's content characters crossed with the second half's (do they belong
  to one greeting?);
* form: dense cues of a broken text (no closing mark, stutter, repeated 4-grams, clause count).
Trained contrastively: good greetings against flawed ones made from them (training.judges.negatives)
and the rejected sides of real preference pairs. Saved as safetensors plus JSON, never pickle."""
from __future__ import annotations

import json
import math
from functools import lru_cache
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from safetensors.numpy import load_file, save_file
from scipy import sparse
from sklearn.feature_extraction import FeatureHasher
from sklearn.linear_model import LogisticRegression

from generation.requests import longest_repeat_run, parse_request

HASH_BITS = 18
WEIGHTS_FILE = "coherence.safetensors"
META_FILE = "coherence.json"
PUNCTUATION = set("，。！？；：、,.!?;:~～…—-“”\"'‘’（）()《》【】 \n\t")
# Characters that say nothing about what a request asks for (祝福语, 给, 的...).
QUERY_FILLER = set("祝福语的给送写一句段条个些话文案句子发朋友圈简短长点要吧呢啊和我你他她们")
# Characters too common to say what a half is about; left out of the head x tail crosses.
FUNCTION_CHARS = set("的了是在你我他她们愿祝有和也都就要这那一不人每天里与为着之把被让更到上下中大小好")
FORM_FEATURES = ("ends_with_mark", "stutter", "repeated_4grams", "clauses", "log_length")


def content(text: str) -> str:
    return "".join(ch for ch in text if ch not in PUNCTUATION)


def bigrams(text: str) -> list[str]:
    text = content(text)
    return sorted({text[i: i + 2] for i in range(len(text) - 1)}) or ([text] if text else [])


def style_tokens(greeting: str) -> list[str]:
    return [greeting[i: i + n] for n in (1, 2, 3) for i in range(len(greeting) - n + 1)]


@lru_cache(maxsize=65536)
def query_keys(query: str) -> tuple[str, ...]:
    slots = parse_request(query)
    keys = [f"o={slots.occasion}"] if slots.occasion else ["o=-"]
    if slots.addressee:
        keys.append(f"a={slots.addressee}")
    keys += sorted({f"q={ch}" for ch in content(query) if ch not in QUERY_FILLER})[:8]
    return tuple(keys)


def _content_chars(text: str) -> list[str]:
    """Distinct characters that carry content (no punctuation, no common function characters)."""
    return sorted({ch for ch in content(text) if ch not in FUNCTION_CHARS})


def halves(greeting: str) -> tuple[str, str]:
    middle = len(greeting) // 2
    return greeting[:middle], greeting[middle:]


def form_features(greeting: str) -> list[float]:
    text = greeting.strip()
    grams = [text[i: i + 4] for i in range(len(text) - 3)]
    repeated = 1 - len(set(grams)) / len(grams) if grams else 0.0
    return [float(bool(text) and text[-1] in "。！？!?.~～…"), float(longest_repeat_run(text) >= 3), repeated,
            min(len([c for c in text if c in "，。！？；,.!?;"]), 12) / 12, math.log1p(len(text)) / 5]


def _normalised(matrix: sparse.csr_matrix, sublinear: bool = False) -> sparse.csr_matrix:
    matrix = matrix.tocsr().astype(np.float32)
    if sublinear:
        matrix.data = np.log1p(matrix.data)
    norms = np.sqrt(np.asarray(matrix.multiply(matrix).sum(axis=1)).ravel())
    norms[norms == 0] = 1.0
    return sparse.diags(1.0 / norms) @ matrix


def featurise(queries: Sequence[str], greetings: Sequence[str], bits: int = HASH_BITS) -> sparse.csr_matrix:
    hasher = FeatureHasher(n_features=2 ** bits, input_type="string", alternate_sign=False)
    keys = [query_keys(q) for q in queries]
    split = [halves(g) for g in greetings]
    style = hasher.transform(style_tokens(g) for g in greetings)
    head = hasher.transform([f"h{k}|{b}" for k in ks for b in bigrams(h)] for ks, (h, _t) in zip(keys, split))
    tail = hasher.transform([f"t{k}|{b}" for k in ks for b in bigrams(t)] for ks, (_h, t) in zip(keys, split))
    joint = hasher.transform([f"j{a}|{b}" for a in _content_chars(h) for b in _content_chars(t)] for h, t in split)
    form = sparse.csr_matrix(np.array([form_features(g) for g in greetings], dtype=np.float32).reshape(-1, len(FORM_FEATURES)))
    return sparse.hstack([_normalised(style, True), _normalised(head), _normalised(tail), _normalised(joint), form]).tocsr()


@dataclass
class CoherenceScorer:
    weights: np.ndarray
    bias: float
    bits: int = HASH_BITS
    info: dict = field(default_factory=dict)

    def logits(self, queries: Sequence[str], greetings: Sequence[str]) -> np.ndarray:
        if not greetings:
            return np.zeros(0)
        return np.asarray(featurise(queries, greetings, self.bits) @ self.weights).ravel() + self.bias

    def save(self, folder: Path) -> None:
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        save_file({"weights": self.weights.astype(np.float32), "bias": np.array([self.bias], dtype=np.float32)},
                  str(folder / WEIGHTS_FILE))
        meta = {"kind": "coherence", "bits": self.bits, "hash": "sklearn FeatureHasher (murmurhash3_32), no sign",
                "blocks": ["style 1-3grams", "head keys x bigrams", "tail keys x bigrams", "head x tail characters", *FORM_FEATURES],
                "info": self.info}
        (folder / META_FILE).write_text(json.dumps(meta, ensure_ascii=False, indent=1), encoding="utf-8")

    @classmethod
    def load(cls, folder: Path) -> "CoherenceScorer":
        meta = json.loads((Path(folder) / META_FILE).read_text(encoding="utf-8"))
        if meta.get("kind") != "coherence":
            raise ValueError(f"{folder}: not a coherence scorer (kind={meta.get('kind')!r})")
        tensors = load_file(str(Path(folder) / WEIGHTS_FILE))
        return cls(tensors["weights"], float(tensors["bias"][0]), int(meta["bits"]), meta.get("info", {}))


def train_coherence_pairs(pairs: Sequence[tuple[str, str, str, str]], *, c: float = 4.0, bits: int = HASH_BITS,
                          sample_weight: Sequence[float] | None = None) -> CoherenceScorer:
    """Fit on (request, better greeting, request, worse greeting) contrasts as a linear reward:
    P(better wins) = sigmoid(w . (x_better - x_worse)), so features the two share cancel out."""
    if not pairs:
        raise ValueError("need contrast pairs to train the coherence scorer")
    better = featurise([p[0] for p in pairs], [p[1] for p in pairs], bits)
    worse = featurise([p[2] for p in pairs], [p[3] for p in pairs], bits)
    diff = (better - worse).tocsr()
    features = sparse.vstack([diff, -diff]).tocsr()
    labels = np.concatenate([np.ones(len(pairs)), np.zeros(len(pairs))])
    weights = None if sample_weight is None else np.concatenate([sample_weight, sample_weight])
    model = LogisticRegression(C=c, max_iter=300, solver="liblinear", fit_intercept=False)
    model.fit(features, labels, sample_weight=weights)
    return CoherenceScorer(model.coef_.ravel().astype(np.float32), 0.0, bits,
                           {"contrast_pairs": len(pairs), "C": c, "objective": "pairwise"})

