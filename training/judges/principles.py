"""The principles of the offline judge and their executors: (components, requests, greetings) -> marks.

Each principle of a set names an executor; each executor gives one Mark per item: a 0..1 score,
whether the principle fails (below its calibrated threshold, or on a rule), a one-line reason in
Chinese and English when it does, and the signals the overall stack reads (training.judges.principled
fits the stack and the thresholds; `Components.calibration` holds them).
* request_fit: the request's slots against the greeting (training.judges.fit), gated per check;
* coherence: the learned contrastive scorer plus the occasion model's signals;
* preference: TF-IDF reward learned from people's pairs;
* fluency: a character bigram model's per-character likelihood (a gate only);
* cliche_copy: near-copies of training text and piled-up stock phrases.
"""
from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from functools import lru_cache

import numpy as np

from generation.requests import parse_request
from training.judges.coherence import CoherenceScorer
from training.judges.creativity import HashedCopyDetector, cliches_in
from training.judges.fit import HARD_CHECKS, request_fit
from training.judges.fluency import BigramModel
from training.judges.naturalness import NaturalnessModel
from training.judges.tfidf import TfidfJudge
from training.judges.topic import TopicModel

MIN_CJK_SHARE = 0.3  # below this share of Chinese characters a text is not a Chinese greeting


class PrincipleSetError(ValueError):
    """A principle set the offline judge cannot run; the message names the culprit."""


@dataclass(frozen=True)
class Principle:
    name: str
    zh: str
    en: str
    executor: str


PRINCIPLES_V1: tuple[Principle, ...] = (
    Principle("request_fit", "契合请求：场合、对象、长度与细节", "fits the request: occasion, addressee, length, details",
              "request_fit"),
    Principle("coherence", "内容恰当且符合语境，前后连贯", "fits the context and holds together", "coherence"),
    Principle("preference", "整体质量：情感真挚、用词准确（学自人的偏好）", "overall quality, learned from people's preferences",
              "preference"),
    Principle("fluency", "表达流畅自然", "fluent, natural expression", "fluency"),
    Principle("creativity", "有创意、不落俗套：不抄袭、不堆砌套话", "creative: no copying, no stacked cliches",
              "cliche_copy"),
)


@dataclass
class Mark:
    score: float
    failed: bool = False
    reason: str = ""  # "中文 / English", when failed
    signals: dict = field(default_factory=dict)  # what the overall stack reads


@dataclass
class Components:
    """The trained parts and the calibration; `calibration` holds thresholds, gates and stack."""

    coherence: CoherenceScorer
    topic: TopicModel
    preference: TfidfJudge
    fluency: BigramModel
    copies: HashedCopyDetector
    ambiguous: frozenset[str]
    calibration: dict
    naturalness: NaturalnessModel | None = None  # human vs the model's own samples (training.judges.naturalness)


# --------------------------------------------------------------------------------------------
# Executors: (components, queries, greetings) -> one Mark per item


def _reason(zh: str, en: str) -> str:
    return f"{zh} / {en}"


def run_request_fit(parts: Components, queries, greetings) -> list[Mark]:
    gates = parts.calibration.get("fit_gates", list(HARD_CHECKS))
    out = []
    for query, greeting in zip(queries, greetings):
        report = request_fit(query, greeting, ambiguous=parts.ambiguous)
        gated = [c for c in HARD_CHECKS if c in report.hard and c in gates]
        problems = [report.problems[c] for c in gated]
        reason = ("；".join(p[0] for p in problems) + " / " + "; ".join(p[1] for p in problems)) if gated else ""
        out.append(Mark(report.score, bool(gated), reason,
                        {f"fit_{c}": float(c in report.hard) for c in HARD_CHECKS}))
    return out


@lru_cache(maxsize=65536)
def asked_occasion(query: str) -> str | None:
    return parse_request(query).occasion


def run_coherence(parts: Components, queries, greetings) -> list[Mark]:
    """The learned scorer's logit and the occasion model's signals; the mark is their stack (a judge
    calibrated before a signal existed gives it no weight)."""
    threshold = parts.calibration.get("coherence_threshold")
    weights = parts.calibration.get("stack", {}).get("weights", {})
    unweighted = 0.0 if weights else 1.0
    topics = parts.topic.signals([asked_occasion(q) for q in queries], list(greetings))
    out = []
    for logit, topic in zip(parts.coherence.logits(list(queries), list(greetings)), topics):
        signals = {"coherence_logit": float(np.clip(logit, -20, 20)),
                   **{name: float(v) for name, v in zip(TOPIC_SIGNALS, topic)}}
        score = _sigmoid(sum(weights.get(k, unweighted) * v for k, v in signals.items())
                         + parts.calibration.get("coherence_bias", 0.0))
        failed = threshold is not None and score < threshold
        out.append(Mark(score, failed, _reason("内容与请求不符或前后不连贯", "off the request or does not hold together")
                        if failed else "", signals))
    return out


