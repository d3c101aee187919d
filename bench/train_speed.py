"""Training speed of the ``small`` preset: our fast MoE path vs transformers' expert loop.

``python -m bench.train_speed --json``

Both models start from the same weights and take the same batches of the paper's
sft_data.json. Steps alternate (fast, loop, fast, loop, ...) so that load from other processes
on a shared CPU hits both sides alike; only the training step is timed (forward, auxiliary
losses, backward, AdamW, router-bias update), after a few warm-up steps.
"""
from __future__ import annotations

import argparse
import copy
import time
from contextlib import nullcontext

import torch

from generation.moe import disable_fast_moe, enable_fast_moe, fast_moe_enabled
from generation.presets import get_preset
from generation.tokenizer import build_tokenizer, example_texts
from training.data.examples import load_examples, split_by_query
from training.metrics import emit, format_table, shared_data_file
from training.routing import RoutingRecorder
from training.steps import build_model, encode, get_batch, make_optimizer, train_step

GOAL = 2.0


class Side:
    """One model with its optimiser and recorder, and the time it spent in training steps."""

    def __init__(self, name: str, model, preset):
        self.name, self.model, self.preset = name, model, preset
        self.optimizer = make_optimizer(model, preset)
        self.recorder = RoutingRecorder(model).attach()
        self.seconds, self.tokens, self.losses = 0.0, 0, []

    def step(self, input_ids, labels, real_tokens, n_tokens, timed: bool) -> None:
        started = time.perf_counter()
        loss, _, _ = train_step(self.model, self.optimizer, self.recorder, input_ids, labels, real_tokens,
                                self.preset, nullcontext())
        if timed:
            self.seconds += time.perf_counter() - started
            self.tokens += n_tokens
        self.losses.append(loss)


def experts_only(model, input_ids, repeats: int) -> dict:
    """Forward + backward of layer 0's expert module alone, fast vs loop, on one batch's routing.

    The whole step also runs attention, the dense MLPs and the LM head, which the fast path does
    not touch; this isolates the part it replaces.
    """
    layer = model.model.layers[0]
    captured = {}
    hook = layer.mlp.experts.register_forward_pre_hook(lambda m, args: captured.setdefault("args", args))
    with torch.no_grad():
        model(input_ids=input_ids)
    hook.remove()
    hidden, index, weights = captured["args"]
    timings = {}
    for name, switch in (("fast_moe", enable_fast_moe), ("transformers_loop", disable_fast_moe)):
        experts = switch(copy.deepcopy(layer.mlp.experts))
        seconds = []
        for _ in range(repeats + 1):
            x = hidden.detach().clone().requires_grad_(True)
            started = time.perf_counter()
            experts(x, index, weights.detach()).sum().backward()
            seconds.append(time.perf_counter() - started)
        timings[name] = sorted(seconds[1:])[len(seconds[1:]) // 2]  # median, first call left out
    return {"tokens": hidden.shape[0], "median_s": timings,
            "speedup_fast_vs_loop": timings["transformers_loop"] / timings["fast_moe"]}


def run(steps: int, warmup: int, seed: int) -> dict:
    preset = get_preset("small")
    train, _ = split_by_query(load_examples([shared_data_file("sft_data.json")]), preset.heldout_fraction, seed)
    tokenizer = build_tokenizer(example_texts(train))
    seqs = encode(tokenizer, train, [], "sft", preset.seq_len)
    base = build_model(preset, tokenizer, seed)
    fast = Side("fast_moe", enable_fast_moe(copy.deepcopy(base)), preset)
    loop = Side("transformers_loop", disable_fast_moe(copy.deepcopy(base)), preset)
    assert fast_moe_enabled(fast.model) and not fast_moe_enabled(loop.model)
    for step in range(warmup + steps):
        input_ids, labels, n_tokens = get_batch(seqs, step, preset.batch_size, seed, tokenizer.pad_token_id)
        real_tokens = input_ids != tokenizer.pad_token_id
        order = (fast, loop) if step % 2 == 0 else (loop, fast)  # neither side always goes first
        for side in order:
            side.step(input_ids, labels, real_tokens, n_tokens, timed=step >= warmup)
    experts = experts_only(fast.model, input_ids, repeats=7)
    rows = [{"path": s.name, "tokens_per_s": s.tokens / s.seconds, "seconds": s.seconds, "tokens": s.tokens,
             "final_loss": s.losses[-1]} for s in (fast, loop)]
    speedup = rows[0]["tokens_per_s"] / rows[1]["tokens_per_s"]
    # Amdahl: the fast path only replaces the expert modules, so even free experts cap the gain
    loop_step_s = loop.seconds / steps
    loop_experts_s = experts["median_s"]["transformers_loop"] * len(loop.model.model.layers)
    experts_share = min(loop_experts_s / loop_step_s, 0.999)
    return {
        "preset": "small",
        "steps_timed": steps,
        "warmup_steps": warmup,
        "batch_size": preset.batch_size,
        "threads": torch.get_num_threads(),
        "rows": rows,
        "speedup_fast_vs_loop": speedup,
        "goal": GOAL,
        "meets_goal": speedup >= GOAL,
        # Same weights and batches: the two losses should agree to float rounding.
        "max_loss_difference": max(abs(a - b) for a, b in zip(fast.losses, loop.losses)),
        "experts_only": experts,
        "experts_share_of_loop_step": experts_share,
        "speedup_ceiling_if_experts_were_free": 1 / (1 - experts_share),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    summary = run(args.steps, args.warmup, args.seed)
    table = format_table(summary["rows"], ["path", "tokens_per_s", "seconds", "tokens", "final_loss"])
    table += f"\n\nspeedup_fast_vs_loop = {summary['speedup_fast_vs_loop']:.2f}x (goal >= {GOAL}x)"
    table += f", max loss difference {summary['max_loss_difference']:.2e}"
    e = summary["experts_only"]
    table += (f"\nexpert module alone (layer 0, {e['tokens']} tokens, fwd+bwd median): fast {e['median_s']['fast_moe']*1e3:.1f} ms,"
              f" loop {e['median_s']['transformers_loop']*1e3:.1f} ms, {e['speedup_fast_vs_loop']:.2f}x")
    table += (f"\nexperts are {summary['experts_share_of_loop_step']:.0%} of the loop's step: even free experts would give"
              f" at most {summary['speedup_ceiling_if_experts_were_free']:.2f}x")
    emit(summary, table, args.json)


if __name__ == "__main__":
    main()
