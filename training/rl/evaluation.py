"""Evaluate a generator on held-out prompts: what the gate and ``evaluate_generation`` report.

``evaluate_generation(checkpoint_dir, prompts, judge, reference_dir, training_greetings=...)``:
pass rate (share the judge calls Good, the paper's "excellence rate"; per prompt over its
``samples``, with a bootstrap 95% interval over prompts), mean reward and judge score, k3 KL to
the SFT reference per token and per greeting, distinct-1/2, novelty (neither a verbatim nor a
near-verbatim copy of a training greeting: more than ``NEAR_COPY_THRESHOLD`` of its character
8-grams from one greeting; 8 characters is about a clause, longer than set phrases), and
lengths with the share cut off by the token limit.
"""
from __future__ import annotations

import math
import random
import statistics
import unicodedata
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Sequence

import torch

from generation.guards import COPY_NGRAM as NGRAM
from generation.guards import NEAR_COPY_THRESHOLD, CopyDetector, char_ngrams  # the one copy check, shared with serving
from training.rl.rewards import RewardConfig, compute_rewards

BOOTSTRAP_SAMPLES = 2000


class EvaluationError(ValueError):
    """Bad evaluation input; ``field`` names the offending parameter."""

    def __init__(self, field: str, message: str):
        self.field, self.message = field, message
        super().__init__(f"{field}: {message}")


# --------------------------------------------------------------------------------------------
# Text metrics


def normalise(text: str) -> str:
    return unicodedata.normalize("NFC", text).strip()


def distinct_n(texts: Iterable[str], n: int) -> float:
    """Distinct character n-grams / all character n-grams over the texts (0 when there are none)."""
    total, distinct = 0, set()
    for text in texts:
        grams = char_ngrams(text, n)
        total += len(grams)
        distinct.update(grams)
    return len(distinct) / total if total else 0.0


def novelty(texts: Sequence[str], detector: CopyDetector | None) -> float | None:
    """Share of texts that are not (near-)copies; None without training greetings to compare with."""
    if detector is None or not texts:
        return None
    return sum(not detector.is_copy(t) for t in texts) / len(texts)


def length_figures(texts: Sequence[str]) -> dict:
    lengths = sorted(len(t) for t in texts)
    if not lengths:
        return {"mean": 0.0, "median": 0.0, "p10": 0, "p90": 0}

    def pct(q):
        return lengths[min(len(lengths) - 1, int(q * len(lengths)))]

    return {"mean": statistics.fmean(lengths), "median": statistics.median(lengths), "p10": pct(0.1), "p90": pct(0.9)}


# --------------------------------------------------------------------------------------------
# Bootstrap


def bootstrap_interval(values: Sequence[float], samples: int = BOOTSTRAP_SAMPLES, seed: int = 0,
                       level: float = 0.95) -> tuple[float, float]:
    """Percentile bootstrap interval of the mean of ``values`` (resampled with replacement)."""
    if not values:
        return (math.nan, math.nan)
    values = torch.tensor(list(values), dtype=torch.float64)
    gen = torch.Generator().manual_seed(seed)
    idx = torch.randint(0, len(values), (samples, len(values)), generator=gen)
    means = values[idx].mean(dim=1).sort().values
    lo = means[int((1 - level) / 2 * samples)].item()
    hi = means[min(samples - 1, int((1 + level) / 2 * samples))].item()
    return (lo, hi)


# --------------------------------------------------------------------------------------------
# Generation + scoring


@dataclass
class Generated:
    query: str
    text: str
    token_ids: list[int]
    truncated: bool


def generate_for_prompts(model, tokenizer, prompts: Sequence[str], samples: int, temperature: float, top_p: float,
                         max_new_tokens: int, seed: int, batch_prompts: int = 16) -> list[Generated]:
    """``samples`` greetings per prompt on the serving engine (seeded per prompt: same greetings
    for the same checkpoint and seed whatever the batch)."""
    from generation.engine import Engine, SamplingParams
    from generation.tokenizer import encode_prompt

    engine = Engine(model, tokenizer, max_slots=max(samples, min(len(prompts), batch_prompts) * samples), max_n=samples)
    out = []
    for start in range(0, len(prompts), batch_prompts):
        chunk = prompts[start : start + batch_prompts]
        ids = [encode_prompt(tokenizer, q) for q in chunk]
        params = [SamplingParams(n=samples, max_tokens=room(engine, prompt, max_new_tokens), temperature=temperature,
                                 top_p=top_p, seed=seed + start + i) for i, prompt in enumerate(ids)]
        for query, result in zip(chunk, engine.generate(ids, params)):
            for c in result.candidates:
                out.append(Generated(query, c.text.strip(), list(c.token_ids), c.finish_reason == "length"))
    return out


def room(engine, prompt_ids: Sequence[int], max_new_tokens: int) -> int:
    """max_new_tokens, cut to what the model's context leaves after the prompt (at least 1)."""
    return max(1, min(max_new_tokens, engine.max_len - len(prompt_ids)))


@torch.no_grad()
def kl_to_reference(model, reference, tokenizer, generated: Sequence[Generated], batch_size: int = 32) -> dict:
    """Mean k3 KL(model || reference) per completion token and per greeting, on ``generated``."""
    from training.rl.grpo import Rollout, k3_kl, pack, token_logprobs

    token_sum, tokens, per_greeting = 0.0, 0, []
    for start in range(0, len(generated), batch_size):
        chunk = generated[start : start + batch_size]
        rollouts = [Rollout(g.query, _prompt_ids(tokenizer, g.query), g.token_ids, g.text, g.truncated) for g in chunk
                    if g.token_ids]
        if not rollouts:
            continue
        ids, mask = pack(rollouts, tokenizer.pad_token_id, next(model.parameters()).device)
        kl = k3_kl(token_logprobs(model, ids), token_logprobs(reference, ids)) * mask
        token_sum += float(kl.sum())
        tokens += int(mask.sum())
        per_greeting += kl.sum(dim=1).tolist()
    return {"kl_per_token": token_sum / tokens if tokens else 0.0,
            "kl_per_greeting": statistics.fmean(per_greeting) if per_greeting else 0.0}


