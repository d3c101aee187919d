"""GRPO (Shao et al. 2024, DeepSeekMath) on our LongCat-Flash generator, with the judge as reward.

``train_grpo(GRPOConfig(init_checkpoint=..., out_dir=..., prompts=...), judge)``. Per step:
``prompts_per_step`` queries x ``group_size`` samples from the current policy; rewards
(training.rl.rewards) normalised within each group; per completion token the clipped
policy-gradient term plus ``kl_coef`` times the k3 estimate of KL(policy || SFT reference).
Rollouts run on the serving engine, which reads the live weights (README: why not TRL). Router
biases are steered to the preset's K_e after every step as in SFT. Resumable: every
``save_every`` steps (and when stopped) ``out_dir/state`` holds model, AdamW moments, RNG and
history; the final checkpoint is written atomically.
"""
from __future__ import annotations

import random
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Sequence

import torch

from generation.checkpoint import load_checkpoint, read_metadata, save_checkpoint
from generation.engine import Engine, SamplingParams
from generation.presets import PresetError, get_preset
from generation.tokenizer import encode_prompt
from training.rl.evaluation import CopyDetector, distinct_n, room
from training.rl.rewards import DiversityBank, RewardConfig, compute_rewards
from training.routing import RoutingRecorder, update_router_bias
from training.runs import Progress, RunFolder, jsonable, notify
from training.state import load_state, save_state
from training.steps import Window, adamw, set_lr

ROLLOUT_BACKENDS = ("engine", "generate")


class GRPOError(Exception):
    """A run that cannot start or resume; ``field`` names the GRPOConfig field at fault, when one is."""

    def __init__(self, message: str, field: str | None = None):
        super().__init__(message)
        self.field = field


@dataclass
class GRPOConfig:
    init_checkpoint: Path  # the SFT checkpoint the policy starts from
    out_dir: Path  # run folder: state/, metrics.jsonl, checkpoint/
    prompts: list[str] = field(default_factory=list)  # training queries
    reference_checkpoint: Path | None = None  # KL anchor; default: init_checkpoint
    group_size: int = 4
    prompts_per_step: int = 8
    max_steps: int = 100
    lr: float = 2e-5
    weight_decay: float = 0.1  # AdamW decay of the matrices (norms never decay), as in SFT
    kl_coef: float = 1e-3
    clip_eps: float = 0.2
    updates_per_batch: int = 1  # optimiser steps on each batch of rollouts (>1 makes the clip matter)
    temperature: float = 1.0  # 1.0 samples from the policy itself (the loss assumes it)
    max_new_tokens: int = 96
    grad_clip: float = 1.0
    seed: int = 0
    rollout: str = "engine"  # or "generate" (transformers' model.generate, what TRL uses)
    max_seconds: float | None = None  # wall-clock budget: stop cleanly and save when exceeded
    save_every: int = 20
    log_every: int = 1
    progress_bar: bool = True
    reward: RewardConfig = field(default_factory=RewardConfig)
    training_greetings: list[str] | None = None  # what reward.copy_coef counts copies of

    def validate(self) -> None:
        checks = [
            ("group_size", 2 <= self.group_size <= 16, "an integer in [2, 16]"),
            ("prompts_per_step", 1 <= self.prompts_per_step <= 256, "an integer in [1, 256]"),
            ("max_steps", 1 <= self.max_steps <= 100_000, "an integer in [1, 100000]"),
            ("lr", 0 < self.lr <= 1e-2, "in (0, 0.01]"),
            ("weight_decay", 0 <= self.weight_decay <= 1, "in [0, 1]"),
            ("kl_coef", 0 <= self.kl_coef <= 10, "in [0, 10]"),
            ("clip_eps", 0 < self.clip_eps < 1, "in (0, 1)"),
            ("updates_per_batch", 1 <= self.updates_per_batch <= 16, "an integer in [1, 16]"),
            ("temperature", 0 < self.temperature <= 2, "in (0, 2]"),
            ("max_new_tokens", 1 <= self.max_new_tokens <= 1024, "an integer in [1, 1024]"),
            ("rollout", self.rollout in ROLLOUT_BACKENDS, f"one of {', '.join(ROLLOUT_BACKENDS)}"),
            ("max_seconds", self.max_seconds is None or self.max_seconds > 0, "positive"),
            ("save_every", self.save_every >= 1, "at least 1"),
        ]
        for name, ok, wanted in checks:
            if not ok:
                raise GRPOError(f"{name} must be {wanted}, got {getattr(self, name)!r}", field=name)
        if not self.prompts:
            raise GRPOError("prompts: the prompt set is empty", field="prompts")


