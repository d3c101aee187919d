"""Multi-agent rejection sampling: throughput (pairs per minute) and where candidates are rejected.

    python -m bench.curation --json [--checkpoint DIR] [--prompts 30] [--gen-steps 300]

Side by side on the same prompts and the same candidate budget per prompt (4), with the in-process
engine as the agents' backend and the TF-IDF judge (trained on the training side of the paper's
pairs, as in bench/judges.py):

* anchor: one agent (temperature 0.8, 4 candidates);
* multi-agent: two agents (temperature 0.7 and 1.2 with a persona, 2 candidates each);
* debate (only with --debate-url URL --debate-model M, an OpenAI-compatible chat endpoint): the same two
  agents with 3 few-shot examples retrieved from the training pairs' chosen greetings, then the positive,
  negative, judge and reflect agents (training.curation.debate) on that endpoint.

Prompts come from random_query.txt minus every query of evaluate_data.json and of the held-out
pairs (the leakage guard; the count is reported). Without --checkpoint a tiny generator is
trained on sft_data.json first (--gen-steps; seconds on a CPU): its greetings are weak, so the
figures measure the machinery (throughput, the share rejected at each stage), not pair quality."""
import argparse
import json
import os
import tempfile
import time
from pathlib import Path

from bench.judges import SHARED, load_bench_data
from generation.backends import LocalEngineBackend
from training.curation import CurationConfig, Example, GeneratorAgent, RetrievalIndex, curate_pairs, curate_pairs_by_debate
from training.judges.data import load_labeled
from training.judges.tfidf import train_tfidf_judge

MAX_NEW_TOKENS = 28  # the tiny preset's context is 64 tokens, the prompt included:
MAX_QUERY_CHARS = 14  # so queries are kept short enough for prompt + answer to fit


def generator(checkpoint: Path | None, data_dir: Path, steps: int, workdir: Path):
    from generation.checkpoint import load_checkpoint

    if checkpoint is None:
        from training.trainer import TrainConfig, train_model

        result = train_model(TrainConfig(preset="tiny", data_paths=[data_dir / "sft_data.json"], out_dir=workdir / "gen",
                                         max_steps=steps, progress_bar=False))
        checkpoint = result.checkpoint_dir
    model, tokenizer = load_checkpoint(checkpoint)
    return LocalEngineBackend.from_model(model, tokenizer, max_slots=16), str(checkpoint)


def stage_shares(stats: dict) -> dict:
    generated = stats["candidates_generated"] or 1
    return {"length_limits": round(stats["candidates_rejected_length_limits"] / generated, 3),
            "duplicates": round(stats["candidates_rejected_duplicate"] / generated, 3),
            "prompts_without_margin_pair": round(stats["prompts_without_margin_pair"] / max(1, stats["prompts"]), 3),
            "pairs_dropped_by_length_guard": stats["pairs_dropped_length_guard"]}


def debate_stage_shares(stats: dict) -> dict:
    generated, debated = stats["candidates_generated"] or 1, stats["candidates_debated"] or 1
    return {"length_limits": round(stats["candidates_rejected_length_limits"] / generated, 3),
            "duplicates": round(stats["candidates_rejected_duplicate"] / generated, 3),
            "judge_0": round(stats["judge_rejected"] / debated, 3), "final_0": round(stats["final_rejected"] / debated, 3),
            "overturns": stats["overturns"], "overturns_refused": stats["overturns_refused"],
            "prompts_without_pair": round(stats["prompts_without_pair"] / max(1, stats["prompts"]), 3),
            "pairs_dropped_by_length_guard": stats["pairs_dropped_length_guard"]}


def debate_run(prompts, agents, data, evaluation_queries, config, url: str, model: str, api_key: str = "") -> dict:
    from training.curation import DebatePrinciples
    from training.judges.llm import LLMJudge, LLMJudgeConfig
    from webapp.judges.principles import DEFAULT_RULES, DEFAULT_STRENGTHS, DEFAULT_WEAKNESSES  # plain lists

    principles = DebatePrinciples(tuple(DEFAULT_STRENGTHS), tuple(DEFAULT_WEAKNESSES), tuple(DEFAULT_RULES))
    client = LLMJudge(LLMJudgeConfig(base_url=url, model=model, api_key=api_key), rules=list(DEFAULT_RULES),
                      name="debate")
    index = RetrievalIndex([Example(f"train{i}", p.query, p.chosen) for i, p in enumerate(data.train)])
    result = curate_pairs_by_debate(prompts, agents, client, config, index=index, k=3, principles=principles,
                                    exclude_queries=evaluation_queries, progress_bar=True)
    return {"stats": result.stats, "rejected_share_by_stage": debate_stage_shares(result.stats),
            "pairs_per_prompt": round(result.stats["pairs"] / max(1, result.stats["prompts"]), 3)}