def run_preference(parts: Components, queries, greetings) -> list[Mark]:
    threshold = parts.calibration.get("preference_threshold")
    out = []
    for reward in parts.preference.rewards(list(greetings)):
        z = float((reward - parts.preference.threshold) / parts.preference.scale)
        score = _sigmoid(z)
        failed = threshold is not None and score < threshold
        out.append(Mark(score, failed, _reason("整体质量不及人们偏好的祝福", "below the greetings people prefer")
                        if failed else "", {"preference_logit": float(np.clip(z, -20, 20))}))
    return out


def run_fluency(parts: Components, queries, greetings) -> list[Mark]:
    threshold = parts.calibration.get("fluency_threshold", 0.5)
    natural = parts.naturalness.human_probability(list(greetings)) if parts.naturalness else [1.0] * len(greetings)
    out = []
    for greeting, human in zip(greetings, natural):
        z = parts.fluency.slope * parts.fluency.mean_logprob(greeting) + parts.fluency.intercept
        score = min(_sigmoid(z), human)  # the lower: garbled characters, or a clause that does not hold
        failed = score < threshold
        out.append(Mark(score, failed, _reason("表达不通顺，像是乱码或拼凑", "not fluent: reads as garbled or broken text")
                        if failed else "", {"fluency_logit": float(np.clip(z, -10, 10)), "naturalness": human}))
    return out


def run_cliche_copy(parts: Components, queries, greetings) -> list[Mark]:
    free = parts.calibration.get("free_cliches", 2)
    gate_copy = parts.calibration.get("gate_copy", True)
    gate_pile = parts.calibration.get("gate_cliche_pile", True)
    out = []
    for greeting in greetings:
        found = cliches_in(greeting)
        excess = max(0, len(found) - free)
        copy = bool(len(parts.copies)) and parts.copies.is_copy(greeting)
        score = 0.0 if copy else 1.0 / (1.0 + 0.5 * excess)
        reasons = []
        if copy and gate_copy:
            reasons.append(("几乎照抄了训练文本", "a near-copy of a training text"))
        if excess and gate_pile:
            shown = "、".join(found[:4])
            reasons.append((f"套话堆砌（{shown}）", f"{len(found)} stock phrases piled up"))
        failed = bool(reasons)
        out.append(Mark(score, failed, "；".join(r[0] for r in reasons) + " / " + "; ".join(r[1] for r in reasons)
                        if failed else "", {"cliche_excess": float(min(excess, 5)), "copy": float(copy)}))
    return out


EXECUTORS: dict[str, Callable[[Components, Sequence[str], Sequence[str]], list[Mark]]] = {
    "request_fit": run_request_fit,
    "coherence": run_coherence,
    "preference": run_preference,
    "fluency": run_fluency,
    "cliche_copy": run_cliche_copy,
}
# What the overall stack reads. Fluency is a gate only: on this data longer, richer greetings have a
# lower bigram likelihood than plain short ones, so as a weight it would reward the plain ones.
TOPIC_SIGNALS = ("topic_fit", "topic_split", "topic_tail", "topic_agree")  # TopicModel.signals' columns
COHERENCE_SIGNALS = ("coherence_logit", *TOPIC_SIGNALS)  # what the coherence mark stacks
SIGNALS = (*COHERENCE_SIGNALS, "preference_logit", "fit_occasion", "fit_length", "cliche_excess", "copy", "naturalness")
# The direction each signal may weigh in (a penalty never turns into a reward, whatever the fit says).
SIGNS = {**{name: 1 for name in COHERENCE_SIGNALS}, "preference_logit": 1, "fit_occasion": -1,
         "fit_length": -1, "cliche_excess": -1, "copy": -1, "naturalness": 1}


def check_principles(principles: Sequence[Principle | dict]) -> tuple[Principle, ...]:
    """The principle set as Principles; refuses an empty set or one naming an unknown executor."""
    checked = []
    for item in principles:
        p = item if isinstance(item, Principle) else Principle(**{k: item.get(k, "") for k in ("name", "zh", "en", "executor")})
        if p.executor not in EXECUTORS:
            raise PrincipleSetError(f"原则 {p.name!r} 的执行器 {p.executor!r} 未知 / principle {p.name!r} names an unknown "
                                    f"executor {p.executor!r}; known executors: {', '.join(EXECUTORS)}")
        checked.append(p)
    if not checked:
        raise PrincipleSetError("原则集为空 / the principle set has no principles")
    return tuple(checked)


def _sigmoid(x: float) -> float:
    return 1.0 / (1.0 + math.exp(-max(min(x, 50.0), -50.0)))


def cjk_share(text: str) -> float:
    chars = [ch for ch in text if not ch.isspace()]
    return sum("\u4e00" <= ch <= "\u9fff" or "\u3400" <= ch <= "\u4dbf" for ch in chars) / len(chars) if chars else 0.0


def unusable(greeting: str) -> str | None:
    """Why a text cannot be judged as a Chinese greeting at all, or None."""
    if not (greeting or "").strip():
        return _reason("祝福为空", "the greeting is empty")
    if cjk_share(greeting) < MIN_CJK_SHARE:
        return _reason("不是中文祝福", "not a Chinese greeting")
    return None