@dataclass
class Rollout:
    query: str
    prompt_ids: list[int]
    completion_ids: list[int]  # sampled tokens, the end token included when it stopped
    text: str
    truncated: bool  # hit max_new_tokens without an end token


@dataclass
class GRPOResult:
    checkpoint_dir: Path | None  # None when stopped early by on_progress (resume to finish)
    metrics: dict
    history: list[dict]
    completed: bool = True
    steps: int = 0
    wall_s: float = 0.0


# --------------------------------------------------------------------------------------------
# Rollouts


def rollout_engine(engine, queries: Sequence[str], group_size: int, temperature: float, max_new_tokens: int,
                   seed: int) -> list[Rollout]:
    """``group_size`` samples per query on the serving engine, all queries batched together."""
    tokenizer = engine.tokenizer
    prompts = [encode_prompt(tokenizer, q) for q in queries]
    params = [SamplingParams(n=group_size, max_tokens=room(engine, prompt, max_new_tokens), temperature=temperature,
                             seed=seed + i) for i, prompt in enumerate(prompts)]
    outputs = engine.generate(prompts, params)
    rollouts = []
    for query, prompt, output in zip(queries, prompts, outputs):
        for c in output.candidates:
            rollouts.append(Rollout(query, prompt, list(c.token_ids), c.text.strip(), c.finish_reason == "length"))
    return rollouts


@torch.no_grad()
def rollout_generate(model, tokenizer, queries: Sequence[str], group_size: int, temperature: float,
                     max_new_tokens: int, seed: int) -> list[Rollout]:
    """The same with transformers' ``model.generate`` (one call per query: left-padded batches fail on
    this architecture, see bench.engine), as TRL's GRPOTrainer would sample."""
    model.eval()
    eos = tokenizer.eos_token_id
    rollouts = []
    with torch.random.fork_rng(devices=[]):
        for i, query in enumerate(queries):
            torch.manual_seed(seed + i)
            prompt = encode_prompt(tokenizer, query)
            input_ids = torch.tensor([prompt] * group_size, device=next(model.parameters()).device)
            out = model.generate(input_ids=input_ids, attention_mask=torch.ones_like(input_ids), do_sample=True,
                                 temperature=temperature, top_p=1.0, top_k=0,
                                 max_new_tokens=max(1, min(max_new_tokens, model.config.max_position_embeddings - len(prompt))),
                                 eos_token_id=eos, pad_token_id=tokenizer.pad_token_id)
            for row in out[:, len(prompt):].tolist():
                ids = row[: row.index(eos) + 1] if eos in row else row
                text = tokenizer.decode([t for t in ids if t != eos], skip_special_tokens=True).strip()
                rollouts.append(Rollout(query, prompt, ids, text, eos not in ids))
    return rollouts


# --------------------------------------------------------------------------------------------
# The loss


def group_advantages(rewards: torch.Tensor, group_size: int, eps: float = 1e-4) -> torch.Tensor:
    """(r - group mean) / (group std + eps) for rewards laid out group after group; a group whose
    samples all scored the same gets 0 (it carries no signal)."""
    if rewards.numel() % group_size:
        raise ValueError(f"{rewards.numel()} rewards do not split into groups of {group_size}")
    grouped = rewards.view(-1, group_size)
    mean = grouped.mean(dim=1, keepdim=True)
    std = grouped.std(dim=1, unbiased=False, keepdim=True)
    return ((grouped - mean) / (std + eps)).view(-1)