def run(data_dir: Path, checkpoint: Path | None, n_prompts: int, gen_steps: int, min_margin: float,
        debate_url: str = "", debate_model: str = "", debate_api_key: str = "") -> dict:
    data = load_bench_data(data_dir)
    judge = train_tfidf_judge([p.chosen for p in data.train], [p.rejected for p in data.train], name="tfidf-bench")
    evaluation_queries = [p.query for p in data.heldout] + [i.query for i in load_labeled(data_dir / "evaluate_data.json")]
    pool = [line.strip() for line in (data_dir / "random_query.txt").read_text(encoding="utf-8").splitlines() if line.strip()]
    with tempfile.TemporaryDirectory(prefix="bench-curation-") as tmp:
        t = time.perf_counter()
        backend, source = generator(checkpoint, data_dir, gen_steps, Path(tmp))
        generator_seconds = time.perf_counter() - t
        excluded = {q.strip() for q in evaluation_queries}
        prompts = list(dict.fromkeys(q for q in pool if q not in excluded and len(q) <= MAX_QUERY_CHARS))[:n_prompts]
        leaked_in_pool = sum(q in excluded for q in dict.fromkeys(pool[: n_prompts * 4]))
        setups = {
            "anchor_one_agent": [GeneratorAgent("t0.8", backend, n=4, temperature=0.8, max_new_tokens=MAX_NEW_TOKENS)],
            "multi_agent": [GeneratorAgent("t0.7", backend, n=2, temperature=0.7, max_new_tokens=MAX_NEW_TOKENS),
                            GeneratorAgent("t1.2/温馨", backend, n=2, temperature=1.2, max_new_tokens=MAX_NEW_TOKENS, persona="温馨")],
        }
        config = CurationConfig(min_margin=min_margin, max_longer_share=0.5)
        results = {}
        for name, agents in setups.items():
            result = curate_pairs(prompts, agents, {"tfidf": judge}, config, exclude_queries=evaluation_queries,
                                  progress_bar=True)
            results[name] = {"stats": result.stats, "rejected_share_by_stage": stage_shares(result.stats),
                             "pairs_per_prompt": round(result.stats["pairs"] / max(1, result.stats["prompts"]), 3)}
        if debate_url:
            results["debate"] = debate_run(prompts, setups["multi_agent"], data, evaluation_queries, config,
                                           debate_url, debate_model, debate_api_key)
    anchor, multi = results["anchor_one_agent"]["stats"], results["multi_agent"]["stats"]
    return {"generator": source, "generator_train_seconds": round(generator_seconds, 1), "prompts": len(prompts),
            "evaluation_queries_in_first_pool_slice": leaked_in_pool, "min_margin": min_margin,
            "setups": results,
            "ratio_multi_vs_anchor": {
                "pairs_per_minute": round(multi["pairs_per_minute"] / anchor["pairs_per_minute"], 3)
                if anchor["pairs_per_minute"] else None,
                "pairs": round(multi["pairs"] / anchor["pairs"], 3) if anchor["pairs"] else None},
            **({"ratio_debate_vs_anchor": {
                "pairs_per_minute": round(results["debate"]["stats"]["pairs_per_minute"] / anchor["pairs_per_minute"], 3)
                if anchor["pairs_per_minute"] else None}} if debate_url else {})}


def print_table(report: dict) -> None:
    print(f"generator {report['generator']} ({report['generator_train_seconds']} s to train), "
          f"{report['prompts']} prompts, min margin {report['min_margin']}")
    for name, r in report["setups"].items():
        s = r["stats"]
        print(f"  {name:<17} pairs {s['pairs']:>3} ({r['pairs_per_prompt']}/prompt)  {s['pairs_per_minute']} pairs/min  "
              f"{s['seconds']} s  candidates {s['candidates_generated']}  rejected: {r['rejected_share_by_stage']}  "
              f"chosen-longer share {s['chosen_longer_share_before_guard']} -> {s['chosen_longer_share']}")
    print(f"  multi-agent vs anchor: {report['ratio_multi_vs_anchor']}")
    if "ratio_debate_vs_anchor" in report:
        print(f"  debate vs anchor: {report['ratio_debate_vs_anchor']}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=SHARED)
    parser.add_argument("--checkpoint", type=Path, help="a generator checkpoint folder (default: train a tiny one)")
    parser.add_argument("--prompts", type=int, default=30)
    parser.add_argument("--gen-steps", type=int, default=300)
    parser.add_argument("--min-margin", type=float, default=0.3)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--debate-url", default="", help="an OpenAI-compatible endpoint (…/v1) for the debate agents")
    parser.add_argument("--debate-model", default="")
    parser.add_argument("--debate-api-key", default=os.environ.get("JUDGE_LLM_API_KEY", ""))
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    import torch

    torch.set_num_threads(args.threads)
    if args.debate_url and not args.debate_model:
        parser.error("--debate-model: name the model the debate endpoint serves")
    report = run(args.data, args.checkpoint, args.prompts, args.gen_steps, args.min_margin, args.debate_url,
                 args.debate_model, args.debate_api_key)
    print_table(report)
    if args.json:
        print(json.dumps(report, indent=2, ensure_ascii=False))


if __name__ == "__main__":
    main()
