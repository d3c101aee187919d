"""Does length bias or leakage explain the TF-IDF judge's pairwise score? Both judges on length-controlled splits.

    python -m bench.length_control --json [--rm FOLDER]

Same split as bench/judges.py (reward_data_train.json minus split_by_query(pairs, 0.15)). On the
held-out pairs, beside pick-longer:

* subsets: overall; chosen not longer; length-matched (|difference| <= 10 characters);
  length-balanced (every chosen-not-longer pair plus as many chosen-longer pairs, drawn with a
  fixed seed, so pick-longer is at about 50% by construction); unseen texts (neither text occurs
  verbatim on the training side: the split is by query, but the same short greetings recur across
  queries); and the not-longer pairs among those.
* a TF-IDF judge trained only on length-controlled training pairs (chosen not longer, or
  length-matched): if length were what TF-IDF learns, it would fall apart on these;
* each judge's rank correlation (Spearman) between score and text length on the held-out texts.

The reward model is read from a folder (e.g. `python -m bench.reward_model --save DIR`); without
--rm only the TF-IDF judges are reported."""
import argparse
import json
import random
import time
from pathlib import Path

import numpy as np

from bench.judges import SHARED, load_bench_data
from training.judges.evaluation import LENGTH_MATCH_CHARS, accuracy_on, judge_pair_correctness, pair_subsets
from training.judges.length import pick_longer
from training.judges.tfidf import train_tfidf_judge


def is_length_controlled(pair) -> bool:
    return len(pair.chosen) <= len(pair.rejected) or abs(len(pair.chosen) - len(pair.rejected)) <= LENGTH_MATCH_CHARS


def controlled_subsets(train, heldout, seed: int = 0) -> dict[str, list[int]]:
    subsets = pair_subsets(heldout)
    not_longer = subsets["chosen_not_longer"]
    longer = [i for i in range(len(heldout)) if i not in set(not_longer)]
    subsets["length_balanced"] = sorted(not_longer + random.Random(seed).sample(longer, min(len(longer), len(not_longer))))
    seen = {p.chosen.strip() for p in train} | {p.rejected.strip() for p in train}
    unseen = [i for i, p in enumerate(heldout) if p.chosen.strip() not in seen and p.rejected.strip() not in seen]
    subsets["unseen_texts"] = unseen
    subsets["unseen_texts_not_longer"] = sorted(set(unseen) & set(not_longer))
    return subsets


def spearman(x, y) -> float:
    rx, ry = np.argsort(np.argsort(x)), np.argsort(np.argsort(y))
    return float(np.corrcoef(rx, ry)[0, 1])


def run(data_dir: Path, rm_folder: Path | None, seed: int = 0) -> dict:
    started = time.perf_counter()
    data = load_bench_data(data_dir)
    train, heldout = data.train, data.heldout
    controlled_train = [p for p in train if is_length_controlled(p)]
    judges = {
        "tfidf": train_tfidf_judge([p.chosen for p in train], [p.rejected for p in train], name="tfidf"),
        "tfidf_length_controlled_train": train_tfidf_judge([p.chosen for p in controlled_train],
                                                           [p.rejected for p in controlled_train], name="tfidf-lc"),
    }
    if rm_folder is not None:
        from training.judges.reward_model import RewardModelJudge

        judges["reward_model"] = RewardModelJudge.load(rm_folder)
    subsets = controlled_subsets(train, heldout, seed)
    correctness = {"pick_longer": [pick_longer(p.chosen, p.rejected) for p in heldout]}
    correlation = {}
    texts = [p.chosen for p in heldout] + [p.rejected for p in heldout]
    queries = [p.query for p in heldout] * 2
    for name, judge in judges.items():
        correctness[name] = judge_pair_correctness(judge, heldout)
        correlation[name] = round(spearman(judge.scores(queries, texts), [len(t) for t in texts]), 3)
    seen = {p.chosen.strip() for p in train} | {p.rejected.strip() for p in train}
    return {
        "split": data.split,
        "leakage": {"heldout_pairs": len(heldout),
                    "chosen_seen_in_train": sum(p.chosen.strip() in seen for p in heldout),
                    "rejected_seen_in_train": sum(p.rejected.strip() in seen for p in heldout),
                    "pairs_with_no_seen_text": len(subsets["unseen_texts"])},
        "length_controlled_train_pairs": len(controlled_train),
        "pairs": {subset: {name: accuracy_on(hits, indices) for name, hits in correctness.items()}
                  for subset, indices in subsets.items()},
        "score_length_spearman": correlation,
        "wall_seconds": round(time.perf_counter() - started, 1),
    }


def print_table(report: dict) -> None:
    leak = report["leakage"]
    print(f"held-out pairs {leak['heldout_pairs']}: chosen seen verbatim in training {leak['chosen_seen_in_train']}, "
          f"rejected seen {leak['rejected_seen_in_train']}, pairs with no seen text {leak['pairs_with_no_seen_text']}")
    print(f"length-controlled training pairs: {report['length_controlled_train_pairs']} of {report['split']['train_pairs']}")
    for subset, judges in report["pairs"].items():
        row = "  ".join(f"{name} {v['accuracy']:.3f} ({v['correct']}/{v['count']})" if v["accuracy"] is not None
                        else f"{name} n/a" for name, v in judges.items())
        print(f"  {subset:<24} {row}")
    print("score-length Spearman on held-out texts: "
          + ", ".join(f"{k} {v:+.3f}" for k, v in report["score_length_spearman"].items()))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=SHARED)
    parser.add_argument("--rm", type=Path, help="a reward-model folder (bench.reward_model --save DIR)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads (the CPU here is shared)")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    import torch

    torch.set_num_threads(args.threads)
    report = run(args.data, args.rm, args.seed)
    print_table(report)
    if args.json:
        print(json.dumps(report, indent=2, ensure_ascii=False))


if __name__ == "__main__":
    main()
