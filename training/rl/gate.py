"""The promotion gate: a candidate replaces the active checkpoint only when it is better beyond
noise and has not bought its judge score by copying or collapsing.

    decision = gate(candidate_report, active_report)     # two evaluate_generation reports
    decision.promote, decision.reasons

Rules (all must hold):
* pass rate: the paired bootstrap 95% interval of (candidate - active) per-prompt pass rate, on the
  same held-out prompts, lies entirely above 0;
* novelty: at least ``min_novelty`` (95%) and not more than ``novelty_tolerance`` below the active one;
* diversity: distinct-2 not below ``min_distinct2_ratio`` (90%) of the active one's.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Sequence

import torch

from training.rl.evaluation import BOOTSTRAP_SAMPLES


@dataclass(frozen=True)
class GateConfig:
    min_novelty: float = 0.95
    novelty_tolerance: float = 0.02  # sampling noise allowed before "dropping" counts
    min_distinct2_ratio: float = 0.9
    bootstrap_samples: int = BOOTSTRAP_SAMPLES
    seed: int = 0


@dataclass
class GateDecision:
    promote: bool
    reasons: list[str]
    difference: float
    difference_ci95: tuple[float, float]
    checks: dict = field(default_factory=dict)

    def as_dict(self) -> dict:
        return asdict(self)


def paired_bootstrap_difference(candidate: Sequence[float], active: Sequence[float],
                                samples: int = BOOTSTRAP_SAMPLES, seed: int = 0) -> tuple[float, tuple[float, float]]:
    """Mean of candidate - active over paired items and its percentile bootstrap 95% interval
    (items resampled together, so per-prompt difficulty cancels)."""
    if len(candidate) != len(active):
        raise ValueError(f"paired samples differ in size: {len(candidate)} vs {len(active)}")
    if not candidate:
        raise ValueError("no paired samples")
    diff = torch.tensor(candidate, dtype=torch.float64) - torch.tensor(active, dtype=torch.float64)
    gen = torch.Generator().manual_seed(seed)
    idx = torch.randint(0, len(diff), (samples, len(diff)), generator=gen)
    means = diff[idx].mean(dim=1).sort().values
    lo = means[int(0.025 * samples)].item()
    hi = means[min(samples - 1, int(0.975 * samples))].item()
    return float(diff.mean()), (lo, hi)


def gate(candidate: dict, active: dict, cfg: GateConfig = GateConfig()) -> GateDecision:
    """Compare two evaluate_generation reports made on the same prompts (same order)."""
    reasons: list[str] = []
    a, b = candidate["per_prompt_pass"], active["per_prompt_pass"]
    if len(a) != len(b):
        return GateDecision(False, [f"the reports cover different prompt sets ({len(a)} vs {len(b)} prompts)"],
                            math.nan, (math.nan, math.nan))
    diff, (lo, hi) = paired_bootstrap_difference(a, b, cfg.bootstrap_samples, cfg.seed)
    checks = {"pass_rate": lo > 0}
    if lo > 0:
        reasons.append(f"pass rate {candidate['pass_rate']:.3f} vs {active['pass_rate']:.3f}: "
                       f"+{diff:.3f}, 95% CI [{lo:+.3f}, {hi:+.3f}] excludes 0")
    else:
        reasons.append(f"pass rate {candidate['pass_rate']:.3f} vs {active['pass_rate']:.3f}: "
                       f"difference {diff:+.3f}, 95% CI [{lo:+.3f}, {hi:+.3f}] does not exclude 0 (not beyond noise)")

    novelty, active_novelty = candidate.get("novelty"), active.get("novelty")
    if novelty is None:
        checks["novelty"] = False
        reasons.append("novelty unknown (no training greetings to compare with): refused")
    else:
        floor_ok = novelty >= cfg.min_novelty
        drop_ok = active_novelty is None or novelty >= active_novelty - cfg.novelty_tolerance
        checks["novelty"] = floor_ok and drop_ok
        if not floor_ok:
            reasons.append(f"novelty {novelty:.3f} below the floor {cfg.min_novelty:.2f} (copies training greetings)")
        if not drop_ok:
            reasons.append(f"novelty dropped from {active_novelty:.3f} to {novelty:.3f} "
                           f"(more than {cfg.novelty_tolerance:.2f})")
        if floor_ok and drop_ok:
            reasons.append(f"novelty {novelty:.3f} ok")

    d2, active_d2 = candidate["distinct_2"], active["distinct_2"]
    diversity_ok = d2 >= cfg.min_distinct2_ratio * active_d2
    checks["diversity"] = diversity_ok
    reasons.append(f"distinct-2 {d2:.3f} vs {active_d2:.3f}: " +
                   ("ok" if diversity_ok else f"collapsed below {cfg.min_distinct2_ratio:.0%} of the active one"))
    return GateDecision(all(checks.values()), reasons, diff, (lo, hi), checks)
