"""Cliche and copying, counted against creativity.

* Near-copies of training text: the serve-time guard's rule (generation.guards: a shared
  character 8-gram share above one half, or the same text), here over hashes of the training
  greetings' 8-grams, so a saved judge carries no training text.
* Overused phrases: a fixed list of stock similes and stacked four-character wishes; one or two
  are ordinary in a greeting, a pile of them is template writing."""
from __future__ import annotations

import hashlib
import re
import unicodedata
from collections import Counter, defaultdict
from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np

from generation.guards import COPY_NGRAM, NEAR_COPY_THRESHOLD, char_ngrams

# Stock similes (如X般Y) and wishes heaped up for length. Matched as substrings.
CLICHES: tuple[str, ...] = (
    "如星辰般闪耀", "如春风般温暖", "如阳光般灿烂", "如花儿般绽放", "如繁星般璀璨", "如彩虹般绚丽",
    "如星光般璀璨", "如阳光般温暖", "如诗如画", "闪闪发光", "熠熠生辉", "璀璨夺目", "与美好不期而遇",
    "所有美好如期而至", "奔赴山海", "未来可期", "万事如意", "心想事成", "身体健康", "工作顺利", "阖家幸福",
    "阖家欢乐", "财源广进", "步步高升", "吉祥如意", "大吉大利", "福星高照", "年年有余", "笑口常开",
    "幸福美满", "快乐每一天", "天天开心", "事业有成", "前程似锦", "鹏程万里", "一帆风顺", "美梦成真",
)
# A simile template beyond the list: 如/像 + up to four characters + 般/一样 + two characters.
SIMILE = re.compile(r"[如像][\u4e00-\u9fff]{1,4}(?:般|一样)[\u4e00-\u9fff]{2}")


def cliches_in(text: str) -> list[str]:
    found = [c for c in CLICHES if c in text]
    covered = "".join(found)
    found += [m for m in SIMILE.findall(text) if m not in covered]
    return found


def _key(gram: str) -> int:
    return int.from_bytes(hashlib.blake2b(gram.encode("utf-8"), digest_size=8).digest(), "little", signed=True)


def _normalise(text: str) -> str:
    return unicodedata.normalize("NFC", text).strip()


@dataclass
class HashedCopyDetector:
    """generation.guards.CopyDetector's rule over hashed n-grams: same answers, no stored text."""

    gram_keys: np.ndarray  # int64, one per (greeting, distinct gram)
    owners: np.ndarray  # int32, the greeting each key belongs to
    exact_keys: np.ndarray  # int64, hashes of the whole normalised greetings
    n: int = COPY_NGRAM
    threshold: float = NEAR_COPY_THRESHOLD

    def __post_init__(self):
        self.index: dict[int, list[int]] = defaultdict(list)
        for key, owner in zip(self.gram_keys.tolist(), self.owners.tolist()):
            self.index[key].append(owner)
        self.exact = set(self.exact_keys.tolist())

    @classmethod
    def from_texts(cls, texts: Iterable[str]) -> "HashedCopyDetector":
        keys, owners, exact = [], [], []
        for i, text in enumerate(dict.fromkeys(_normalise(t) for t in texts)):
            exact.append(_key(text))
            for gram in set(char_ngrams(text, COPY_NGRAM)):
                keys.append(_key(gram))
                owners.append(i)
        return cls(np.array(keys, dtype=np.int64), np.array(owners, dtype=np.int32), np.array(exact, dtype=np.int64))

    def __len__(self) -> int:
        return len(self.exact)

    def overlap(self, text: str) -> float:
        grams = {_key(g) for g in char_ngrams(_normalise(text), self.n)}
        if not grams:
            return 0.0
        hits = Counter(i for gram in grams for i in self.index.get(gram, ()))
        return max(hits.values()) / len(grams) if hits else 0.0

    def is_copy(self, text: str) -> bool:
        return _key(_normalise(text)) in self.exact or self.overlap(text) > self.threshold

    def tensors(self) -> dict[str, np.ndarray]:
        return {"copy_gram_keys": self.gram_keys, "copy_owners": self.owners, "copy_exact_keys": self.exact_keys}

    @classmethod
    def from_tensors(cls, tensors: dict[str, np.ndarray]) -> "HashedCopyDetector":
        return cls(tensors["copy_gram_keys"], tensors["copy_owners"], tensors["copy_exact_keys"])


def creativity_score(text: str, copies: HashedCopyDetector | None, free_cliches: int) -> tuple[float, list[str], float]:
    """(score, cliches found, copy overlap): a copy scores 0; each cliche past the free ones costs."""
    found = cliches_in(text)
    overlap = copies.overlap(text) if copies is not None and len(copies) else 0.0
    if copies is not None and len(copies) and copies.is_copy(text):
        return 0.0, found, max(overlap, 1.0 if overlap <= copies.threshold else overlap)
    excess = max(0, len(found) - free_cliches)
    return 1.0 / (1.0 + 0.5 * excess), found, overlap
