"""Zero-computation experts vs fixed top-k, at the same training tokens. ``python -m bench.ablation --json``

(a) ``small`` as is: top-K of 16 real + 8 zero experts, bias steering to K_e < K real ones;
(b) fixed top-K_e of 16 real experts, no zero experts;
(c) fixed top-K of 16 real experts, no zero experts.
Same initial seed, data (the paper's sft_data.json, split by query), batches and step count,
so every variant sees the same training tokens. Reported: held-out loss over the whole
held-out split, and real-expert SwiGLU FLOPs per token from the measured routing (mean real
experts per token over the second half of training).
"""
from __future__ import annotations

import argparse
import tempfile
import time
from dataclasses import replace
from pathlib import Path
from statistics import mean

from generation.presets import get_preset
from training.metrics import emit, expert_flops_per_token, format_table, shared_data_file
from training.trainer import TrainConfig, train_model


def variants(steps: int) -> dict:
    small = get_preset("small", max_steps=steps)
    k, k_e = small.moe_topk, int(small.target_real_experts)
    no_zero = lambda topk: replace(small, model={**small.model, "zero_expert_num": 0, "moe_topk": topk},
                                   target_real_experts=float(topk))  # all picks real: the bias only balances load
    return {
        f"a_top{k}_zero_experts_Ke{small.target_real_experts:g}": small,
        f"b_top{k_e}_no_zero": no_zero(k_e),
        f"c_top{k}_no_zero": no_zero(k),
    }


def run_variant(name: str, preset, seed: int) -> dict:
    trace = []

    def record(event):
        if event["event"] == "step":
            trace.append(event["real_experts_per_token"])

    started = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        cfg = TrainConfig(preset=preset, data_paths=[shared_data_file("sft_data.json")], out_dir=Path(tmp),
                          seed=seed, progress_bar=False)
        result = train_model(cfg, on_progress=record)
    real = mean(trace[len(trace) // 2:])
    return {
        "variant": name,
        "moe_topk": preset.moe_topk,
        "zero_experts": preset.model["zero_expert_num"],
        "target_real_experts": preset.target_real_experts,
        "real_experts_per_token": real,
        "expert_mflops_per_token": expert_flops_per_token(result.model_config, real) / 1e6,
        "heldout_loss": result.metrics["heldout_loss"],
        "train_loss": result.metrics["loss"],
        "wall_s": time.perf_counter() - started,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=150)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    rows = [run_variant(name, preset, args.seed) for name, preset in variants(args.steps).items()]
    anchor = rows[-1]  # (c): the plain top-K MoE every variant is compared with
    for row in rows:
        row["flops_vs_c"] = row["expert_mflops_per_token"] / anchor["expert_mflops_per_token"]
        row["heldout_loss_minus_c"] = row["heldout_loss"] - anchor["heldout_loss"]
    summary = {"steps": args.steps, "seed": args.seed, "anchor": anchor["variant"], "rows": rows}
    table = format_table(rows, ["variant", "real_experts_per_token", "expert_mflops_per_token", "flops_vs_c",
                                "heldout_loss", "heldout_loss_minus_c", "train_loss", "wall_s"])
    emit(summary, table, args.json)


if __name__ == "__main__":
    main()
