"""Multi-agent rejection sampling: throughput (pairs per minute) and where candidates are rejected.

    python -m bench.curation --json [--checkpoint DIR] [--prompts 30] [--gen-steps 300]

Same prompts, 4 candidates per prompt, the in-process engine and the TF-IDF judge: anchor one agent
(T 0.8) vs two agents (T 0.7 and 1.2 + persona, 2 each); with --debate-local (the bench's own
checkpoint served through the app's OpenAI-compatible API on a private stack, context raised to
DEBATE_CONTEXT, answers capped at DEBATE_MAX_TOKENS) or --debate-url/--debate-model, the debate
pipeline (training.curation.debate) too. Prompts: random_query.txt minus every evaluation and
held-out query. Without --checkpoint a tiny generator is trained first, so the figures measure the
machinery (throughput, rejections per stage), not pair quality; a small local judge means nothing.
"""
import argparse
import json
import os
import shutil
import tempfile
import time
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path

from bench.judges import SHARED, load_bench_data
from generation.backends import LocalEngineBackend
from training.curation import CurationConfig, Example, GeneratorAgent, RetrievalIndex, curate_pairs, curate_pairs_by_debate
from training.judges.data import load_labeled
from training.judges.tfidf import train_tfidf_judge

MAX_NEW_TOKENS = 28  # the tiny preset's context is 64 tokens, the prompt included:
MAX_QUERY_CHARS = 14  # so queries are kept short enough for prompt + answer to fit
DEBATE_CONTEXT = 1024  # tokens: the longest debate request (reflect) is ~700 with DEBATE_MAX_TOKENS answers
DEBATE_MAX_TOKENS = 160  # per agent answer
LOCAL_MODEL = "zhufu"  # the API's alias of its active checkpoint


def generator(checkpoint: Path | None, data_dir: Path, steps: int, workdir: Path):
    """(backend, checkpoint folder): the given checkpoint, or a tiny one trained on sft_data first."""
    if checkpoint is None:
        from training.trainer import TrainConfig, train_model

        result = train_model(TrainConfig(preset="tiny", data_paths=[data_dir / "sft_data.json"], out_dir=workdir / "gen",
                                         max_steps=steps, progress_bar=False))
        checkpoint = result.checkpoint_dir
    return local_backend(Path(checkpoint)), Path(checkpoint)


def local_backend(checkpoint: Path, context: int | None = None) -> LocalEngineBackend:
    """The in-process engine on `checkpoint`; `context` raises max_position_embeddings (default rope)."""
    from generation.checkpoint import load_checkpoint

    model, tokenizer = load_checkpoint(checkpoint)
    if context:
        model.config.max_position_embeddings = max(model.config.max_position_embeddings, context)
    return LocalEngineBackend.from_model(model, tokenizer, max_slots=16)


def long_context_copy(checkpoint: Path, folder: Path, context: int) -> Path:
    """A copy of the checkpoint whose config.json allows `context` positions (what the server loads)."""
    shutil.copytree(checkpoint, folder)
    config = json.loads((folder / "config.json").read_text(encoding="utf-8"))
    config["max_position_embeddings"] = max(config["max_position_embeddings"], context)
    (folder / "config.json").write_text(json.dumps(config, indent=2), encoding="utf-8")
    return folder


