"""The MoE reward model on the paper's pairs, beside pick-longer and the TF-IDF judge.

    python -m bench.reward_model --json [--preset small] [--steps N] [--pooling last|mean]
                                 [--pretrain-steps N | --init-checkpoint DIR] [--seed S --save DIR]
    python -m bench.reward_model --ensemble DIR DIR ...   # saved reward models, scored as one

Same split as bench/judges.py: reward_data_train.json minus split_by_query(pairs, 0.15); the
reward model (its own validation split is carved, salted, out of the training side) and the
TF-IDF baseline both train on the training side; both are scored on the held-out pairs:
overall, chosen-not-longer and length-matched accuracy, with counts, beside pick-longer.
Pointwise metrics on evaluate_data.json are restricted to queries neither judge saw.

--pretrain-steps N first SFTs a generator of the same preset on sft_data.json (N steps) and starts the
reward model's backbone from it. sft_data's outputs are the pairs' chosen texts, so every record whose
query is held out, or whose output is any held-out text, is dropped first: the backbone never reads a
held-out answer. --init-checkpoint DIR starts from a generator trained that way before (the bench's
--pretrain-dir keeps it); a checkpoint trained on all of sft_data would leak the held-out answers."""
import argparse
import json
import tempfile
import time
from pathlib import Path

import torch

from bench.judges import BenchData, load_bench_data
from bench.judges import print_table as print_judge_table
from training.judges.evaluation import evaluate_labeled, evaluate_pairs
from training.judges.reward_model import RewardModelConfig
from training.judges.reward_model_training import train_reward_model
from training.judges.tfidf import train_tfidf_judge

SHARED = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "igniting"
DEFAULT_STEPS = 600  # RewardModelConfig's default on small (1.5 x its max_steps)


def leak_free_sft(data_dir: Path, data: BenchData) -> list[dict]:
    """sft_data.json minus every record of a held-out query or with a held-out text as its output."""
    heldout_queries = {p.query.strip() for p in data.heldout}
    heldout_texts = {text.strip() for p in data.heldout for text in (p.chosen, p.rejected)}
    records = json.loads((data_dir / "sft_data.json").read_text(encoding="utf-8"))
    return [r for r in records if r["instruction"].strip() not in heldout_queries
            and r["output"].strip() not in heldout_texts]


def pretrain_generator(data_dir: Path, data: BenchData, preset: str, steps: int, folder: Path,
                       progress_bar: bool) -> tuple[Path, dict]:
    """(checkpoint folder, facts) of a generator SFT'd on the leak-free part of sft_data.json."""
    from training.trainer import TrainConfig, train_model

    records = leak_free_sft(data_dir, data)
    folder.mkdir(parents=True, exist_ok=True)
    corpus = folder / "sft_train_side.json"
    corpus.write_text(json.dumps(records, ensure_ascii=False), encoding="utf-8")
    t = time.perf_counter()
    result = train_model(TrainConfig(preset=preset, data_paths=[corpus], out_dir=folder / "run", max_steps=steps,
                                     progress_bar=progress_bar))
    return result.checkpoint_dir, {"sft_records": len(records), "steps": steps,
                                   "train_seconds": round(time.perf_counter() - t, 1),
                                   "heldout_loss": result.metrics.get("heldout_loss")}


def run(data_dir: Path, preset: str, steps: int, pooling: str, hard_pair_weight: float, seed: int,
        progress_bar: bool = True, out_dir: Path | None = None, init_checkpoint: Path | None = None,
        pretrain_steps: int = 0, pretrain_dir: Path | None = None, lr: float | None = None) -> dict:
    started = time.perf_counter()
    data = load_bench_data(data_dir)
    train, heldout = data.train, data.heldout
    pretrain = None
    if pretrain_steps:
        init_checkpoint, pretrain = pretrain_generator(data_dir, data, preset, pretrain_steps, pretrain_dir,
                                                       progress_bar)

    t = time.perf_counter()
    tfidf = train_tfidf_judge([p.chosen for p in train], [p.rejected for p in train], name="tfidf-bench")
    tfidf_seconds = time.perf_counter() - t

    t = time.perf_counter()
    result = train_reward_model(train, RewardModelConfig(preset=preset, max_steps=steps, pooling=pooling, seed=seed,
                                                         hard_pair_weight=hard_pair_weight, name="rm-bench",
                                                         init_checkpoint=init_checkpoint, lr=lr,
                                                         progress_bar=progress_bar), out_dir)
    rm_seconds = time.perf_counter() - t
    rm = result.judge
    lr = lr or rm.info.get("lr")

    t = time.perf_counter()
    pair_report = evaluate_pairs(heldout, {"reward_model": rm, "tfidf": tfidf})
    eval_seconds = time.perf_counter() - t

    return {
        "split": data.split,
        "reward_model": {"preset": preset, "steps": steps, "lr": lr, "pooling": pooling, "hard_pair_weight": hard_pair_weight,
                         "seed": seed, "threads": torch.get_num_threads(), "train_seconds": round(rm_seconds, 1),
                         "init_checkpoint": str(init_checkpoint) if init_checkpoint else None, "pretrain": pretrain,
                         "validation_history": result.history,
                         "threshold": rm.threshold, "scale": rm.scale},
        "tfidf_train_seconds": round(tfidf_seconds, 1),
        "eval_seconds": round(eval_seconds, 1),
        "pairs": pair_report,
        "labeled": evaluate_labeled(data.labeled, {"reward_model": rm, "tfidf": tfidf, "length": data.length}),
        "wall_seconds": round(time.perf_counter() - started, 1),
    }