def _prompt_ids(tokenizer, query: str) -> list[int]:
    from generation.tokenizer import encode_prompt

    return encode_prompt(tokenizer, query)


@dataclass
class EvalSettings:
    samples: int = 4  # greetings per prompt
    temperature: float = 0.8  # the serving defaults (studio, greet)
    top_p: float = 0.95
    max_new_tokens: int = 96
    seed: int = 0
    bootstrap_samples: int = BOOTSTRAP_SAMPLES

    def validate(self) -> None:
        checks = [
            ("samples", isinstance(self.samples, int) and 1 <= self.samples <= 16, "an integer in [1, 16]"),
            ("temperature", 0 <= self.temperature <= 2, "in [0, 2]"),
            ("top_p", 0 < self.top_p <= 1, "in (0, 1]"),
            ("max_new_tokens", isinstance(self.max_new_tokens, int) and 1 <= self.max_new_tokens <= 1024,
             "an integer in [1, 1024]"),
            ("bootstrap_samples", 100 <= self.bootstrap_samples <= 100_000, "in [100, 100000]"),
        ]
        for name, ok, wanted in checks:
            if not ok:
                raise EvaluationError(name, f"must be {wanted}, got {getattr(self, name)!r}")


def evaluate_generation(checkpoint: Path | str, prompts: Sequence[str], judge, reference: Path | str | None = None,
                        training_greetings: Iterable[str] | None = None, settings: EvalSettings | None = None,
                        reward_config: RewardConfig = RewardConfig(), model_and_tokenizer=None,
                        reference_model=None, keep_greetings: bool = False) -> dict:
    """The full report for one checkpoint (see the module docstring). ``per_prompt_pass`` (pass
    rate per prompt, in prompt order) is what the gate pairs between two checkpoints;
    ``keep_greetings`` adds every greeting with its judge score (``all_greetings``)."""
    from generation.checkpoint import load_checkpoint

    settings = settings or EvalSettings()
    settings.validate()
    prompts = [p.strip() for p in prompts if p and p.strip()]
    if not prompts:
        raise EvaluationError("prompts", "the prompt set is empty")
    model, tokenizer = model_and_tokenizer or load_checkpoint(Path(checkpoint))
    generated = generate_for_prompts(model, tokenizer, prompts, settings.samples, settings.temperature, settings.top_p,
                                     settings.max_new_tokens, settings.seed)
    texts = [g.text for g in generated]
    rewards = compute_rewards(judge, [g.query for g in generated], texts, reward_config,
                              truncated=[g.truncated for g in generated])
    passed = [r.judge_score >= 0.5 for r in rewards]
    per_prompt = [sum(passed[i : i + settings.samples]) / settings.samples for i in range(0, len(passed), settings.samples)]
    pass_rate = sum(passed) / len(passed)
    report = {
        "checkpoint": str(checkpoint),
        "judge": getattr(judge, "version", str(judge)),
        "prompts": len(prompts),
        "samples_per_prompt": settings.samples,
        "greetings": len(texts),
        "pass_rate": pass_rate,
        "pass_rate_ci95": list(bootstrap_interval(per_prompt, settings.bootstrap_samples, settings.seed)),
        "mean_reward": statistics.fmean(r.total for r in rewards),
        "mean_judge_score": statistics.fmean(r.judge_score for r in rewards),
        "distinct_1": distinct_n(texts, 1),
        "distinct_2": distinct_n(texts, 2),
        "novelty": None,
        "copies": None,
        "lengths": length_figures(texts),
        "truncated": sum(g.truncated for g in generated) / len(generated),
        "empty": sum(not t for t in texts) / len(texts),
        "kl_to_reference": None,
        "settings": vars(settings) | {"near_copy_threshold": NEAR_COPY_THRESHOLD, "ngram": NGRAM},
        "per_prompt_pass": per_prompt,
        "samples": [{"query": g.query, "greeting": g.text} for g in generated[:: settings.samples]],
    }
    if keep_greetings:
        report["all_greetings"] = [{"query": g.query, "greeting": g.text, "judge_score": r.judge_score}
                                   for g, r in zip(generated, rewards)]
    if training_greetings is not None:
        detector = CopyDetector(training_greetings)
        report["novelty"] = novelty(texts, detector)
        report["copies"] = sum(detector.is_copy(t) for t in texts)
    if reference is not None or reference_model is not None:
        ref = reference_model if reference_model is not None else load_checkpoint(Path(reference))[0]
        report["kl_to_reference"] = kl_to_reference(model, ref, tokenizer, generated)
        report["reference"] = str(reference) if reference is not None else None
    return report


def sample_rows(seed_report: dict, other_report: dict, count: int = 10, seed: int = 0) -> list[dict]:
    """``count`` prompts with the first greeting of each report side by side."""
    rows = [{"query": a["query"], "before": a["greeting"], "after": b["greeting"]}
            for a, b in zip(seed_report["samples"], other_report["samples"]) if a["query"] == b["query"]]
    random.Random(seed).shuffle(rows)
    return rows[:count]