@contextmanager
def local_endpoint(checkpoint: Path, workdir: Path, progress=print):
    """(base_url, model, api_key) of the app's own OpenAI-compatible API serving `checkpoint` (with the
    debate's context) on a private stack: PostgreSQL, Redis and uvicorn, stopped on exit."""
    from bench.stack import Stack

    served = long_context_copy(checkpoint, workdir / "served-checkpoint", DEBATE_CONTEXT)
    stack = Stack(API_RATE_LIMIT_PER_MINUTE="1000000", ENGINE_MAX_SLOTS="16")
    try:
        progress(f"local endpoint: private stack under {stack.root}, web :{stack.web_port}")
        stack.start_services()
        secret = stack.shell("\n".join([
            "import json",
            "from django.contrib.auth import get_user_model",
            "from webapp.api.keys import create_api_key",
            "from webapp.checkpoints.services import promote_checkpoint, register_checkpoint",
            f"path = {str(served)!r}",
            "config = json.load(open(path + '/config.json'))",
            "promote_checkpoint(register_checkpoint(name='debate-bench', run_name='debate-bench', path=path, "
            "preset='bench', model_config=config, data={}, metrics={}))",
            "print(create_api_key(get_user_model().objects.create_user('debate-bench'), name='bench')[1])",
        ])).strip().splitlines()[-1]
        stack.start("web")
        stack.wait_for_web()
        warm_up(f"{stack.web_url}/v1", secret)
        yield f"{stack.web_url}/v1", LOCAL_MODEL, secret
    finally:
        stack.close()


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


def warm_up(base_url: str, api_key: str) -> None:
    """One request first, so the server's engine load is not counted as debate time."""
    import requests

    reply = requests.post(f"{base_url}/chat/completions", headers={"Authorization": f"Bearer {api_key}"}, timeout=300,
                          json={"model": LOCAL_MODEL, "messages": [{"role": "user", "content": "生日祝福"}], "max_tokens": 8})
    reply.raise_for_status()


def debate_run(prompts, agents, data, evaluation_queries, config, url: str, model: str, api_key: str = "",
               temperature: float = 0.0) -> dict:
    from training.curation import DebatePrinciples
    from training.judges.llm import LLMJudge, LLMJudgeConfig
    from webapp.judges.principles import DEFAULT_RULES, DEFAULT_STRENGTHS, DEFAULT_WEAKNESSES  # plain lists

    principles = DebatePrinciples(tuple(DEFAULT_STRENGTHS), tuple(DEFAULT_WEAKNESSES), tuple(DEFAULT_RULES))
    client = LLMJudge(LLMJudgeConfig(base_url=url, model=model, api_key=api_key, max_tokens=DEBATE_MAX_TOKENS,
                                     temperature=temperature, timeout=300), rules=list(DEFAULT_RULES), name="debate")
    index = RetrievalIndex([Example(f"train{i}", p.query, p.chosen) for i, p in enumerate(data.train)])
    result = curate_pairs_by_debate(prompts, agents, client, config, index=index, k=3, principles=principles,
                                    exclude_queries=evaluation_queries, progress_bar=True)
    stats = result.stats
    requests = sum(stats["llm_requests"].values())
    return {"endpoint": {"base_url": url, "model": model, "temperature": temperature}, "stats": stats,
            "rejected_share_by_stage": debate_stage_shares(stats),
            "pairs_per_prompt": round(stats["pairs"] / max(1, stats["prompts"]), 3),
            "candidates_per_minute": round(stats["candidates_debated"] / stats["seconds"] * 60, 2)
            if stats["seconds"] else None,
            "seconds_per_llm_request": round(stats["seconds"] / requests, 2) if requests else None}


