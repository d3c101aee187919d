"""The principle-guided offline judge: every principle of its set has a local executor.

    judge = default_offline_judge(Path("var/judges/principled-v1"))   # trains once, then loads
    judge.evaluate("给妈妈的中秋祝福", "妈，今晚的月亮又大又圆……")      # -> Verdict

Principles (PRINCIPLES_V1, each a 0..1 mark):
* request_fit (rule): the request's slots against the greeting (training.judges.fit);
* coherence (learned): the query-aware contrastive scorer (training.judges.coherence);
* fluency: a character bigram model's per-character likelihood (training.judges.fluency);
* creativity: near-copies of training text and piled-up cliches (training.judges.creativity).
A principle fails below its calibrated threshold; the verdict is Good only when none fails and
the overall score (a logistic stack of the principles' signals) clears its threshold. Each
failed principle gives a one-line reason in Chinese and English, like the paper's {judge, reason}.
Thresholds, stack weights and gates are chosen on a calibration split of the train side only.

Reproduce: python -m training.judges.principled --out var/judges/principled-v1
"""
from __future__ import annotations

import argparse
import hashlib
import json
import math
import os
import random
import shutil
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from safetensors.numpy import load_file, save_file
from sklearn.linear_model import LogisticRegression

from training.judges.base import BAD, GOOD, Verdict
from training.judges.coherence import CoherenceScorer, train_coherence
from training.judges.creativity import HashedCopyDetector, cliches_in
from training.judges.fit import HARD_CHECKS, ambiguous_words, request_fit
from training.judges.fluency import BigramModel, train_fluency
from training.judges.negatives import OccasionPool, make_negatives
from training.judges.registry import write_trained_queries
from training.judges.train_side import STARTER_DIR, TrainSide, collect

NAME = "principled-v1"
META_FILE = "principled.json"
COPIES_FILE = "copies.safetensors"
FORMAT_VERSION = 1
SHARED_DIR = Path(__file__).resolve().parents[2].parent / "shared" / "data" / "igniting"
CALIBRATION_FRACTION = 0.15
CALIBRATION_SALT = "principled-calibration"
MIN_CJK_SHARE = 0.3  # below this share of Chinese characters a text is not a Chinese greeting
CLICHE_QUANTILE = 0.95  # cliches beyond what this share of good training greetings carry are a pile
KAPPA_TOLERANCE = 0.005  # a product rule (gate) is kept unless it costs more calibration kappa than this
REPRODUCE = "python -m training.judges.principled --out {folder}"


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
    fluency: BigramModel
    copies: HashedCopyDetector
    ambiguous: frozenset[str]
    calibration: dict


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


def run_coherence(parts: Components, queries, greetings) -> list[Mark]:
    threshold = parts.calibration.get("coherence_threshold")
    out = []
    for logit in parts.coherence.logits(list(queries), list(greetings)):
        score = _sigmoid(float(logit))
        failed = threshold is not None and score < threshold
        out.append(Mark(score, failed, _reason("内容与请求不符或前后不连贯", "off the request or does not hold together")
                        if failed else "", {"coherence_logit": float(np.clip(logit, -20, 20))}))
    return out


def run_fluency(parts: Components, queries, greetings) -> list[Mark]:
    threshold = parts.calibration.get("fluency_threshold", 0.5)
    out = []
    for greeting in greetings:
        z = parts.fluency.slope * parts.fluency.mean_logprob(greeting) + parts.fluency.intercept
        score = _sigmoid(z)
        failed = score < threshold
        out.append(Mark(score, failed, _reason("表达不通顺，像是乱码或拼凑", "not fluent: reads as garbled or broken text")
                        if failed else "", {"fluency_logit": float(np.clip(z, -10, 10))}))
    return out


def run_cliche_copy(parts: Components, queries, greetings) -> list[Mark]:
    free = parts.calibration.get("free_cliches", 2)
    gate_copy = parts.calibration.get("gate_copy", True)
    out = []
    for greeting in greetings:
        found = cliches_in(greeting)
        excess = max(0, len(found) - free)
        copy = bool(len(parts.copies)) and parts.copies.is_copy(greeting)
        score = 0.0 if copy else 1.0 / (1.0 + 0.5 * excess)
        reasons = []
        if copy and gate_copy:
            reasons.append(("几乎照抄了训练文本", "a near-copy of a training text"))
        if excess:
            shown = "、".join(found[:4])
            reasons.append((f"套话堆砌（{shown}）", f"{len(found)} stock phrases piled up"))
        failed = bool(reasons)
        out.append(Mark(score, failed, "；".join(r[0] for r in reasons) + " / " + "; ".join(r[1] for r in reasons)
                        if failed else "", {"cliche_excess": float(min(excess, 5)), "copy": float(copy)}))
    return out


