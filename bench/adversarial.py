"""The adversary's attacks against the offline judges: which flaws do they pass?

    python -m bench.adversarial --json [--rm DIR] [--per-strategy 200]

Seeds: good greetings (label 1) of evaluate_data.json on queries the judges never trained on
(the split of bench/judges.py), kept only where the judge itself calls the seed Good, so an
attack's success means the flaw alone did not make the judge say Bad. Each strategy of
training.judges.adversarial.PERTURBATIONS (repetition, pressure to marry, an injected
instruction, a cliche pile, an off-topic greeting, typos, sarcasm) is applied to the seeds;
the attack success rate (ASR) is the share of flawed greetings still judged Good. Side by side:
the length rule (the anchor), the TF-IDF judge, and the reward model when --rm DIR is given
(`python -m bench.reward_model --save DIR`). The LLM judge needs an endpoint: run the
adversarial_judge command against one."""
import argparse
import json
import random
import time
from pathlib import Path

from bench.judges import SHARED, load_bench_data
from training.judges.adversarial import PERTURBATIONS, perturbation_attacks
from training.judges.tfidf import train_tfidf_judge


def attack_success(judge, seeds, per_strategy: int, seed: int) -> dict:
    queries, texts = [q for q, _ in seeds], [g for _, g in seeds]
    passed = [s for s, score in zip(seeds, judge.scores(queries, texts)) if score >= 0.5]
    report = {"seeds_judged_good": len(passed), "seeds": len(seeds), "per_strategy": {}}
    for strategy in PERTURBATIONS:
        attacks = perturbation_attacks(passed, {strategy: 1.0}, per_strategy, random.Random(seed))
        scores = judge.scores([a.query for a in attacks], [a.greeting for a in attacks])
        fooled = sum(s >= 0.5 for s in scores)
        report["per_strategy"][strategy] = {"asr": round(fooled / len(attacks), 3), "fooled": fooled,
                                            "attacks": len(attacks)}
    total = sum(v["attacks"] for v in report["per_strategy"].values())
    report["asr_overall"] = round(sum(v["fooled"] for v in report["per_strategy"].values()) / total, 3)
    return report


def run(data_dir: Path, rm_folder: Path | None, per_strategy: int, seed: int) -> dict:
    started = time.perf_counter()
    data = load_bench_data(data_dir)
    judges = {"length": data.length,
              "tfidf": train_tfidf_judge([p.chosen for p in data.train], [p.rejected for p in data.train], name="tfidf")}
    if rm_folder is not None:
        from training.judges.reward_model import RewardModelJudge

        judges["reward_model"] = RewardModelJudge.load(rm_folder)
    seeds = [(item.query, item.response) for item in data.labeled if item.label == 1]
    return {"seeds": len(seeds), "per_strategy_attacks": per_strategy,
            "judges": {name: attack_success(judge, seeds, per_strategy, seed) for name, judge in judges.items()},
            "wall_seconds": round(time.perf_counter() - started, 1)}


def print_table(report: dict) -> None:
    names = list(report["judges"])
    print(f"seeds: {report['seeds']} good greetings on unseen queries; "
          + ", ".join(f"{n} calls {report['judges'][n]['seeds_judged_good']} Good" for n in names))
    print(f"  {'attack success rate':<20}" + "".join(f"{n:>14}" for n in names))
    for strategy in PERTURBATIONS:
        print(f"  {strategy:<20}" + "".join(
            f"{report['judges'][n]['per_strategy'][strategy]['asr']:>14.3f}" for n in names))
    print(f"  {'overall':<20}" + "".join(f"{report['judges'][n]['asr_overall']:>14.3f}" for n in names))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=SHARED)
    parser.add_argument("--rm", type=Path)
    parser.add_argument("--per-strategy", type=int, default=200)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    import torch

    torch.set_num_threads(args.threads)
    report = run(args.data, args.rm, args.per_strategy, args.seed)
    print_table(report)
    if args.json:
        print(json.dumps(report, indent=2, ensure_ascii=False))


if __name__ == "__main__":
    main()