def k3_kl(logp: torch.Tensor, ref_logp: torch.Tensor) -> torch.Tensor:
    """Per-token k3 estimate of KL(policy || reference) on tokens sampled from the policy:
    exp(ref - logp) - (ref - logp) - 1 >= 0, and exactly 0 where the two agree."""
    log_ratio = (ref_logp - logp).clamp(-20.0, 20.0)
    return torch.exp(log_ratio) - log_ratio - 1.0


def grpo_loss(logp: torch.Tensor, old_logp: torch.Tensor, ref_logp: torch.Tensor, advantages: torch.Tensor,
              mask: torch.Tensor, clip_eps: float, kl_coef: float) -> tuple[torch.Tensor, dict]:
    """Clipped surrogate + kl_coef * k3, averaged over the batch's completion tokens.

    logp / old_logp / ref_logp / mask: [N, T] (mask 1 on completion tokens); advantages: [N]."""
    mask = mask.to(logp.dtype)
    ratio = torch.exp(logp - old_logp)
    adv = advantages.unsqueeze(1)
    surrogate = torch.minimum(ratio * adv, ratio.clamp(1 - clip_eps, 1 + clip_eps) * adv)
    kl = k3_kl(logp, ref_logp)
    per_token = -surrogate + kl_coef * kl
    tokens = mask.sum().clamp_min(1)
    loss = (per_token * mask).sum() / tokens
    with torch.no_grad():
        clipped = ((ratio - 1).abs() > clip_eps).to(mask.dtype)
        stats = {"kl": float((kl * mask).sum() / tokens), "clip_fraction": float((clipped * mask).sum() / tokens),
                 "policy_loss": float((-surrogate * mask).sum() / tokens)}
    return loss, stats


def pack(rollouts: Sequence[Rollout], pad_id: int, device) -> tuple[torch.Tensor, torch.Tensor]:
    """Right-padded input ids [N, L] and the completion mask [N, L-1] aligned with next-token
    log-probs (position t predicts token t+1)."""
    seqs = [r.prompt_ids + r.completion_ids for r in rollouts]
    width = max(len(s) for s in seqs)
    ids = torch.full((len(seqs), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(seqs), width - 1))
    for i, (r, s) in enumerate(zip(rollouts, seqs)):
        ids[i, : len(s)] = torch.tensor(s)
        start = len(r.prompt_ids) - 1
        mask[i, start : start + len(r.completion_ids)] = 1.0
    return ids.to(device), mask.to(device)


def token_logprobs(model, input_ids: torch.Tensor) -> torch.Tensor:
    """log p(token t+1 | tokens <= t) for every position: [N, L-1]. Right padding needs no attention
    mask (attention is causal, pads only follow the tokens that matter)."""
    logits = model(input_ids=input_ids).logits[:, :-1].float()
    return torch.log_softmax(logits, dim=-1).gather(2, input_ids[:, 1:].unsqueeze(2)).squeeze(2)


# --------------------------------------------------------------------------------------------
# One step


def grpo_update(model, reference, optimizer, rollouts: Sequence[Rollout], advantages: torch.Tensor, cfg: GRPOConfig,
                pad_id: int, recorder: RoutingRecorder | None = None, routing: tuple[float, float] | None = None) -> dict:
    """``updates_per_batch`` optimiser steps on one batch of rollouts; the stats of the last."""
    device = next(model.parameters()).device
    input_ids, mask = pack(rollouts, pad_id, device)
    advantages = advantages.to(device)
    with torch.no_grad():
        model.eval()
        old_logp = token_logprobs(model, input_ids)
        ref_logp = token_logprobs(reference, input_ids)
    stats: dict = {}
    real_tokens = input_ids != pad_id
    for _ in range(cfg.updates_per_batch):
        model.train()
        if recorder is not None:
            recorder.clear()
        logp = token_logprobs(model, input_ids)
        loss, stats = grpo_loss(logp, old_logp, ref_logp, advantages, mask, cfg.clip_eps, cfg.kl_coef)
        loss.backward()
        stats["grad_norm"] = float(torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip))
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        stats["loss"] = loss.item()
        if recorder is not None and recorder.has_data():
            if routing is not None:
                mu, target = routing
                stats["real_experts_per_token"] = update_router_bias(model, recorder, mu, target, real_tokens)
            else:
                stats["real_experts_per_token"] = recorder.stats(real_tokens)["real_experts_per_token_mean"]
    model.eval()
    stats["completion_tokens"] = int(mask.sum())
    return stats


