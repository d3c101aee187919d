"""The RLAIF loop on the paper's data: ``python -m bench.rlaif --json``

Stages (each timed): SFT of the ``small`` preset on sft_data.json (or ``--sft-checkpoint`` to reuse
one trained with the same split), a TF-IDF judge on reward_data_train.json minus the held-out
queries, GRPO rollouts on the engine vs ``model.generate()`` (TRL's way) side by side on the same
checkpoint, evaluation of the SFT model, GRPO on grpo_train.parquet's queries, evaluation of the
GRPO model, the gate. Held-out prompts: the SFT trainer's own held-out queries (never trained on by
the generator, the judge or GRPO). Reports pass rate with bootstrap intervals, the paired
difference, novelty, distinct-n, lengths, KL to SFT, and 10 greetings before / after.
"""
from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from generation.presets import get_preset
from training.data.examples import load_examples, split_by_query
from training.metrics import emit, format_table, shared_data_file
from training.data.prompts import read_prompts
from training.rl.evaluation import EvalSettings, sample_rows
from training.rl.gate import GateConfig
from training.rl.grpo import GRPOConfig
from training.rl.rewards import RewardConfig
from training.rl.pipeline import evaluation_stage, gate_stage, grpo_stage, judge_stage, sft_stage, training_greetings

SUMMARY_KEYS = ("pass_rate", "pass_rate_ci95", "mean_reward", "mean_judge_score", "distinct_1", "distinct_2", "novelty",
                "copies", "lengths", "truncated", "empty", "kl_to_reference", "prompts", "greetings")


def heldout_queries(seed: int) -> list[str]:
    """The SFT trainer's held-out queries of sft_data.json (its exact split)."""
    _, heldout = split_by_query(load_examples([shared_data_file("sft_data.json")]), get_preset("small").heldout_fraction,
                                seed)
    return sorted({q for q, _ in heldout})


def timed(stages: dict, name: str, fn, *args, **kwargs):
    started = time.perf_counter()
    print(f"[bench.rlaif] stage {name} ...", flush=True)
    result = fn(*args, **kwargs)
    stages[name] = round(time.perf_counter() - started, 1)
    print(f"[bench.rlaif] stage {name} done in {stages[name]:.0f}s", flush=True)
    return result


def rollout_speed(sft_dir: Path, prompts: list[str], judge, work: Path, steps: int, per_step: int) -> dict:
    """Seconds per GRPO step with engine rollouts vs model.generate() rollouts (same checkpoint, prompts, seed)."""
    out = {}
    for backend in ("engine", "generate"):
        cfg = GRPOConfig(init_checkpoint=sft_dir, out_dir=work / f"speed-{backend}", prompts=prompts, max_steps=steps,
                         prompts_per_step=per_step, rollout=backend, progress_bar=False, save_every=10_000)
        result = grpo_stage(cfg, judge)
        out[backend] = {
            "s_per_step": sum(h["step_s"] for h in result.history) / len(result.history),
            "rollout_s_per_step": sum(h["rollout_s"] for h in result.history) / len(result.history),
        }
    out["speedup_step"] = out["generate"]["s_per_step"] / out["engine"]["s_per_step"]
    out["speedup_rollout"] = out["generate"]["rollout_s_per_step"] / out["engine"]["rollout_s_per_step"]
    out["steps"], out["prompts_per_step"], out["group_size"] = steps, per_step, 4
    return out


