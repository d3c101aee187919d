"""GRPO with the principled judge as reward, measured on held-out team requests and gated.

    python -m bench.grpo_principled --run var/grpo-principled --grpo-seconds 1500 --json

From the shipped model (models/zhufu-small): GRPO on the dev half of
training/data/starter/requests_labelled.jsonl (never the test half), reward = the principled
judge's score blended with its request-fit mark (training.rl.request_judge) minus the measured
anti-collapse terms (bigram diversity 4.0, copy 0.5); then the shipped model and the GRPO
checkpoint on the test half's requests (4 samples each, seeded): judge pass rate, request-fit
mark, occasion fit (generation.guards), novelty, distinct-2, KL, each with a bootstrap 95%
interval over prompts, the paired differences, and the promotion gate's decision
(training.rl.gate). The judge trains on the train side with the test requests left out.
Every stage saves under --run (judge/, before.json, grpo/, after.json): rerun to resume.
Figures go to bench/results/grpo_principled.json.
"""
from __future__ import annotations

import argparse
import json
import os
import random
import time
from pathlib import Path

import torch

from generation.checkpoint import read_metadata
from generation.conditioning import DEFAULT_FORMAT
from generation.requests import parse_request
from generation.guards import occasion_fit
from training.judges.principled import SHARED_DIR, PrincipledJudge, train_principled
from training.judges.train_side import STARTER_DIR, collect
from training.rl.evaluation import EvalSettings, bootstrap_interval, evaluate_generation
from training.rl.gate import gate, paired_bootstrap_difference
from training.rl.grpo import GRPOConfig, train_grpo
from training.rl.pipeline import training_greetings
from training.rl.request_judge import RequestJudge, prompts_for
from training.rl.rewards import RewardConfig

REPO = Path(__file__).resolve().parents[1]
LABELLED = STARTER_DIR / "requests_labelled.jsonl"
RESULTS = REPO / "bench" / "results" / "grpo_principled.json"
FIT_WEIGHT = 0.3  # of the GRPO reward's judge term: the request-fit mark (the rest: the overall score)


def labelled_requests(split: str) -> list[str]:
    rows = [json.loads(line) for line in LABELLED.read_text(encoding="utf-8").splitlines() if line.strip()]
    return [r["text"].strip() for r in rows if r.get("split") == split and r["text"].strip()]


def judge_for(folder: Path, excluded: set[str]) -> PrincipledJudge:
    """The principled judge trained on the train side without the evaluation requests (once)."""
    if not (folder / "principled.json").is_file():
        data = collect(STARTER_DIR, SHARED_DIR, exclude_query=lambda q: q.strip() in excluded)
        train_principled(data, progress=print).save(folder)
    return PrincipledJudge.load(folder)


def per_prompt(values: list[float], samples: int) -> list[float]:
    return [sum(values[i: i + samples]) / samples for i in range(0, len(values), samples)]