EXECUTORS: dict[str, Callable[[Components, Sequence[str], Sequence[str]], list[Mark]]] = {
    "request_fit": run_request_fit,
    "coherence": run_coherence,
    "fluency": run_fluency,
    "cliche_copy": run_cliche_copy,
}
SIGNALS = ("coherence_logit", "fluency_logit", "fit_occasion", "fit_length", "cliche_excess", "copy")


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


# --------------------------------------------------------------------------------------------
# The judge


@dataclass
class PrincipledJudge:
    components: Components
    principles: tuple[Principle, ...] = PRINCIPLES_V1
    name: str = NAME
    info: dict = field(default_factory=dict)

    def __post_init__(self):
        self.principles = check_principles(self.principles)

    @property
    def version(self) -> str:
        return self.name

    def marks(self, queries: Sequence[str], greetings: Sequence[str]) -> list[dict[str, Mark]]:
        if len(queries) != len(greetings):
            raise ValueError(f"{len(queries)} queries but {len(greetings)} greetings")
        per_principle = {p.name: EXECUTORS[p.executor](self.components, queries, greetings) for p in self.principles}
        return [{name: marks[i] for name, marks in per_principle.items()} for i in range(len(greetings))]

    def overall(self, marks: dict[str, Mark]) -> float:
        """The stack's logit, centred so that 0 is the calibrated Good/Bad cut."""
        stack = self.components.calibration.get("stack", {})
        signals = {k: v for m in marks.values() for k, v in m.signals.items()}
        z = stack.get("bias", 0.0) + sum(w * signals.get(k, 0.0) for k, w in stack.get("weights", {}).items())
        return z - self.components.calibration.get("overall_threshold", 0.0)

    def _judge(self, queries: Sequence[str], greetings: Sequence[str]) -> list[tuple[float, list[Principle], dict, str | None]]:
        queries, greetings = [q or "" for q in queries], [g or "" for g in greetings]
        bad_input = [unusable(g) for g in greetings]
        usable = [i for i, why in enumerate(bad_input) if why is None]
        judged = dict(zip(usable, self.marks([queries[i] for i in usable], [greetings[i] for i in usable])))
        out = []
        for i, why in enumerate(bad_input):
            if why is not None:
                out.append((0.0, [], {p.name: 0.0 for p in self.principles}, why))
                continue
            marks = judged[i]
            z = self.overall(marks)
            failed = [p for p in self.principles if marks[p.name].failed]
            score = _sigmoid(z)
            if failed:  # a failed principle keeps the score under 0.5, its order among the failed kept
                score = 0.5 * score
            rubric = {p.name: round(marks[p.name].score, 4) for p in self.principles}
            reason = None
            if failed:
                reason = "；".join(f"[{p.name}] {marks[p.name].reason}" for p in failed)
            elif z < 0:
                reason = _reason("各项原则均过，但总体质量不够", "no principle fails, but the overall quality is below the bar")
            out.append((score, failed, rubric, reason))
        return out

    def scores(self, queries: Sequence[str], responses: Sequence[str]) -> list[float]:
        return [float(min(max(score, 0.0), 1.0)) for score, *_ in self._judge(queries, responses)]

    def evaluate_many(self, queries: Sequence[str], responses: Sequence[str]) -> list[Verdict]:
        verdicts = []
        for score, _failed, rubric, reason in self._judge(queries, responses):
            score = float(min(max(score, 0.0), 1.0))
            good = score >= 0.5 and reason is None
            verdicts.append(Verdict(GOOD if good else BAD, score,
                                    reason or _reason("各项原则均通过", "every principle passes"), self.version, rubric))
        return verdicts

    def evaluate(self, query: str, response: str) -> Verdict:
        return self.evaluate_many([query], [response])[0]

    # ----------------------------------------------------------------------------------------

    def save(self, folder: Path) -> Path:
        """Written to a temporary folder and renamed into place."""
        folder = Path(folder)
        folder.parent.mkdir(parents=True, exist_ok=True)
        tmp = folder.with_name(f".{folder.name}.{uuid.uuid4().hex[:8]}")
        tmp.mkdir()
        self.components.coherence.save(tmp)
        self.components.fluency.save(tmp)
        save_file(self.components.copies.tensors(), str(tmp / COPIES_FILE))
        meta = {"kind": "principled", "format": FORMAT_VERSION, "name": self.name,
                "principles": [p.__dict__ for p in self.principles],
                "calibration": self.components.calibration, "ambiguous_words": sorted(self.components.ambiguous),
                "reproduce": REPRODUCE.format(folder=folder), "info": self.info}
        (tmp / META_FILE).write_text(json.dumps(meta, ensure_ascii=False, indent=1), encoding="utf-8")
        if self.info.get("trained_queries"):
            write_trained_queries(tmp, self.info.pop("trained_queries"))
        if folder.exists():
            shutil.rmtree(folder)
        os.replace(tmp, folder)
        return folder

    @classmethod
    def load(cls, folder: Path, principles: Sequence[Principle | dict] | None = None) -> "PrincipledJudge":
        folder = Path(folder)
        path = folder / META_FILE
        if not path.is_file():
            raise FileNotFoundError(f"{folder}: no {META_FILE}")
        meta = json.loads(path.read_text(encoding="utf-8"))
        if meta.get("kind") != "principled":
            raise ValueError(f"{folder}: not a principled judge (kind={meta.get('kind')!r})")
        parts = Components(CoherenceScorer.load(folder), BigramModel.load(folder),
                           HashedCopyDetector.from_tensors(load_file(str(folder / COPIES_FILE))),
                           frozenset(meta.get("ambiguous_words", [])), meta["calibration"])
        chosen = principles if principles is not None else [Principle(**p) for p in meta["principles"]]
        return cls(parts, check_principles(chosen), meta.get("name", NAME), meta.get("info", {}))


