"""Training a reward model (training/judges/reward_model.py): a Bradley-Terry loss on preference pairs,
hard pairs weighted, a held-out split by query, the Good/Bad threshold calibrated, then saved."""
from __future__ import annotations

import hashlib
import random
from dataclasses import replace
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
from torch import nn

from generation.checkpoint import CheckpointError, load_checkpoint
from generation.moe import enable_fast_moe
from generation.presets import Preset, PresetError, get_preset
from generation.tokenizer import build_tokenizer, format_prompt
from training.judges.evaluation import LENGTH_MATCH_CHARS, Pair, accuracy_on, pair_subsets
from training.judges.reward_model import (collate, compute_rewards, encode_item, INIT_LR_FACTOR, RewardModel,
                                          RewardModelConfig, RewardModelError, RewardModelJudge, RewardModelResult,
                                          save_reward_model, STEPS_FACTOR)
from training.judges.tfidf import best_threshold
from training.routing import RoutingRecorder, update_router_bias
from training.runs import Progress, notify
from training.steps import batch_indices, lr_at, make_optimizer, set_lr


def train_reward_model(pairs: Sequence[Pair], cfg: RewardModelConfig, out_dir: Path | None,
                       on_progress=None) -> RewardModelResult:
    """Train, calibrate, and (when out_dir is given) save. Returns the folder and metrics."""
    preset = _resolve_preset(cfg)
    pairs = [p for p in pairs if p.chosen.strip() and p.rejected.strip() and p.chosen.strip() != p.rejected.strip()]
    if not pairs:
        raise RewardModelError("no usable preference pairs (need distinct, non-empty chosen and rejected texts)")
    train, validation = validation_split(pairs, cfg.validation_fraction)
    if not train:
        raise RewardModelError(f"all {len(pairs)} pairs fell into the validation split; add pairs or lower the fraction")
    validation_is_train = not validation
    if validation_is_train:  # tiny data: calibrate on the training pairs (recorded in the metrics)
        validation = list(train)
    validation = validation[: cfg.max_validation_pairs]
    if cfg.hard_pair_weight <= 0:
        raise RewardModelError(f"hard_pair_weight must be positive, not {cfg.hard_pair_weight}")

    torch.manual_seed(cfg.seed)
    random.seed(cfg.seed)
    model, tokenizer, init_info = _build(cfg, preset, train)
    pad = tokenizer.pad_token_id
    seq_len = preset.seq_len
    train_seqs = [(encode_item(tokenizer, p.query, p.chosen, seq_len), encode_item(tokenizer, p.query, p.rejected, seq_len))
                  for p in train]
    weights = torch.tensor([cfg.hard_pair_weight if _is_hard(p) else 1.0 for p in train])
    val_chosen = [encode_item(tokenizer, p.query, p.chosen, seq_len) for p in validation]
    val_rejected = [encode_item(tokenizer, p.query, p.rejected, seq_len) for p in validation]

    batch_pairs = cfg.batch_pairs or max(1, preset.batch_size // 2)
    max_steps = cfg.max_steps or round(preset.max_steps * STEPS_FACTOR)
    if max_steps < 1:
        raise RewardModelError(f"max_steps must be at least 1, got {max_steps}")
    schedule = replace(preset, max_steps=max_steps, lr=cfg.lr or default_lr(cfg, preset),
                       warmup_steps=min(preset.warmup_steps, max(1, max_steps // 10)))
    optimizer = make_optimizer(model, schedule)
    recorder = RoutingRecorder(model).attach()
    eval_every = cfg.eval_every or max(1, max_steps // 4)
    history: list[dict] = []
    bar = Progress(max_steps, desc=f"reward model {preset.name}", enabled=cfg.progress_bar)
    losses, stopped, step = [], False, 0
    model.train()
    try:
        while step < max_steps:
            set_lr(optimizer, lr_at(step, schedule))
            chosen_idx = batch_indices(len(train_seqs), step, batch_pairs, cfg.seed)
            seqs = [train_seqs[i][0] for i in chosen_idx] + [train_seqs[i][1] for i in chosen_idx]
            ids, lengths = collate(seqs, pad)
            recorder.clear()
            rewards = model(ids, lengths)
            margin = rewards[: len(chosen_idx)] - rewards[len(chosen_idx):]
            w = weights[chosen_idx]
            loss = (w * -nn.functional.logsigmoid(margin)).sum() / w.sum()
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), preset.grad_clip)
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
            real_tokens = torch.arange(ids.shape[1])[None, :] < lengths[:, None]
            update_router_bias(model.backbone, recorder, preset.bias_update_rate, preset.target_real_experts,
                               real_tokens)
            step += 1
            losses.append(loss.item())
            elapsed, eta = bar.advance(step, loss=f"{loss.item():.3f}")
            keep_going = notify(on_progress, {"event": "step", "step": step, "max_steps": max_steps,
                                              "loss": loss.item(), "elapsed_s": elapsed, "eta_s": eta})
            if step % eval_every == 0 or step == max_steps:
                recorder.detach()
                record = {"step": step, "loss": sum(losses) / len(losses), "elapsed_s": round(elapsed, 1),
                          "epoch": round(step * batch_pairs / len(train_seqs), 3),
                          **validation_accuracy(model, validation, val_chosen, val_rejected, pad)}
                recorder.attach()
                losses = []
                history.append(record)
                bar.write(_describe(record))
                keep_going = notify(on_progress, {"event": "eval", **record}) and keep_going
            if not keep_going and step < max_steps:
                stopped = True
                break
    finally:
        bar.close()
        recorder.detach()
    model.eval()
    if stopped:
        return RewardModelResult(None, history[-1] if history else {}, history, completed=False)

    chosen_r = compute_rewards(model, val_chosen, pad)
    rejected_r = compute_rewards(model, val_rejected, pad)
    threshold = best_threshold(np.array(chosen_r), np.array(rejected_r))
    scale = float(np.std(chosen_r + rejected_r)) or 1.0
    metrics = {
        **(history[-1] if history else {}),
        "train_pairs": len(train), "validation_pairs": len(validation),
        "validation_is_train": validation_is_train,
        "steps": step, "batch_pairs": batch_pairs, "hard_pair_weight": cfg.hard_pair_weight,
        "train_seconds": round(bar.times(step)[0], 1),
        "calibration_accuracy": (sum(c >= threshold for c in chosen_r) + sum(r < threshold for r in rejected_r))
        / (2 * len(chosen_r)),
    }
    judge = RewardModelJudge(model, tokenizer, threshold, scale, seq_len, cfg.name,
                             info={"preset": preset.name, "pooling": cfg.pooling, "init": init_info, "lr": schedule.lr})
    folder = None
    if out_dir is not None:
        folder = save_reward_model(judge, Path(out_dir), preset, metrics, history,
                                   trained_queries=[p.query for p in pairs])
    notify(on_progress, {"event": "done", **metrics})
    return RewardModelResult(folder, metrics, history, judge=judge)


def default_lr(cfg: RewardModelConfig, preset: Preset) -> float:
    """The preset's lr from scratch; a quarter of it when fine-tuning a generator's backbone, which the
    preset's lr undoes (bench.reward_model, small, 300 steps: 2e-3 gave held-out not-longer 0.636, 5e-4 0.773)."""
    return preset.lr * (INIT_LR_FACTOR if cfg.init_checkpoint is not None else 1.0)


def _resolve_preset(cfg: RewardModelConfig) -> Preset:
    if isinstance(cfg.preset, Preset):
        return cfg.preset
    try:
        return get_preset(cfg.preset)
    except PresetError as exc:
        raise RewardModelError(str(exc)) from None


def _is_hard(pair: Pair) -> bool:
    return len(pair.chosen) <= len(pair.rejected) or abs(len(pair.chosen) - len(pair.rejected)) <= LENGTH_MATCH_CHARS


def validation_split(pairs: Sequence[Pair], fraction: float) -> tuple[list[Pair], list[Pair]]:
    """Split by query with a salt: the same query on the same side always, and independent of
    split_by_query's own split (whose held-out set would otherwise contain this one)."""
    if not 0 <= fraction < 1:
        raise RewardModelError(f"validation_fraction must be in [0, 1), not {fraction}")
    train, validation = [], []
    for pair in pairs:
        digest = int(hashlib.sha256(f"reward-model-validation\x00{pair.query.strip()}".encode()).hexdigest()[:8], 16)
        (validation if digest % 10_000 < fraction * 10_000 else train).append(pair)
    return train, validation


def _build(cfg: RewardModelConfig, preset: Preset, train: Sequence[Pair]):
    """(RewardModel, tokenizer, description of where the backbone came from)."""
    from transformers import LongcatFlashModel

    if cfg.init_checkpoint is not None:
        try:
            lm, tokenizer = load_checkpoint(Path(cfg.init_checkpoint), fast_moe=cfg.fast_moe)
        except CheckpointError as exc:
            raise RewardModelError(f"cannot start from the generator checkpoint: {exc}") from exc
        backbone = lm.model
        if backbone.config.hidden_size != preset.model["hidden_size"] or backbone.config.num_layers != preset.model["num_layers"]:
            raise RewardModelError(
                f"the checkpoint {cfg.init_checkpoint} does not match preset {preset.name!r} "
                f"(hidden {backbone.config.hidden_size}, layers {backbone.config.num_layers}); pass its preset")
        init = {"checkpoint": str(cfg.init_checkpoint)}
    else:
        texts = [text for p in train for text in (format_prompt(p.query), p.chosen, p.rejected)]
        tokenizer = build_tokenizer(texts, min_freq=preset.tokenizer_min_freq)
        torch.manual_seed(cfg.seed)
        backbone = LongcatFlashModel(preset.model_config(tokenizer))
        init = {"checkpoint": None}
    if cfg.fast_moe:
        backbone = enable_fast_moe(backbone)
    torch.manual_seed(cfg.seed + 1)
    return RewardModel(backbone, cfg.pooling), tokenizer, init


def validation_accuracy(model, validation, val_chosen, val_rejected, pad) -> dict:
    """Pairwise accuracy on the validation pairs, overall / chosen not longer / length matched."""
    chosen = compute_rewards(model, val_chosen, pad)
    rejected = compute_rewards(model, val_rejected, pad)
    correct = [c > r for c, r in zip(chosen, rejected)]
    return {f"val_{subset}": accuracy_on(correct, indices) for subset, indices in pair_subsets(validation).items()}


def _describe(record: dict) -> str:
    parts = [f"step {record['step']}", f"loss {record['loss']:.4f}"]
    for key, value in record.items():
        if key.startswith("val_") and isinstance(value, dict):
            acc = "n/a" if value["accuracy"] is None else f"{value['accuracy']:.3f}"
            parts.append(f"{key[4:]} {acc} (n={value['count']})")
    return "  ".join(parts)