def run(args, work: Path) -> dict:
    stages: dict[str, float] = {}
    heldout = heldout_queries(args.seed)[: args.eval_prompts]
    held = set(heldout)
    train_prompts = [q for q in read_prompts(shared_data_file("grpo_train.parquet")) if q not in held]

    if args.sft_checkpoint:
        sft_dir = Path(args.sft_checkpoint)
        stages["sft"] = None
    else:
        sft_dir = timed(stages, "sft", sft_stage, preset="small", data_paths=[shared_data_file("sft_data.json")],
                        out_dir=work / "sft", max_steps=args.sft_steps, seed=args.seed)
    judge = timed(stages, "judge", judge_stage, pair_files=[shared_data_file("reward_data_train.json")],
                  out_dir=work / "judge", exclude_queries=held, excellence_quantile=args.excellence_quantile)
    speed = None
    if args.speed_steps:
        speed = timed(stages, "rollout_speed", rollout_speed, sft_dir, train_prompts, judge, work, args.speed_steps,
                      args.prompts_per_step)
    greetings = training_greetings(sft_dir)
    settings = EvalSettings(samples=args.eval_samples, seed=args.seed)
    before = timed(stages, "evaluate_sft", evaluation_stage, sft_dir, heldout, judge, reference=sft_dir,
                   training_greetings=greetings, settings=settings)
    cfg = GRPOConfig(init_checkpoint=sft_dir, out_dir=work / "grpo", prompts=train_prompts, max_steps=args.grpo_steps,
                     max_seconds=args.grpo_seconds, prompts_per_step=args.prompts_per_step, lr=args.lr,
                     kl_coef=args.kl_coef, seed=args.seed, save_every=10, training_greetings=greetings,
                     reward=RewardConfig(diversity_coef=args.diversity_coef,
                                         diversity_ngram=args.diversity_ngram, copy_coef=args.copy_coef))
    grpo = timed(stages, "grpo", grpo_stage, cfg, judge)
    after = timed(stages, "evaluate_grpo", evaluation_stage, grpo.checkpoint_dir, heldout, judge, reference=sft_dir,
                  training_greetings=greetings, settings=settings)
    decision = timed(stages, "gate", gate_stage, after, before, GateConfig(seed=args.seed))
    first, last = grpo.history[0], grpo.history[-1]
    window = max(1, min(10, len(grpo.history) // 4))
    return {
        "preset": "small",
        "sft_checkpoint": str(sft_dir),
        "judge": {"threshold": judge.threshold, "scale": judge.scale, **judge.info},
        "heldout_prompts": len(heldout),
        "grpo_prompts": len(train_prompts),
        "grpo": {"steps": grpo.steps, "wall_s": grpo.wall_s, "lr": args.lr, "kl_coef": cfg.kl_coef,
                 "diversity_coef": args.diversity_coef, "diversity_ngram": args.diversity_ngram,
                 "copy_coef": args.copy_coef,
                 "distinct_2_first": sum(h["distinct_2"] for h in grpo.history[:window]) / window,
                 "distinct_2_last": sum(h["distinct_2"] for h in grpo.history[-window:]) / window,
                 "diversity_penalty_first": sum(h["diversity_penalty"] for h in grpo.history[:window]) / window,
                 "diversity_penalty_last": sum(h["diversity_penalty"] for h in grpo.history[-window:]) / window,
                 "group_size": cfg.group_size, "prompts_per_step": cfg.prompts_per_step,
                 "reward_first": sum(h["reward"] for h in grpo.history[:window]) / window,
                 "reward_last": sum(h["reward"] for h in grpo.history[-window:]) / window,
                 "pass_rate_first": sum(h["pass_rate"] for h in grpo.history[:window]) / window,
                 "pass_rate_last": sum(h["pass_rate"] for h in grpo.history[-window:]) / window,
                 "kl_last": last["kl"], "mean_chars_first": first["mean_chars"], "mean_chars_last": last["mean_chars"],
                 "real_experts_per_token_last": last.get("real_experts_per_token"),
                 "checkpoint": str(grpo.checkpoint_dir)},
        "before": {k: before[k] for k in SUMMARY_KEYS},
        "after": {k: after[k] for k in SUMMARY_KEYS},
        "gate": decision.as_dict(),
        "rollout_speed": speed,
        "stage_wall_s": stages,
        "samples": sample_rows(before, after, 10, args.seed),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sft-checkpoint", type=Path, help="reuse this small SFT checkpoint (trained on sft_data.json, seed 0)")
    parser.add_argument("--sft-steps", type=int, default=None)
    parser.add_argument("--grpo-steps", type=int, default=200)
    parser.add_argument("--grpo-seconds", type=float, default=1500, help="wall-clock budget of the GRPO stage")
    parser.add_argument("--prompts-per-step", type=int, default=8)
    parser.add_argument("--lr", type=float, default=2e-5)
    parser.add_argument("--kl-coef", type=float, default=0.001, help="the paper's 0.001 by default")
    parser.add_argument("--diversity-coef", type=float, default=0.0,
                        help="reward penalty for n-gram overlap with the group and recent rollouts (0: off)")
    parser.add_argument("--diversity-ngram", type=int, default=RewardConfig.diversity_ngram,
                        help="character n-grams of the diversity penalty (2: the gate's distinct-2)")
    parser.add_argument("--copy-coef", type=float, default=0.0,
                        help="reward penalty for a near-copy of a training greeting (0: off)")
    parser.add_argument("--eval-prompts", type=int, default=200)
    parser.add_argument("--eval-samples", type=int, default=4)
    parser.add_argument("--speed-steps", type=int, default=2, help="GRPO steps per rollout backend in the speed test (0: skip)")
    parser.add_argument("--excellence-quantile", type=float, default=None,
                        help="Good = above this quantile of the chosen greetings' TF-IDF reward (default: the "
                             "chosen-vs-rejected threshold, which passes ~95%% of SFT greetings)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=None, help="keep the run folder here")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        work = args.out or Path(tmp)
        summary = run(args, work)
    rows = [{"model": name, "pass_rate": r["pass_rate"], "ci95": "[{:.3f}, {:.3f}]".format(*r["pass_rate_ci95"]),
             "novelty": r["novelty"], "distinct_2": r["distinct_2"], "mean_chars": r["lengths"]["mean"],
             "kl_per_token": (r["kl_to_reference"] or {}).get("kl_per_token")}
            for name, r in (("sft", summary["before"]), ("grpo", summary["after"]))]
    table = format_table(rows, list(rows[0]))
    gate = summary["gate"]
    table += (f"\n\npaired difference {gate['difference']:+.3f}, 95% CI [{gate['difference_ci95'][0]:+.3f}, "
              f"{gate['difference_ci95'][1]:+.3f}]; gate: {'PROMOTE' if gate['promote'] else 'refuse'}\n  "
              + "\n  ".join(gate["reasons"]))
    if summary["rollout_speed"]:
        s = summary["rollout_speed"]
        table += (f"\n\nGRPO s/step: engine {s['engine']['s_per_step']:.1f}, generate {s['generate']['s_per_step']:.1f} "
                  f"({s['speedup_step']:.2f}x; rollouts alone {s['speedup_rollout']:.2f}x)")
    table += "\n\nstage wall s: " + ", ".join(f"{k} {v}" for k, v in summary["stage_wall_s"].items())
    table += "\n\n" + format_table(summary["samples"], ["query", "before", "after"])
    emit(summary, table, args.json)


if __name__ == "__main__":
    main()