def run(data_dir: Path, checkpoint: Path | None, n_prompts: int, gen_steps: int, min_margin: float,
        debate_url: str = "", debate_model: str = "", debate_api_key: str = "", debate_local: bool = False,
        debate_prompts: int | None = None, debate_temperature: float = 0.0) -> dict:
    data = load_bench_data(data_dir)
    judge = train_tfidf_judge([p.chosen for p in data.train], [p.rejected for p in data.train], name="tfidf-bench")
    evaluation_queries = [p.query for p in data.heldout] + [i.query for i in load_labeled(data_dir / "evaluate_data.json")]
    pool = [line.strip() for line in (data_dir / "random_query.txt").read_text(encoding="utf-8").splitlines() if line.strip()]
    with tempfile.TemporaryDirectory(prefix="bench-curation-") as tmp:
        t = time.perf_counter()
        backend, checkpoint = generator(checkpoint, data_dir, gen_steps, Path(tmp))
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
        if debate_url or debate_local:
            # the same two agents, on an engine whose context holds the retrieved few-shot examples
            long_backend = local_backend(checkpoint, DEBATE_CONTEXT)
            agents = [replace(agent, backend=long_backend) for agent in setups["multi_agent"]]
            debate_args = (prompts[:debate_prompts], agents, data, evaluation_queries, config)
            if debate_local:
                with local_endpoint(checkpoint, Path(tmp)) as endpoint:
                    results["debate"] = debate_run(*debate_args, *endpoint, temperature=debate_temperature)
            else:
                results["debate"] = debate_run(*debate_args, debate_url, debate_model, debate_api_key,
                                               temperature=debate_temperature)
    anchor, multi = results["anchor_one_agent"]["stats"], results["multi_agent"]["stats"]
    return {"generator": str(checkpoint), "generator_train_seconds": round(generator_seconds, 1), "prompts": len(prompts),
            "evaluation_queries_in_first_pool_slice": leaked_in_pool, "min_margin": min_margin,
            "setups": results,
            "ratio_multi_vs_anchor": {
                "pairs_per_minute": round(multi["pairs_per_minute"] / anchor["pairs_per_minute"], 3)
                if anchor["pairs_per_minute"] else None,
                "pairs": round(multi["pairs"] / anchor["pairs"], 3) if anchor["pairs"] else None},
            **({"ratio_debate_vs_anchor": {
                "pairs_per_minute": round(results["debate"]["stats"]["pairs_per_minute"] / anchor["pairs_per_minute"], 3)
                if anchor["pairs_per_minute"] else None}} if "debate" in results else {})}


def print_table(report: dict) -> None:
    print(f"generator {report['generator']} ({report['generator_train_seconds']} s to train), "
          f"{report['prompts']} prompts, min margin {report['min_margin']}")
    for name, r in report["setups"].items():
        s = r["stats"]
        print(f"  {name:<17} {s['prompts']} prompts, pairs {s['pairs']:>3} ({r['pairs_per_prompt']}/prompt)  "
              f"{s['pairs_per_minute']} pairs/min  {s['seconds']} s  candidates {s['candidates_generated']}  "
              f"rejected: {r['rejected_share_by_stage']}  "
              f"chosen-longer share {s['chosen_longer_share_before_guard']} -> {s['chosen_longer_share']}")
        if name == "debate":
            print(f"  {'':<17} {r['candidates_per_minute']} candidates/min, {r['seconds_per_llm_request']} s per "
                  f"LLM request, requests {s['llm_requests']}, usage {s['llm_usage']}")
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
    parser.add_argument("--debate-local", action="store_true",
                        help="debate on the app's own API serving the bench's generator (a private stack)")
    parser.add_argument("--debate-prompts", type=int, help="only the first N prompts go through the debate (default all)")
    parser.add_argument("--debate-temperature", type=float, default=0.0,
                        help="the debate agents' sampling temperature (a tiny local model at 0 gives every candidate "
                             "the same verdict, so no pair forms)")
    parser.add_argument("--debate-url", default="", help="an OpenAI-compatible endpoint (…/v1) for the debate agents")
    parser.add_argument("--debate-model", default="")
    parser.add_argument("--debate-api-key", default=os.environ.get("JUDGE_LLM_API_KEY", ""))
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    import torch

    torch.set_num_threads(args.threads)
    if args.debate_url and not args.debate_model:
        parser.error("--debate-model: name the model the debate endpoint serves")
    if args.debate_url and args.debate_local:
        parser.error("--debate-local: give either it or --debate-url, not both")
    if args.debate_prompts is not None and args.debate_prompts < 1:
        parser.error("--debate-prompts: at least 1")
    report = run(args.data, args.checkpoint, args.prompts, args.gen_steps, args.min_margin, args.debate_url,
                 args.debate_model, args.debate_api_key, args.debate_local, args.debate_prompts,
                 args.debate_temperature)
    print_table(report)
    if args.json:
        print(json.dumps(report, indent=2, ensure_ascii=False))


if __name__ == "__main__":
    main()
