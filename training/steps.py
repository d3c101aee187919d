"""The pieces of one SFT step, used by training/trainer.py's loop (and the reward model's and
GRPO's optimiser): encoding the corpus, building the model, AdamW and its schedule, the batch
order, one optimiser step with LongCat-Flash's routing controls, and the logged metrics.

The learning rate is a pure function of the step and the batch order a pure function of
(seed, step), so a resumed run sees what an uninterrupted one would."""
from __future__ import annotations

import math
import time
from pathlib import Path

import torch

from generation.checkpoint import load_checkpoint
from generation.presets import Preset
from generation.tokenizer import build_example
from training.routing import balance_loss, hidden_z_loss, update_router_bias
from training.runs import jsonable

IGNORE = -100  # label value the loss skips (prompt and padding)


def encode(tokenizer, examples, texts, objective: str, seq_len: int) -> list[tuple[list[int], int]]:
    """(token ids, prompt length) per training sequence, cut to seq_len."""
    seqs = [build_example(tokenizer, q, r) for q, r in examples]
    if objective == "pretrain":
        seqs = [(ids, 0) for ids, _ in seqs]  # plain language modelling: loss on every token
        seqs += [([tokenizer.bos_token_id, *tokenizer.encode(t, add_special_tokens=False), tokenizer.eos_token_id], 0)
                 for t in texts]
    return [(ids[:seq_len], min(n_prompt, seq_len)) for ids, n_prompt in seqs if n_prompt < min(len(ids), seq_len)]


def build_model(preset: Preset, tokenizer, seed: int, init_checkpoint: Path | None = None):
    from transformers import LongcatFlashForCausalLM

    torch.manual_seed(seed)
    if init_checkpoint is None:
        return LongcatFlashForCausalLM(preset.model_config(tokenizer))
    wanted = preset.model_config(tokenizer).to_dict()  # the preset's architecture, on this tokenizer
    expected = {key: wanted[key] for key in (*preset.model, "vocab_size") if key in wanted}
    model, _ = load_checkpoint(Path(init_checkpoint), expected_config=expected, fast_moe=False)
    return model.train()


def make_optimizer(model, preset: Preset) -> torch.optim.AdamW:
    """AdamW at the preset's learning rate and weight decay."""
    return adamw(model, lr=preset.lr, weight_decay=preset.weight_decay)


def adamw(model, *, lr: float, weight_decay: float) -> torch.optim.AdamW:
    """AdamW; matrices decay, vectors (norms) do not."""
    decay = [p for p in model.parameters() if p.requires_grad and p.dim() >= 2]
    no_decay = [p for p in model.parameters() if p.requires_grad and p.dim() < 2]
    groups = [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
    return torch.optim.AdamW(groups, lr=lr, betas=(0.9, 0.95), eps=1e-8)


def lr_at(step: int, preset: Preset) -> float:
    """Linear warm-up, then cosine down to min_lr_ratio * lr."""
    if step < preset.warmup_steps:
        return preset.lr * (step + 1) / preset.warmup_steps
    progress = (step - preset.warmup_steps) / max(preset.max_steps - preset.warmup_steps, 1)
    cosine = 0.5 * (1 + math.cos(math.pi * min(progress, 1.0)))
    return preset.lr * (preset.min_lr_ratio + (1 - preset.min_lr_ratio) * cosine)


def set_lr(optimizer, lr: float) -> None:
    for group in optimizer.param_groups:
        group["lr"] = lr


_ORDERS: dict[tuple[int, int, int], list[int]] = {}


def batch_indices(n: int, step: int, batch_size: int, seed: int) -> list[int]:
    """Sequence indices of a step: a fresh shuffle per epoch, a pure function of (seed, step)."""
    indices = []
    for sample in range(step * batch_size, (step + 1) * batch_size):
        epoch, pos = divmod(sample, n)
        indices.append(_epoch_order(n, seed, epoch)[pos])
    return indices


def _epoch_order(n: int, seed: int, epoch: int) -> list[int]:
    key = (n, seed, epoch)
    if key not in _ORDERS:
        if len(_ORDERS) > 64:
            _ORDERS.clear()
        generator = torch.Generator().manual_seed(seed * 100_003 + epoch)
        _ORDERS[key] = torch.randperm(n, generator=generator).tolist()
    return _ORDERS[key]


def collate(seqs: list[tuple[list[int], int]], pad_id: int) -> tuple[torch.Tensor, torch.Tensor, int]:
    """Right-padded ids and labels (prompt and padding ignored) plus the count of loss tokens.

    No attention mask is needed: padding sits after every real token and attention is causal.
    """
    width = max(len(ids) for ids, _ in seqs)
    input_ids = torch.full((len(seqs), width), pad_id, dtype=torch.long)
    labels = torch.full((len(seqs), width), IGNORE, dtype=torch.long)
    for row, (ids, n_prompt) in enumerate(seqs):
        input_ids[row, : len(ids)] = torch.tensor(ids)
        labels[row, n_prompt : len(ids)] = torch.tensor(ids[n_prompt:])
    n_tokens = sum(len(ids) for ids, _ in seqs)
    return input_ids, labels, n_tokens


def get_batch(seqs, step: int, batch_size: int, seed: int, pad_id: int):
    return collate([seqs[i] for i in batch_indices(len(seqs), step, batch_size, seed)], pad_id)


def train_step(model, optimizer, recorder, input_ids, labels, real_tokens, preset: Preset, autocast):
    """One optimiser step and the router-bias update after it.

    Returns (LM loss, gradient norm, measured real experts per token of this step).
    """
    model.train()
    recorder.clear()
    with autocast:
        out = model(input_ids=input_ids, labels=labels, output_hidden_states=preset.z_loss_coef > 0)
        loss = out.loss + routing_losses(recorder, out, preset, real_tokens)
    loss.backward()
    grad_norm = torch.nn.utils.clip_grad_norm_(model.parameters(), preset.grad_clip).item()
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)
    real_experts = update_router_bias(model, recorder, preset.bias_update_rate, preset.target_real_experts, real_tokens)
    return out.loss.item(), grad_norm, real_experts


