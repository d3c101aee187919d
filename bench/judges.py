"""Judges side by side on the paper's data and the team corpus, beside the length baselines.

    python -m bench.judges --json [--reward-model DIR] [--out bench/results/judges_principled.json]

Split by query (15% held out); every judge trains on the training side only. Reported with counts,
beside pick-the-longer: held-out pairs (overall, chosen-not-longer, length-matched), other-occasion
pairs (a request's greeting vs a good one of another occasion of similar length), spliced pairs
(second half swapped for another occasion's), pointwise accuracy and kappa on evaluate_data.json
for queries no judge saw, and pass rates on the demo model's greetings vs the team's own for the
same requests. --reward-model adds one saved by ``python -m bench.reward_model --save DIR``.
"""
import argparse
import json
import random
import time
from dataclasses import dataclass
from pathlib import Path

from bench.greetings import Writer
from training.judges.data import load_labeled, load_pairs
from training.judges.evaluation import Pair, evaluate_labeled, evaluate_pairs, in_heldout, split_by_query
from training.judges.length import LengthJudge, best_length_threshold
from training.judges.negatives import OccasionPool, other_occasion, spliced
from training.judges.tfidf import train_tfidf_judge
from training.judges.train_side import STARTER_DIR, collect

SHARED = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "igniting"
HELDOUT_FRACTION = 0.15
DEMO_MODEL = Path(__file__).resolve().parents[1] / "models" / "zhufu-small"
DEMO_REQUESTS = 50  # held-out team requests the demo model writes for (3 candidates each)


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


def synthetic_pairs(examples, seed: int = 0) -> dict[str, list[Pair]]:
    """Other-occasion and spliced pairs from held-out good greetings (chosen = the original)."""
    pool = OccasionPool(examples)
    rng = random.Random(seed)
    out = {"other_occasion": [], "spliced": []}
    for example in examples:
        if not example.occasion:
            continue
        made = other_occasion(example, pool, rng, length_within=10)
        if made is not None:
            out["other_occasion"].append(Pair(example.query, example.greeting, made[1]))
        made = spliced(example, pool, rng)
        if made is not None:
            out["spliced"].append(Pair(example.query, example.greeting, made[1]))
    return out


def accuracy_table(pairs, judges: dict) -> dict:
    """{judge: {accuracy, correct, count}} over all the pairs (pick-longer included)."""
    return evaluate_pairs(pairs, judges)["overall"]