# --------------------------------------------------------------------------------------------
# Training and calibration


def in_calibration(query: str) -> bool:
    digest = hashlib.sha256(f"{CALIBRATION_SALT}:{query.strip()}".encode()).hexdigest()
    return int(digest[:8], 16) % 10_000 < CALIBRATION_FRACTION * 10_000


def split_train_side(data: TrainSide) -> tuple[TrainSide, TrainSide]:
    fit, calibration = TrainSide([], [], []), TrainSide([], [], [])
    for e in data.examples:
        (calibration if in_calibration(e.query) else fit).examples.append(e)
    for p in data.pairs:
        (calibration if in_calibration(p.query) else fit).pairs.append(p)
    for w in data.weak:
        (calibration if in_calibration(w[0]) else fit).weak.append(w)
    return fit, calibration


def labelled_rows(data: TrainSide, rng: random.Random, per_example: int) -> tuple[list[tuple[str, str, int]], list[str]]:
    """(request, greeting, label) rows and each row's group: good, real (people's bad) or a flaw kind."""
    pool = OccasionPool(data.examples)
    rows = [(e.query, e.greeting, 1) for e in data.examples]
    groups = ["good"] * len(rows)
    for query, text in [(p.query, p.rejected) for p in data.pairs] + list(data.weak):
        rows.append((query, text, 0))
        groups.append("real")
    for query, text, kind in make_negatives(data.examples, pool, rng, per_example=per_example):
        rows.append((query, text, 0))
        groups.append(kind)
    return rows, groups


def balanced_weights(groups: Sequence[str]) -> np.ndarray:
    """Good rows weigh as much as all bad rows; people's bad rows as much as all made-up flaws."""
    groups = np.asarray(groups)
    weights = np.ones(len(groups))
    good, real = groups == "good", groups == "real"
    made = ~good & ~real
    n_good = max(good.sum(), 1)
    if real.any() and made.any():
        weights[real] = 0.5 * n_good / real.sum()
        weights[made] = 0.5 * n_good / made.sum()
    elif (~good).any():
        weights[~good] = n_good / (~good).sum()
    return weights