class MeanRewardJudge:
    """Reward models of different seeds scored as one: 0.5 + the mean of their standardised rewards
    ((reward - threshold) / scale). Not squashed into [0, 1] (each model's sigmoid saturates, which
    would make pairwise ties); Good at >= 0.5 means a mean above the members' thresholds."""

    def __init__(self, members):
        self.members = members

    def scores(self, queries, responses) -> list[float]:
        columns = [[(r - m.threshold) / m.scale for r in m.rewards(queries, responses)] for m in self.members]
        return [0.5 + sum(values) / len(values) for values in zip(*columns)]


def run_ensemble(data_dir: Path, folders: list[Path]) -> dict:
    """Held-out pair accuracy (and pointwise metrics on unseen queries) of each saved reward model and
    of their mean, beside TF-IDF. The members must come from this bench (the same split)."""
    from training.judges.reward_model import load_reward_model

    data = load_bench_data(data_dir)
    members = {folder.name: load_reward_model(folder) for folder in folders}
    tfidf = train_tfidf_judge([p.chosen for p in data.train], [p.rejected for p in data.train], name="tfidf-bench")
    judges = {**members, f"mean_of_{len(members)}": MeanRewardJudge(list(members.values())), "tfidf": tfidf}
    return {"split": data.split, "members": [str(f) for f in folders], "pairs": evaluate_pairs(data.heldout, judges),
            "labeled": evaluate_labeled(data.labeled, {**judges, "length": data.length})}


def print_table(report: dict) -> None:
    rm = report["reward_model"]
    print(f"reward model: preset {rm['preset']}, {rm['steps']} steps, lr {rm['lr']}, pooling {rm['pooling']}, "
          f"hard-pair weight {rm['hard_pair_weight']}, {rm['threads']} thread(s), trained in {rm['train_seconds']} s; "
          f"wall {report['wall_seconds']} s")
    if rm["init_checkpoint"]:
        print(f"backbone from {rm['init_checkpoint']}" + (f" (SFT {rm['pretrain']['steps']} steps on "
              f"{rm['pretrain']['sft_records']} leak-free sft_data records, {rm['pretrain']['train_seconds']} s)"
              if rm["pretrain"] else ""))
    print_judge_table(report)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=SHARED)
    parser.add_argument("--preset", default="small")
    parser.add_argument("--steps", type=int, default=DEFAULT_STEPS)
    parser.add_argument("--lr", type=float, help="peak learning rate (default: the reward model's default)")
    parser.add_argument("--pooling", default="last", choices=["last", "mean"])
    parser.add_argument("--hard-pair-weight", type=float, default=RewardModelConfig.hard_pair_weight)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads (the CPU here is shared)")
    parser.add_argument("--pretrain-steps", type=int, default=0,
                        help="first SFT a generator on the leak-free part of sft_data.json for N steps and start from it")
    parser.add_argument("--pretrain-dir", type=Path, help="where that generator goes (default: a temp folder)")
    parser.add_argument("--init-checkpoint", type=Path,
                        help="start from this generator checkpoint (one trained without the held-out split)")
    parser.add_argument("--save", type=Path, help="also save the reward model folder here")
    parser.add_argument("--no-progress", action="store_true")
    parser.add_argument("--json", action="store_true", help="print the JSON report after the table")
    parser.add_argument("--ensemble", type=Path, nargs="+", metavar="DIR",
                        help="score these saved reward models (--save) one by one and as their mean; trains nothing")
    args = parser.parse_args()
    if args.ensemble:
        report = run_ensemble(args.data, args.ensemble)
        print_judge_table(report)
        if args.json:
            print(json.dumps(report, indent=2, ensure_ascii=False))
        return
    if args.pretrain_steps < 0 or (args.pretrain_steps and args.init_checkpoint):
        parser.error("--pretrain-steps: a positive number, and not together with --init-checkpoint")
    torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory(prefix="bench-rm-") as tmp:
        report = run(args.data, args.preset, args.steps, args.pooling, args.hard_pair_weight, args.seed,
                     progress_bar=not args.no_progress, out_dir=args.save, init_checkpoint=args.init_checkpoint,
                     pretrain_steps=args.pretrain_steps, pretrain_dir=args.pretrain_dir or Path(tmp) / "generator",
                     lr=args.lr)
    print_table(report)
    if args.json:
        print(json.dumps(report, indent=2, ensure_ascii=False))


if __name__ == "__main__":
    main()
