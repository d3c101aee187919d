"""The MoE reward model on the paper's pairs, beside pick-longer and the TF-IDF judge.

    python -m bench.reward_model --json [--preset small] [--steps N] [--pooling last|mean]

Same split as bench/judges.py: reward_data_train.json minus split_by_query(pairs, 0.15); the
reward model (its own validation split is carved, salted, out of the training side) and the
TF-IDF baseline both train on the training side; both are scored on the held-out pairs:
overall, chosen-not-longer and length-matched accuracy, with counts, beside pick-longer.
Pointwise metrics on evaluate_data.json are restricted to queries neither judge saw."""
import argparse
import json
import time
from pathlib import Path

import torch

from bench.judges import load_bench_data
from bench.judges import print_table as print_judge_table
from training.judges.evaluation import evaluate_labeled, evaluate_pairs
from training.judges.reward_model import RewardModelConfig, train_reward_model
from training.judges.tfidf import train_tfidf_judge

SHARED = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "igniting"
DEFAULT_STEPS = 300


def run(data_dir: Path, preset: str, steps: int, pooling: str, hard_pair_weight: float, seed: int,
        progress_bar: bool = True, out_dir: Path | None = None) -> dict:
    started = time.perf_counter()
    data = load_bench_data(data_dir)
    train, heldout = data.train, data.heldout

    t = time.perf_counter()
    tfidf = train_tfidf_judge([p.chosen for p in train], [p.rejected for p in train], name="tfidf-bench")
    tfidf_seconds = time.perf_counter() - t

    t = time.perf_counter()
    result = train_reward_model(train, RewardModelConfig(preset=preset, max_steps=steps, pooling=pooling, seed=seed,
                                                         hard_pair_weight=hard_pair_weight, name="rm-bench",
                                                         progress_bar=progress_bar), out_dir)
    rm_seconds = time.perf_counter() - t
    rm = result.judge

    t = time.perf_counter()
    pair_report = evaluate_pairs(heldout, {"reward_model": rm, "tfidf": tfidf})
    eval_seconds = time.perf_counter() - t

    return {
        "split": data.split,
        "reward_model": {"preset": preset, "steps": steps, "pooling": pooling, "hard_pair_weight": hard_pair_weight,
                         "seed": seed, "threads": torch.get_num_threads(), "train_seconds": round(rm_seconds, 1),
                         "validation_history": result.history,
                         "threshold": rm.threshold, "scale": rm.scale},
        "tfidf_train_seconds": round(tfidf_seconds, 1),
        "eval_seconds": round(eval_seconds, 1),
        "pairs": pair_report,
        "labeled": evaluate_labeled(data.labeled, {"reward_model": rm, "tfidf": tfidf, "length": data.length}),
        "wall_seconds": round(time.perf_counter() - started, 1),
    }


def print_table(report: dict) -> None:
    rm = report["reward_model"]
    print(f"reward model: preset {rm['preset']}, {rm['steps']} steps, pooling {rm['pooling']}, "
          f"hard-pair weight {rm['hard_pair_weight']}, {rm['threads']} thread(s), trained in {rm['train_seconds']} s; "
          f"wall {report['wall_seconds']} s")
    print_judge_table(report)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=SHARED)
    parser.add_argument("--preset", default="small")
    parser.add_argument("--steps", type=int, default=DEFAULT_STEPS)
    parser.add_argument("--pooling", default="last", choices=["last", "mean"])
    parser.add_argument("--hard-pair-weight", type=float, default=2.0)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads (the CPU here is shared)")
    parser.add_argument("--save", type=Path, help="also save the reward model folder here")
    parser.add_argument("--no-progress", action="store_true")
    parser.add_argument("--json", action="store_true", help="print the JSON report after the table")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    report = run(args.data, args.preset, args.steps, args.pooling, args.hard_pair_weight, args.seed,
                 progress_bar=not args.no_progress, out_dir=args.save)
    print_table(report)
    if args.json:
        print(json.dumps(report, indent=2, ensure_ascii=False))


if __name__ == "__main__":
    main()