def weighted_kappa(truth: np.ndarray, predicted: np.ndarray, weights: np.ndarray) -> float:
    w = weights / weights.sum()
    observed = float((w * (truth == predicted)).sum())
    p_true, p_pred = float((w * truth).sum()), float((w * predicted).sum())
    expected = p_true * p_pred + (1 - p_true) * (1 - p_pred)
    return 0.0 if expected >= 1.0 else (observed - expected) / (1 - expected)


def best_cut(values: np.ndarray, truth: np.ndarray, weights: np.ndarray, extra_bad: np.ndarray | None = None) -> tuple[float, float]:
    """(cut, kappa): Good iff value >= cut (and not extra_bad), the cut maximising weighted kappa."""
    extra_bad = np.zeros(len(values), dtype=bool) if extra_bad is None else extra_bad
    candidates = np.unique(np.quantile(values, np.linspace(0.01, 0.99, 197)))
    best = (float(candidates[0]), -2.0)
    for cut in candidates:
        kappa = weighted_kappa(truth, ((values >= cut) & ~extra_bad).astype(int), weights)
        if kappa > best[1]:
            best = (float(cut), kappa)
    return best


def calibrate(parts: Components, rows, groups) -> dict:
    """Stack weights, the overall cut and which principle gates to keep, on calibration rows."""
    queries, greetings = [r[0] for r in rows], [r[1] for r in rows]
    truth = np.array([r[2] for r in rows])
    weights = balanced_weights(groups)
    judge = PrincipledJudge(parts)
    marks = judge.marks(queries, greetings)
    signals = np.array([[{k: v for m in ms.values() for k, v in m.signals.items()}[s] for s in SIGNALS] for ms in marks])
    stack = LogisticRegression(C=1.0, max_iter=1000).fit(signals, truth, sample_weight=weights)
    parts.calibration["stack"] = {"weights": dict(zip(SIGNALS, stack.coef_[0].round(5).tolist())),
                                  "bias": round(float(stack.intercept_[0]), 5)}
    z = stack.decision_function(signals)
    cut, kappa = best_cut(z, truth, weights)
    parts.calibration["overall_threshold"] = round(cut, 5)
    report = {"overall_only_kappa": round(kappa, 4)}
    kept = np.zeros(len(rows), dtype=bool)  # rows failed by the gates kept so far
    coherence = np.array([m["coherence"].score for m in marks])
    fluency = np.array([m["fluency"].score for m in marks])
    fit_hard = {c: np.array([m["request_fit"].signals[f"fit_{c}"] > 0 for m in marks]) for c in HARD_CHECKS}
    copy = np.array([m["creativity"].signals["copy"] > 0 for m in marks])
    pile = np.array([m["creativity"].signals["cliche_excess"] > 0 for m in marks])
    candidate_gates = {f"fit_{c}": fit_hard[c] for c in HARD_CHECKS}
    candidate_gates |= {"fluency": fluency < parts.calibration.get("fluency_threshold", 0.5), "copy": copy,
                        "cliche_pile": pile}
    # The coherence gate's cut: the one best at telling good greetings from made-up flaws alone.
    made = np.array([g not in ("good", "real") for g in groups])
    subset = ~np.array([g == "real" for g in groups])
    c_cut, _ = best_cut(coherence[subset], truth[subset], weights[subset])
    candidate_gates["coherence"] = coherence < c_cut
    base = kappa
    decisions = {}
    for name, fails in candidate_gates.items():
        with_gate = weighted_kappa(truth, ((z >= cut) & ~kept & ~fails).astype(int), weights)
        keep = with_gate >= base - KAPPA_TOLERANCE
        decisions[name] = {"kappa_with": round(with_gate, 4), "kappa_without": round(base, 4), "kept": bool(keep),
                           "fails_good": round(float((fails & (truth == 1)).mean() / max((truth == 1).mean(), 1e-9)), 4),
                           "fails_made_up_flaws": round(float(fails[made].mean()) if made.any() else 0.0, 4)}
        if keep:
            kept |= fails
            base = weighted_kappa(truth, ((z >= cut) & ~kept).astype(int), weights)
    parts.calibration["fit_gates"] = [c for c in HARD_CHECKS if decisions[f"fit_{c}"]["kept"]]
    parts.calibration["coherence_threshold"] = round(float(c_cut), 5) if decisions["coherence"]["kept"] else None
    parts.calibration["fluency_threshold"] = parts.calibration.get("fluency_threshold", 0.5) if decisions["fluency"]["kept"] else 0.0
    parts.calibration["gate_copy"] = decisions["copy"]["kept"]
    if not decisions["cliche_pile"]["kept"]:
        parts.calibration["free_cliches"] = 99
    report |= {"gates": decisions, "final_kappa": round(base, 4), "rows": len(rows),
               "groups": {g: int((np.asarray(groups) == g).sum()) for g in sorted(set(groups))}}
    return report