def demo_pass_rates(judges: dict, heldout_side, model: Path, max_requests: int = DEMO_REQUESTS, seed: int = 0) -> dict:
    """Each judge's pass rate (score >= 0.5) on the demo model's greetings for held-out team requests
    (the serving path: slots prompt, guards, 3 candidates each) and on the team's own greetings
    for the same requests."""
    human: dict[str, list[str]] = {}
    for e in heldout_side.examples:
        if e.source != "shared":
            human.setdefault(e.query, []).append(e.greeting)
    requests = random.Random(seed).sample(sorted(human), min(max_requests, len(human)))
    writer = Writer(Path(model))
    written = [(r, t) for i, r in enumerate(requests) for t in writer.write(r, seed + i, guarded=True)]
    people = [(r, t) for r in requests for t in human[r]]
    out = {"model": str(model), "requests": len(requests), "model_greetings": len(written),
           "human_greetings": len(people)}
    for name, judge in judges.items():
        passed = {side: [s >= 0.5 for s in judge.scores([q for q, _ in rows], [t for _, t in rows])]
                  for side, rows in (("model", written), ("human", people))}
        out[name] = {side: {"pass_rate": sum(v) / len(v), "passed": sum(v), "count": len(v)} for side, v in passed.items()}
    out["samples"] = [{"request": r, "model": t} for r, t in written[:: max(1, len(written) // 6)]][:6]
    return out


def run_principled(data_dir: Path, starter_dir: Path = STARTER_DIR, reward_model: Path | None = None,
                   demo_model: Path | None = DEMO_MODEL) -> dict:
    """Every judge on every split, in one run."""
    from training.judges.principled import train_principled

    data = load_bench_data(data_dir)
    heldout = lambda q: in_heldout(q, HELDOUT_FRACTION)  # noqa: E731
    train_side = collect(starter_dir, data_dir, exclude_query=heldout)
    heldout_side = collect(starter_dir, data_dir, exclude_query=lambda q: not heldout(q))
    seen = {q.strip() for q in train_side.queries()} | {p.query.strip() for p in data.train}
    labeled = [item for item in load_labeled(data_dir / "evaluate_data.json") if item.query.strip() not in seen]

    started = time.perf_counter()
    tfidf = train_tfidf_judge([p.chosen for p in data.train], [p.rejected for p in data.train], name="tfidf-bench")
    tfidf_seconds = time.perf_counter() - started
    started = time.perf_counter()
    principled = train_principled(train_side)
    principled_seconds = time.perf_counter() - started
    judges = {"principled": principled, "tfidf": tfidf}
    if reward_model is not None:
        from training.judges.reward_model import RewardModelJudge

        judges["reward_model"] = RewardModelJudge.load(reward_model)
    synthetic = synthetic_pairs(heldout_side.examples)
    team_pairs = [p for p in heldout_side.pairs if p not in set(data.heldout)]
    report = {
        "split": data.split | {"train_side_examples": len(train_side.examples), "train_side_pairs": len(train_side.pairs),
                               "heldout_examples": len(heldout_side.examples), "team_heldout_pairs": len(team_pairs),
                               "labeled_unseen_queries": len(labeled)},
        "train_seconds": {"tfidf": round(tfidf_seconds, 1), "principled": round(principled_seconds, 1)},
        "reward_model": str(reward_model) if reward_model else "not run: trains in about 16 minutes on 2 cores "
                                                                 "(README); pass --reward-model DIR",
        "length_threshold_chars": data.length.threshold,
        "pairs": evaluate_pairs(data.heldout, judges),
        "other_occasion": accuracy_table(synthetic["other_occasion"], judges),
        "spliced": accuracy_table(synthetic["spliced"], judges),
        "labeled": evaluate_labeled(labeled, judges | {"length": data.length}),
        "principled_calibration": principled.info.get("calibration"),
    }
    if team_pairs:
        report["team_pairs"] = accuracy_table(team_pairs, judges)
    if demo_model is not None and Path(demo_model).is_dir():
        report["demo_pass_rates"] = demo_pass_rates(judges, heldout_side, demo_model)
    return report


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


def _row(judges: dict) -> str:
    return "  ".join(f"{name} {v['accuracy']:.3f} ({v['correct']}/{v['count']})" if v["accuracy"] is not None
                     else f"{name} n/a" for name, v in judges.items())


def print_table(report: dict) -> None:
    """Pairwise accuracy per subset and pointwise metrics, each judge with its counts."""
    print(f"held-out pairs: {report['split']['heldout_pairs']}  (train {report['split']['train_pairs']})")
    for subset, judges in report["pairs"].items():
        print(f"  {subset:<18} {_row(judges)}")
    for subset in ("other_occasion", "spliced", "team_pairs"):
        if subset in report:
            print(f"  {subset:<18} {_row(report[subset])}")
    demo = report.get("demo_pass_rates")
    if demo:
        print(f"pass rate, demo model vs people ({demo['requests']} held-out team requests):")
        for name in (n for n in demo if isinstance(demo[n], dict) and "model" in demo[n]):
            m, h = demo[name]["model"], demo[name]["human"]
            print(f"  {name:<13} model {m['pass_rate']:.3f} ({m['passed']}/{m['count']})  "
                  f"human {h['pass_rate']:.3f} ({h['passed']}/{h['count']})")
    print(f"labeled, unseen queries: n={report['split']['labeled_unseen_queries']}")
    for name, m in report["labeled"].items():
        print(f"  {name:<13} acc {m['accuracy']:.3f}  P {m['precision']:.3f}  R {m['recall']:.3f}  "
              f"F1 {m['f1']:.3f}  kappa {m['kappa']:.3f}  (n={m['count']})")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=SHARED)
    parser.add_argument("--json", action="store_true", help="print the JSON report after the table")
    parser.add_argument("--baselines-only", action="store_true", help="the TF-IDF and length baselines alone (fast)")
    parser.add_argument("--reward-model", type=Path, help="a reward model folder saved by bench.reward_model --save")
    parser.add_argument("--out", type=Path, help="also write the JSON report here")
    parser.add_argument("--demo-model", type=Path, default=DEMO_MODEL,
                        help="the checkpoint whose greetings on held-out team requests each judge passes or not")
    parser.add_argument("--no-demo", action="store_true", help="skip the demo model's pass rate")
    parser.add_argument("--starter", type=Path, default=STARTER_DIR, help="the team corpus folder (greetings*.jsonl, pairs*)")
    args = parser.parse_args()
    demo = None if args.no_demo else args.demo_model
    report = run(args.data) if args.baselines_only else run_principled(args.data, args.starter, reward_model=args.reward_model,
                                                                       demo_model=demo)
    print_table(report)
    if args.json:
        print(json.dumps(report, indent=2, ensure_ascii=False))
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(report, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