def routing_losses(recorder, out, preset: Preset, real_tokens) -> torch.Tensor:
    """The preset's auxiliary losses (0 when both are switched off)."""
    extra = out.loss.new_zeros(())
    if preset.balance_coef > 0:
        extra = extra + balance_loss(recorder, preset.balance_groups, preset.balance_coef,
                                     target_real_experts=preset.target_real_experts, token_mask=real_tokens)
    if preset.z_loss_coef > 0:
        # Every decoder layer's output (hidden_states[0] is the embedding).
        layers = torch.stack(out.hidden_states[1:])
        extra = extra + hidden_z_loss(layers, preset.z_loss_coef, token_mask=real_tokens.expand(layers.shape[:-1]))
    return extra


class Window:
    """Running sums between two log lines."""

    def __init__(self):
        self.losses, self.grad_norms, self.tokens, self.started = [], [], 0, time.perf_counter()

    def add(self, loss: float, tokens: int, grad_norm: float) -> None:
        self.losses.append(loss)
        self.grad_norms.append(grad_norm)
        self.tokens += tokens


def log_metrics(step, max_steps, window: Window, stats: dict, optimizer, elapsed, eta) -> dict:
    """Window averages; routing statistics are those of the step just taken."""
    seconds = time.perf_counter() - window.started
    return {
        "step": step,
        "max_steps": max_steps,
        "loss": sum(window.losses) / len(window.losses),
        "lr": optimizer.param_groups[0]["lr"],
        "grad_norm": sum(window.grad_norms) / len(window.grad_norms),
        "tokens_per_s": window.tokens / max(seconds, 1e-9),
        "elapsed_s": elapsed,
        "eta_s": eta,
        **{k: jsonable(v) for k, v in stats.items()},
    }


class BestWeights:
    """Held-out early stopping: remembers the weights of the best held-out loss (on CPU)."""

    def __init__(self, patience: int | None):
        self.patience, self.step, self.loss, self.state, self.bad_logs = patience, None, float("inf"), None, 0

    def offer(self, model, step: int, loss: float | None) -> bool:
        """Record this log's held-out loss; True when training should stop."""
        if self.patience is None or loss is None:
            return False
        if loss < self.loss:
            self.step, self.loss, self.bad_logs = step, loss, 0
            self.state = {k: v.detach().to("cpu", copy=True) for k, v in model.state_dict().items()}
            return False
        self.bad_logs += 1
        return self.bad_logs >= self.patience

    def restore(self, model) -> None:
        if self.state is not None:
            model.load_state_dict(self.state)


@torch.no_grad()
def heldout_loss(model, seqs, preset: Preset, pad_id: int, device, autocast, max_batches: int | None) -> float | None:
    """Mean loss per response token over the first batches of the held-out set (fixed order)."""
    if not seqs:
        return None
    model.eval()
    total, count = 0.0, 0
    starts = range(0, len(seqs), preset.batch_size)
    for batch_no, start in enumerate(starts):
        if max_batches is not None and batch_no >= max_batches:
            break
        input_ids, labels, _ = collate(seqs[start : start + preset.batch_size], pad_id)
        n = int((labels[:, 1:] != IGNORE).sum())
        with autocast:
            out = model(input_ids=input_ids.to(device), labels=labels.to(device))
        total += out.loss.float().item() * n
        count += n
    model.train()
    return total / max(count, 1)


def final_metrics(history, model, heldout_seqs, preset, pad_id, device, autocast) -> dict:
    """The last log line, with the held-out loss over the whole held-out set."""
    final = dict(history[-1]) if history else {}
    final["heldout_loss"] = heldout_loss(model, heldout_seqs, preset, pad_id, device, autocast, None)
    final["heldout_sequences"] = len(heldout_seqs)
    return final