def free_cliche_count(greetings: Sequence[str]) -> int:
    counts = sorted(len(cliches_in(g)) for g in greetings)
    return int(counts[min(len(counts) - 1, int(CLICHE_QUANTILE * len(counts)))]) if counts else 2


def train_principled(data: TrainSide, *, seed: int = 0, negatives_per_example: int = 3,
                     progress: Callable[[str], None] | None = None) -> PrincipledJudge:
    """Fit the learned parts on the fit split, calibrate on the calibration split (both train side)."""
    say = progress or (lambda message: None)
    started = time.perf_counter()
    if not data.examples:
        raise ValueError("no good greetings to train the principled judge on")
    fit, calibration = split_train_side(data)
    if not calibration.examples or not fit.examples:
        fit, calibration = data, data  # too little data to split: calibrate in-sample (tests, tiny corpora)
    rng = random.Random(seed)
    rows, groups = labelled_rows(fit, rng, negatives_per_example)
    say(f"coherence: {len(rows)} rows")
    coherence = train_coherence(rows, sample_weight=balanced_weights(groups))
    say("fluency")
    fluency = train_fluency([e.greeting for e in fit.examples], [e.greeting for e in calibration.examples], seed)
    ambiguous = ambiguous_words((e.occasion, e.greeting) for e in fit.examples if e.occasion)
    fit_copies = HashedCopyDetector.from_texts(e.greeting for e in fit.examples)
    parts = Components(coherence, fluency, fit_copies, ambiguous,
                       {"free_cliches": free_cliche_count([e.greeting for e in fit.examples]), "fluency_threshold": 0.5})
    say("calibration")
    cal_rows, cal_groups = labelled_rows(calibration, random.Random(seed + 1), 1)
    report = calibrate(parts, cal_rows, cal_groups)
    parts.copies = HashedCopyDetector.from_texts(e.greeting for e in data.examples)
    info = {"train_seconds": round(time.perf_counter() - started, 1), "seed": seed,
            "fit": {"examples": len(fit.examples), "pairs": len(fit.pairs), "weak": len(fit.weak), "rows": len(rows)},
            "calibration": report, "fluency": fluency.info, "coherence": coherence.info,
            "trained_queries": sorted(data.queries())}
    return PrincipledJudge(parts, PRINCIPLES_V1, NAME, info)


def default_offline_judge(folder: Path, *, starter_dir: Path = STARTER_DIR, shared_dir: Path | None = SHARED_DIR,
                          retrain: bool = False) -> PrincipledJudge:
    """The principled judge saved in `folder`, trained there first (minutes on 2 cores) when absent:
    on the team corpus plus the shared train-side files when they exist."""
    folder = Path(folder)
    if not retrain and (folder / META_FILE).is_file():
        return PrincipledJudge.load(folder)
    judge = train_principled(collect(starter_dir, shared_dir))
    judge.save(folder)
    return PrincipledJudge.load(folder)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, required=True, help="the folder to write the judge to")
    parser.add_argument("--starter", type=Path, default=STARTER_DIR)
    parser.add_argument("--shared", type=Path, default=SHARED_DIR, help="the shared data folder (skipped if absent)")
    parser.add_argument("--no-shared", action="store_true", help="train on the team corpus only")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    data = collect(args.starter, None if args.no_shared else args.shared)
    judge = train_principled(data, seed=args.seed, progress=print)
    seconds = judge.info["train_seconds"]
    judge.save(args.out)
    print(f"saved {args.out} ({seconds}s); calibration: "
          f"{json.dumps(judge.info['calibration'] if 'calibration' in judge.info else {}, ensure_ascii=False)[:2000]}")


if __name__ == "__main__":
    main()
