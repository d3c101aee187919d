"""Does the router-bias controller hold the compute budget? ``python -m bench.budget --json``

Trains the ``small`` preset on the paper's sft_data.json and records, after every optimiser
step, the measured mean number of real (FFN) experts per token over all MoE layers. After the
warm-up the average should sit within 5% of the preset's target K_e.
"""
from __future__ import annotations

import argparse
import tempfile
import time
from dataclasses import replace
from pathlib import Path
from statistics import mean, pstdev

from generation.presets import get_preset
from training.metrics import emit, format_table, shared_data_file
from training.trainer import TrainConfig, train_model

GOAL_PCT = 5.0


def run(steps: int, warmup: int, mu: float | None, seed: int) -> dict:
    preset = get_preset("small", max_steps=steps)
    if mu is not None:
        preset = replace(preset, bias_update_rate=mu)
    trace = []

    def record(event):
        if event["event"] == "step":
            trace.append(round(event["real_experts_per_token"], 4))

    started = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        cfg = TrainConfig(preset=preset, data_paths=[shared_data_file("sft_data.json")], out_dir=Path(tmp),
                          seed=seed, progress_bar=False)
        result = train_model(cfg, on_progress=record)
    after = trace[warmup:]
    measured = mean(after)
    return {
        "preset": "small",
        "steps": steps,
        "warmup_steps": warmup,
        "target_real_experts": preset.target_real_experts,
        "moe_topk": preset.moe_topk,
        "bias_update_rate": preset.bias_update_rate,
        "measured_real_experts_mean": measured,
        "measured_real_experts_step_std": pstdev(after),
        "deviation_pct": 100 * (measured - preset.target_real_experts) / preset.target_real_experts,
        "goal_pct": GOAL_PCT,
        "within_goal": abs(measured - preset.target_real_experts) / preset.target_real_experts * 100 <= GOAL_PCT,
        "final_loss": result.metrics["loss"],
        "wall_s": time.perf_counter() - started,
        "trace": trace,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=150)
    parser.add_argument("--warmup", type=int, default=50, help="steps left out of the average")
    parser.add_argument("--mu", type=float, default=None, help="override the preset's bias update rate")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    summary = run(args.steps, args.warmup, args.mu, args.seed)
    every = max(1, args.steps // 20)
    rows = [{"step": i + 1, "real_experts_per_token": v} for i, v in enumerate(summary["trace"]) if (i + 1) % every == 0]
    table = format_table(rows, ["step", "real_experts_per_token"])
    table += "\n\n" + format_table([summary], ["target_real_experts", "measured_real_experts_mean",
                                               "measured_real_experts_step_std", "deviation_pct", "within_goal"])
    emit(summary, table, args.json)


if __name__ == "__main__":
    main()