def figures(report: dict, judge: RequestJudge) -> dict:
    """Per-prompt request-fit marks and occasion fit, from the report's greetings."""
    rows = report["all_greetings"]
    k = report["samples_per_prompt"]
    verdicts = judge.evaluate_many([r["query"] for r in rows], [r["greeting"] for r in rows])
    fit = [float(v.rubric.get("request_fit", 0.0)) for v in verdicts]
    requests = judge.requests_of([r["query"] for r in rows])
    occasion = []
    for request, row in zip(requests, rows):
        asked = parse_request(request).occasion
        occasion.append(None if asked is None else float(occasion_fit(asked, row["greeting"])))
    occasion_prompts = [sum(v for v in occasion[i: i + k] if v is not None) / k
                        for i in range(0, len(occasion), k) if occasion[i] is not None]
    return {"request_fit_per_prompt": per_prompt(fit, k), "occasion_fit_per_prompt": occasion_prompts,
            "occasion_prompts": [i // k for i in range(0, len(occasion), k) if occasion[i] is not None]}


def summary(report: dict, extra: dict) -> dict:
    out = {key: report[key] for key in ("pass_rate", "pass_rate_ci95", "mean_judge_score", "distinct_1", "distinct_2",
                                        "novelty", "copies", "lengths", "truncated", "kl_to_reference")}
    for name in ("request_fit", "occasion_fit"):
        values = extra[f"{name}_per_prompt"]
        out[name] = sum(values) / len(values)
        out[f"{name}_ci95"] = list(bootstrap_interval(values))
    return out


def evaluate(checkpoint: Path, prompts: list[str], judge: RequestJudge, reference: Path, texts, path: Path,
             samples: int) -> dict:
    if path.is_file():
        return json.loads(path.read_text(encoding="utf-8"))
    started = time.perf_counter()
    report = evaluate_generation(checkpoint, prompts, judge, reference, training_greetings=texts,
                                 settings=EvalSettings(samples=samples), keep_greetings=True)
    report |= figures(report, judge)
    report["requests"] = {p: judge.requests.get(p, p) for p in prompts}  # what each prompt was written for
    report["wall_s"] = round(time.perf_counter() - started, 1)
    path.write_text(json.dumps(report, ensure_ascii=False, indent=1), encoding="utf-8")
    return report


def run(args) -> dict:
    run_dir = Path(args.run)
    run_dir.mkdir(parents=True, exist_ok=True)
    fmt = read_metadata(args.model).get("prompt_format", DEFAULT_FORMAT)
    test, dev = labelled_requests("test"), labelled_requests("dev")
    eval_map = prompts_for(test, fmt)
    train_map = {p: r for p, r in prompts_for(dev, fmt).items() if p not in eval_map}  # no held-out prompt trained on
    eval_prompts = sorted(eval_map)[: args.max_eval_prompts]
    principled = judge_for(run_dir / "judge", set(test))
    eval_judge = RequestJudge(principled, eval_map)
    texts = training_greetings(args.model)
    before = evaluate(args.model, eval_prompts, eval_judge, args.model, texts, run_dir / "before.json", args.samples)
    print(f"before: pass {before['pass_rate']:.3f}  ({before['wall_s']}s)", flush=True)

    cfg = GRPOConfig(init_checkpoint=args.model, out_dir=run_dir / "grpo", prompts=sorted(train_map),
                     max_steps=args.grpo_steps, max_seconds=args.grpo_seconds, lr=args.lr, save_every=5, seed=0,
                     reward=RewardConfig(diversity_coef=4.0, diversity_ngram=2, copy_coef=0.5),
                     training_greetings=texts, progress_bar=False)
    checkpoint = run_dir / "grpo" / "checkpoint"
    if not (checkpoint / "zhufu.json").is_file():
        resume = (run_dir / "grpo" / "state" / "state.json").is_file()
        result = train_grpo(cfg, RequestJudge(principled, train_map, FIT_WEIGHT), resume=resume,
                            on_progress=lambda e: print(json.dumps({k: e.get(k) for k in (
                                "step", "reward", "pass_rate", "kl", "distinct_2", "step_s")}), flush=True)
                            if e.get("event") == "step" else None)
        checkpoint = result.checkpoint_dir
    after = evaluate(checkpoint, eval_prompts, eval_judge, args.model, texts, run_dir / "after.json", args.samples)
    history = [json.loads(line) for line in (run_dir / "grpo" / "metrics.jsonl").read_text().splitlines() if line]
    decision = gate(after, before)
    paired = {}
    for name, key in (("pass_rate", "per_prompt_pass"), ("request_fit", "request_fit_per_prompt")):
        diff, ci = paired_bootstrap_difference(after[key], before[key])
        paired[name] = {"difference": diff, "ci95": list(ci)}
    both = sorted(set(before["occasion_prompts"]) & set(after["occasion_prompts"]))
    pick = lambda r: dict(zip(r["occasion_prompts"], r["occasion_fit_per_prompt"]))  # noqa: E731
    diff, ci = paired_bootstrap_difference([pick(after)[i] for i in both], [pick(before)[i] for i in both])
    paired["occasion_fit"] = {"difference": diff, "ci95": list(ci), "prompts": len(both)}
    rng = random.Random(0)
    shown = sorted(rng.sample(range(len(eval_prompts)), min(5, len(eval_prompts))))
    k = before["samples_per_prompt"]
    samples = [{"request": eval_map[eval_prompts[i]], "before": before["all_greetings"][i * k]["greeting"],
                "after": after["all_greetings"][i * k]["greeting"]} for i in shown]
    return {"model": str(args.model), "judge": principled.version, "prompt_format": fmt,
            "train_prompts": len(train_map), "eval_prompts": len(eval_prompts), "samples_per_prompt": k,
            "grpo": {"steps": len(history), "seconds": round(sum(h["step_s"] for h in history), 1), "lr": args.lr,
                     "fit_weight": FIT_WEIGHT, "first": history[0] if history else None,
                     "last": history[-1] if history else None},
            "before": summary(before, before), "after": summary(after, after), "paired": paired,
            "gate": decision.as_dict(), "samples_unpicked": samples}


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", type=Path, default=REPO / "models" / "zhufu-small")
    parser.add_argument("--run", type=Path, default=REPO / "var" / "grpo-principled")
    parser.add_argument("--grpo-steps", type=int, default=60)
    parser.add_argument("--grpo-seconds", type=float, default=1500)
    parser.add_argument("--lr", type=float, default=5e-5)
    parser.add_argument("--samples", type=int, default=4, help="greetings per evaluation prompt")
    parser.add_argument("--max-eval-prompts", type=int, default=1000)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--out", type=Path, default=RESULTS)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    os.environ.setdefault("OMP_NUM_THREADS", str(args.threads))
    report = run(args)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, ensure_ascii=False, indent=2) + "\n", encoding="utf-8")
    text = json.dumps(report, ensure_ascii=False, indent=2)
    print(text if args.json else text[:3000])


if __name__ == "__main__":
    main()