def routing_targets(checkpoint: Path) -> tuple[float, float] | None:
    """(mu, K_e) of the preset the checkpoint was trained with, to keep steering the router biases."""
    meta = read_metadata(checkpoint)
    config = meta.get("preset_config") or {}
    if "bias_update_rate" in config and "target_real_experts" in config:
        return float(config["bias_update_rate"]), float(config["target_real_experts"])
    try:
        preset = get_preset(meta.get("preset", ""))
    except PresetError:
        return None
    return preset.bias_update_rate, preset.target_real_experts


# --------------------------------------------------------------------------------------------
# The loop


def run_spec(cfg: GRPOConfig) -> dict:
    """What a resumed run must share with the original one."""
    spec = {k: v for k, v in asdict(cfg).items()
            if k not in ("out_dir", "max_steps", "max_seconds", "progress_bar", "prompts", "save_every", "log_every",
                         "training_greetings")}
    spec["prompts"] = len(cfg.prompts)
    spec["training_greetings"] = len(cfg.training_greetings or ())
    return jsonable({**spec, "init_checkpoint": str(cfg.init_checkpoint),
                     "reference_checkpoint": str(cfg.reference_checkpoint or cfg.init_checkpoint)})


def batch_queries(prompts: Sequence[str], step: int, per_step: int, seed: int) -> list[str]:
    """The step's queries: a pure function of (seed, step) over reshuffled epochs, so a resumed run
    sees the same prompts an uninterrupted one would."""
    n = len(prompts)
    out = []
    for k in range(step * per_step, (step + 1) * per_step):
        epoch, index = divmod(k, n)
        order = list(range(n))
        random.Random(seed * 7919 + epoch).shuffle(order)
        out.append(prompts[order[index]])
    return out


