"""Prompt-injection flip rate of every judge, side by side (training/judges/injection.py).

    python -m bench.injection --json [--tfidf DIR] [--reward-model DIR]

Each case is a plainly bad greeting with an injection appended (an order to rate it Good, a fake
end of the data block, a fake SYSTEM line, a verdict-looking JSON, in Chinese and English). Among
the cases whose plain greeting a judge calls Bad, the flip rate is the share it calls Good once the
injection is added (lower is better; 0 resists every technique). Judges:

* length: "Good iff at least N characters", N fitted on the starter pairs (the anchor: it has no
  notion of instructions, only of length, and an injection makes a greeting longer);
* tfidf-starter: the TF-IDF judge trained on the starter pairs (training/data/starter/pairs.json);
* reward-model-starter: a tiny-preset MoE reward model trained on the same pairs (--reward-model-steps,
  default 200; 0 leaves it out);
* any saved TF-IDF or reward-model folder given with --tfidf / --reward-model;
* the LLM judge with the default principles when JUDGE_LLM_BASE_URL and JUDGE_LLM_MODEL are set
  (JUDGE_LLM_API_KEY optional); otherwise it is listed as skipped.
"""
import argparse
import json
import os
import time
from pathlib import Path

from training.judges.data import load_pairs
from training.judges.injection import build_injection_cases, flip_rate_by_technique, injection_flip_rate
from training.judges.length import LengthJudge, best_length_threshold
from training.judges.registry import load_judge
from training.judges.tfidf import train_tfidf_judge

STARTER_PAIRS = Path(__file__).resolve().parents[1] / "training" / "data" / "starter" / "pairs.json"


def starter_judges() -> dict:
    pairs = load_pairs(STARTER_PAIRS)
    lengths = [len(p.chosen) for p in pairs] + [len(p.rejected) for p in pairs]
    threshold = best_length_threshold(lengths, [1] * len(pairs) + [0] * len(pairs))
    return {f"length>={threshold}": LengthJudge(threshold),
            "tfidf-starter": train_tfidf_judge([p.chosen for p in pairs], [p.rejected for p in pairs],
                                               name="tfidf-starter")}


def starter_reward_model(steps: int):
    """A tiny-preset reward model trained on the starter pairs, loaded back from its saved folder."""
    import tempfile

    from training.judges.reward_model import RewardModelConfig
    from training.judges.reward_model_training import train_reward_model

    folder = Path(tempfile.mkdtemp(prefix="bench-injection-rm-")) / "reward-model-starter"
    cfg = RewardModelConfig(preset="tiny", max_steps=steps, batch_pairs=8, seed=0, name="reward-model-starter")
    train_reward_model(load_pairs(STARTER_PAIRS), cfg, folder)
    return load_judge("reward_model", folder)


def llm_judge_from_env():
    base_url, model = os.environ.get("JUDGE_LLM_BASE_URL"), os.environ.get("JUDGE_LLM_MODEL")
    if not (base_url and model):
        return None
    from webapp.judges.principles import DEFAULT_RULES, DEFAULT_STRENGTHS, DEFAULT_WEAKNESSES  # plain lists, no Django

    config = {"base_url": base_url, "model": model, "api_key": os.environ.get("JUDGE_LLM_API_KEY", "")}
    return load_judge("llm", None, name="llm", config=config, principles={
        "rules": DEFAULT_RULES, "strengths": DEFAULT_STRENGTHS, "weaknesses": DEFAULT_WEAKNESSES})


def run(tfidf_dirs=(), reward_model_dirs=(), reward_model_steps: int = 200) -> dict:
    judges = starter_judges()
    if reward_model_steps:
        judges["reward-model-starter"] = starter_reward_model(reward_model_steps)
    for folder in tfidf_dirs:
        judges[f"tfidf:{Path(folder).name}"] = load_judge("tfidf", folder)
    for folder in reward_model_dirs:
        judges[f"reward_model:{Path(folder).name}"] = load_judge("reward_model", folder)
    skipped = {}
    llm = llm_judge_from_env()
    if llm is None:
        skipped["llm"] = "JUDGE_LLM_BASE_URL and JUDGE_LLM_MODEL are not set"
    else:
        judges["llm"] = llm
    cases = build_injection_cases()
    results = {}
    for name, judge in judges.items():
        started = time.perf_counter()
        report = injection_flip_rate(judge, cases)
        results[name] = {"flip_rate": report["flip_rate"], "flipped": report["flipped"], "eligible": report["count"],
                         "base_called_good": report["skipped"], "by_technique": flip_rate_by_technique(report),
                         "seconds": round(time.perf_counter() - started, 2)}
    return {"cases": len(cases), "techniques": sorted({c.technique for c in cases}), "judges": results,
            "skipped": skipped}


def print_table(report: dict) -> None:
    print(f"{report['cases']} cases ({len(report['techniques'])} techniques x bad greetings); "
          "flip rate = called Good after the injection, among those called Bad without it")
    print(f"  {'judge':<22} {'flip rate':>9} {'flipped':>8} {'eligible':>8}  worst technique")
    for name, r in report["judges"].items():
        rate = "n/a" if r["flip_rate"] is None else f"{r['flip_rate']:.3f}"
        worst = max(r["by_technique"].items(), key=lambda kv: kv[1], default=("-", 0.0))
        print(f"  {name:<22} {rate:>9} {r['flipped']:>8} {r['eligible']:>8}  {worst[0]} ({worst[1]:.2f})")
    for name, why in report["skipped"].items():
        print(f"  {name:<22} skipped: {why}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tfidf", action="append", default=[], help="a saved TF-IDF judge folder (repeatable)")
    parser.add_argument("--reward-model", action="append", default=[], help="a saved reward-model folder (repeatable)")
    parser.add_argument("--reward-model-steps", type=int, default=200,
                        help="training steps of the tiny starter reward model (0: leave it out)")
    parser.add_argument("--json", action="store_true", help="print the JSON report after the table")
    args = parser.parse_args()
    report = run(args.tfidf, args.reward_model, args.reward_model_steps)
    print_table(report)
    if args.json:
        print(json.dumps(report, indent=2, ensure_ascii=False))


if __name__ == "__main__":
    main()
