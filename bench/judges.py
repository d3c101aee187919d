"""Baseline judges on the paper's data, beside the length baselines.

    python -m bench.judges --json

Trains the TF-IDF judge on reward_data_train.json minus a held-out split by query, then
reports pairwise accuracy on the held-out pairs (overall, chosen-not-longer, length-matched)
and pointwise metrics on evaluate_data.json restricted to queries the judge never saw (the
file shares most of its good answers with the pairs: see ../shared/data/igniting/README.md)."""
import argparse
import json
import time
from dataclasses import dataclass
from pathlib import Path

from training.judges.data import load_labeled, load_pairs
from training.judges.evaluation import evaluate_labeled, evaluate_pairs, split_by_query
from training.judges.length import LengthJudge, best_length_threshold
from training.judges.tfidf import train_tfidf_judge

SHARED = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "igniting"
HELDOUT_FRACTION = 0.15


@dataclass
class BenchData:
    """The split every judge bench shares: train/held-out pairs by query, labeled items on unseen
    queries, and the length baseline fitted on the training pairs."""

    train: list
    heldout: list
    labeled: list
    length: LengthJudge
    split: dict


def load_bench_data(data_dir: Path) -> BenchData:
    pairs = load_pairs(data_dir / "reward_data_train.json")
    train, heldout = split_by_query(pairs, HELDOUT_FRACTION)
    threshold = best_length_threshold([len(p.chosen) for p in train] + [len(p.rejected) for p in train],
                                      [1] * len(train) + [0] * len(train))
    seen_queries = {p.query.strip() for p in train}
    labeled_all = load_labeled(data_dir / "evaluate_data.json")
    labeled = [item for item in labeled_all if item.query.strip() not in seen_queries]
    split = {"train_pairs": len(train), "heldout_pairs": len(heldout), "heldout_fraction": HELDOUT_FRACTION,
             "labeled_total": len(labeled_all), "labeled_unseen_queries": len(labeled)}
    return BenchData(train, heldout, labeled, LengthJudge(threshold), split)


def run(data_dir: Path) -> dict:
    data = load_bench_data(data_dir)
    started = time.perf_counter()
    tfidf = train_tfidf_judge([p.chosen for p in data.train], [p.rejected for p in data.train], name="tfidf-bench")
    train_seconds = time.perf_counter() - started
    return {
        "split": data.split,
        "tfidf_train_seconds": round(train_seconds, 2),
        "length_threshold_chars": data.length.threshold,
        "pairs": evaluate_pairs(data.heldout, {"tfidf": tfidf}),
        "labeled": evaluate_labeled(data.labeled, {"tfidf": tfidf, "length": data.length}),
    }


def print_table(report: dict) -> None:
    """Pairwise accuracy per subset and pointwise metrics, each judge with its counts."""
    print(f"held-out pairs: {report['split']['heldout_pairs']}  (train {report['split']['train_pairs']})")
    for subset, judges in report["pairs"].items():
        row = "  ".join(f"{name} {v['accuracy']:.3f} ({v['correct']}/{v['count']})" if v["accuracy"] is not None
                        else f"{name} n/a" for name, v in judges.items())
        print(f"  {subset:<18} {row}")
    print(f"labeled, unseen queries: n={report['split']['labeled_unseen_queries']}")
    for name, m in report["labeled"].items():
        print(f"  {name:<13} acc {m['accuracy']:.3f}  P {m['precision']:.3f}  R {m['recall']:.3f}  "
              f"F1 {m['f1']:.3f}  kappa {m['kappa']:.3f}  (n={m['count']})")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=SHARED)
    parser.add_argument("--json", action="store_true", help="print the JSON report after the table")
    args = parser.parse_args()
    report = run(args.data)
    print_table(report)
    if args.json:
        print(json.dumps(report, indent=2, ensure_ascii=False))


if __name__ == "__main__":
    main()