def train_grpo(cfg: GRPOConfig, judge, resume: bool = False, on_progress=None) -> GRPOResult:
    """Run GRPO; returns the checkpoint folder (out_dir/checkpoint) and the last metrics."""
    cfg.validate()
    out_dir = Path(cfg.out_dir)
    spec = run_spec(cfg)
    torch.manual_seed(cfg.seed)
    model, tokenizer = load_checkpoint(Path(cfg.init_checkpoint))
    reference, _ = load_checkpoint(Path(cfg.reference_checkpoint or cfg.init_checkpoint))
    for p in reference.parameters():
        p.requires_grad_(False)
    optimizer = adamw(model, lr=cfg.lr, weight_decay=cfg.weight_decay)
    step, history = 0, []
    run = RunFolder(out_dir, GRPOError, what="GRPO")
    if resume:
        run.check_resumable(spec)
        step, history, _ = load_state(run.state_dir, model, optimizer, next(model.parameters()).device)
        set_lr(optimizer, cfg.lr)
    else:
        run.start(spec)
    routing = routing_targets(Path(cfg.init_checkpoint))
    recorder = RoutingRecorder(model)
    # The anti-collapse reward terms; a resumed run starts with an empty bank (it refills in a few steps).
    bank = DiversityBank(cfg.reward.diversity_bank, cfg.reward.diversity_ngram) if cfg.reward.diversity_coef else None
    copies = None
    if cfg.reward.copy_coef and cfg.training_greetings:
        copies = CopyDetector(cfg.training_greetings)
    engine = None
    if cfg.rollout == "engine":
        slots = cfg.prompts_per_step * cfg.group_size
        engine = Engine(model, tokenizer, max_slots=slots, max_n=cfg.group_size)

    bar = Progress(cfg.max_steps, initial=step, desc="grpo", enabled=cfg.progress_bar)
    stopped = False
    notify(on_progress, {"event": "stage", "stage": "grpo", "message": f"GRPO from step {step} of {cfg.max_steps}"})
    while step < cfg.max_steps:
        queries = batch_queries(cfg.prompts, step, cfg.prompts_per_step, cfg.seed)
        t0 = time.perf_counter()
        rollout_seed = cfg.seed * 1_000_003 + step * 1009
        if engine is not None:
            rollouts = rollout_engine(engine, queries, cfg.group_size, cfg.temperature, cfg.max_new_tokens, rollout_seed)
        else:
            rollouts = rollout_generate(model, tokenizer, queries, cfg.group_size, cfg.temperature,
                                        cfg.max_new_tokens, rollout_seed)
        rollout_s = time.perf_counter() - t0
        rewards = compute_rewards(judge, [r.query for r in rollouts], [r.text for r in rollouts], cfg.reward,
                                  truncated=[r.truncated for r in rollouts], group_size=cfg.group_size, bank=bank,
                                  copies=copies)
        totals = torch.tensor([r.total for r in rewards], dtype=torch.float32)
        advantages = group_advantages(totals, cfg.group_size)
        recorder.attach()
        try:
            stats = grpo_update(model, reference, optimizer, rollouts, advantages, cfg, tokenizer.pad_token_id,
                                recorder, routing)
        finally:
            recorder.detach()
            recorder.clear()
        step += 1
        elapsed, eta = bar.times(step)
        metrics = {
            "step": step, "max_steps": cfg.max_steps,
            "reward": float(totals.mean()),
            "judge_score": sum(r.judge_score for r in rewards) / len(rewards),
            "pass_rate": sum(r.judge_score >= 0.5 for r in rewards) / len(rewards),
            "length_penalty": sum(r.length_penalty for r in rewards) / len(rewards),
            "repetition_penalty": sum(r.repetition_penalty for r in rewards) / len(rewards),
            "diversity_penalty": sum(r.diversity_penalty for r in rewards) / len(rewards),
            "copy_penalty": sum(r.copy_penalty for r in rewards) / len(rewards),
            "distinct_2": distinct_n([r.text for r in rollouts], 2),  # of this step's rollouts: collapse shows early
            "truncated": sum(r.truncated for r in rollouts) / len(rollouts),
            "mean_chars": sum(len(r.text) for r in rollouts) / len(rollouts),
            **stats,
            "rollout_s": rollout_s, "step_s": time.perf_counter() - t0, "elapsed_s": elapsed, "eta_s": eta,
        }
        history.append(metrics)
        run.log(metrics)
        bar.advance(step, reward=f"{metrics['reward']:.3f}", kl=f"{metrics['kl']:.4f}", pass_rate=f"{metrics['pass_rate']:.2f}")
        keep_going = notify(on_progress, {"event": "step", **metrics})
        out_of_time = cfg.max_seconds is not None and elapsed >= cfg.max_seconds
        if step % cfg.save_every == 0 or not keep_going:
            save_state(run.state_dir, model, optimizer, tokenizer, step, history, Window())
        if not keep_going and step < cfg.max_steps:
            stopped = True
            break
        if out_of_time:
            notify(on_progress, {"event": "log", "message": f"wall-clock budget {cfg.max_seconds:.0f}s reached at step {step}"})
            break
    bar.close()
    wall = bar.times(step)[0]
    last = dict(history[-1]) if history else {"step": step}
    if stopped:
        return GRPOResult(None, last, history, completed=False, steps=step, wall_s=wall)
    save_state(run.state_dir, model, optimizer, tokenizer, step, history, Window())
    meta = read_metadata(Path(cfg.init_checkpoint))
    checkpoint_dir = save_checkpoint(model, tokenizer, out_dir / "checkpoint", {
        **{k: meta[k] for k in ("preset", "preset_config", "prompt_format") if k in meta},  # how it reads requests
        "grpo_config": run_spec(cfg), "metrics": jsonable(last), "parent": str(cfg.init_checkpoint),
        "data": {"prompts": len(cfg.prompts)}, "judge": getattr(judge, "version", None),
    })
    notify(on_progress, {"event": "done", **last})
    return GRPOResult(checkpoint_dir, last, history, completed=True, steps=step, wall_s=wall)
