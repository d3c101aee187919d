"""Our serving engine vs transformers' generate() on the same model. ``python -m bench.engine --json [--quick]``

GPU (bench/gpu.sh): ``python -m bench.engine --device cuda --preset base --batches 1,32,256 --out FILE``:
a random model of the preset's shapes in bf16 on the device.

Same model (the newest checkpoint under var/checkpoints or var/runs, else a random model of the
``small`` preset's shapes), same prompts (random token ids), greedy decoding of a fixed number
of new tokens (end token ignored) so both sides emit exactly the same tokens — and we check that
they do. transformers runs twice: as shipped (its per-expert loop; the "generate" columns and
the ``speedup_vs_generate_*`` keys) and with our fast MoE path switched in (``*_fast_moe``). Scenarios: batch 1, 8, 32 x prompt length 16, 512. Each scenario runs both sides
``--repeats`` times interleaved and keeps the best run of each: the machine is shared, so the
best run is the least disturbed one. transformers' ``generate_batch()`` (its continuous
batching) is attempted and its error recorded.
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import signal
import time
from pathlib import Path

import torch
from transformers import DynamicCache, GenerationConfig, LogitsProcessor, LogitsProcessorList

from generation.engine import Engine, SamplingParams
from generation.moe import disable_fast_moe, enable_fast_moe
from training.metrics import emit

REPO = Path(__file__).resolve().parents[1]
VOCAB = 2268  # the corpus tokenizer's size: a random model gets the real embedding / lm_head cost


def find_checkpoint() -> Path | None:
    folders = [p.parent for root in ("var/checkpoints", "var/runs") for p in (REPO / root).glob("**/config.json")]
    folders = [f for f in folders if (f / "model.safetensors").is_file()]
    return max(folders, key=lambda f: f.stat().st_mtime) if folders else None


def load_model(preset: str | None = None, device: str = "cpu"):
    """The newest local checkpoint, else a random small model; with ``preset``, always a random model of its shapes."""
    folder = find_checkpoint() if preset is None else None
    if folder is not None:
        from generation.checkpoint import load_checkpoint

        model, tokenizer = load_checkpoint(folder)
        source = str(folder.relative_to(REPO))
    else:
        from generation.engine.testing import random_model, toy_tokenizer

        tokenizer = toy_tokenizer()
        model = random_model(tokenizer, preset=preset or "small", vocab_size=VOCAB)
        source = f"random {preset or 'small'} preset" + ("" if preset else " (no checkpoint)")
    if device != "cpu":
        model = model.to(device=device, dtype=torch.bfloat16)
        source += f" on {device} in bf16"
    # default rope has no length limit; let 512-token prompts + 128 new tokens fit the engine's context
    model.config.max_position_embeddings = max(model.config.max_position_embeddings, 1024)
    return model, tokenizer, source


class _Clock(LogitsProcessor):
    """Timestamps each decoding step of generate() (called once per new token)."""

    def __init__(self):
        self.times = []

    def __call__(self, input_ids, scores):
        if scores.is_cuda:  # stamp when the step's work is done, as ours does when it reads the tokens
            torch.cuda.synchronize()
        self.times.append(time.perf_counter())
        return scores


def run_transformers(model, prompts, new_tokens, stock_moe=False):
    """generate() as load_checkpoint leaves the model (our fast MoE path), or with transformers' own expert loop."""
    if stock_moe:
        disable_fast_moe(model)
    try:
        return _generate(model, prompts, new_tokens)
    finally:
        enable_fast_moe(model)


def _generate(model, prompts, new_tokens):
    ids = torch.tensor(prompts, device=model.device)
    clock = _Clock()
    start = time.perf_counter()
    with torch.inference_mode():
        out = model.generate(ids, attention_mask=torch.ones_like(ids), max_new_tokens=new_tokens, do_sample=False,
                             eos_token_id=None, pad_token_id=0, logits_processor=LogitsProcessorList([clock]))
    if out.is_cuda:
        torch.cuda.synchronize()
    total = time.perf_counter() - start
    return total, _diffs(clock.times), out[:, ids.shape[1]:].tolist()


def run_engine(engine, prompts, new_tokens):
    params = SamplingParams(max_tokens=new_tokens, temperature=0, ignore_eos=True)
    start = time.perf_counter()
    requests = [engine._submit(p, params, None, None) for p in prompts]
    stamps = []
    while engine.has_unfinished():
        engine.step()
        stamps.append(time.perf_counter())
    total = time.perf_counter() - start
    return total, _diffs(stamps), [r.candidates[0].tokens for r in requests]


# the matrix-multiply kernels of a step: whatever else an engine does, it cannot skip these
MATMUL_OPS = frozenset({"aten::mm", "aten::addmm", "aten::bmm", "aten::baddbmm", "aten::_grouped_mm"})


def matmul_ms_per_step(engine, prompts, new_tokens, steps=16):
    """CPU time of the matrix multiplies in one of our decode steps (profiled after the prefill).

    ``generate()`` multiplies the same tokens by the same projection and expert weights (and
    re-expands the cache on top), so its step time divided by this is about the most an engine
    could beat it by while keeping fp32 weights and exact greedy outputs on this machine: the
    rest of our step (attention glue, norms, routing, sampling) counted as free.
    """
    from torch.profiler import ProfilerActivity, profile

    params = SamplingParams(max_tokens=new_tokens, temperature=0, ignore_eos=True)
    requests = [engine._submit(p, params, None, None) for p in prompts]
    while engine.num_waiting or engine.num_prefilling:
        engine.step()
    steps = min(steps, new_tokens - 2)
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        for _ in range(steps):
            engine.step()
    for request in requests:
        engine.cancel(request.request_id)
    engine.step()
    matmul_us = sum(e.self_cpu_time_total for e in prof.key_averages() if e.key in MATMUL_OPS)
    return matmul_us / 1e3 / steps


def _diffs(times):
    return [b - a for a, b in zip(times, times[1:])]


def _pct(values, q):
    values = sorted(values)
    return values[min(len(values) - 1, int(q * len(values)))] if values else None


def scenario(model, engine, batch, prompt_len, new_tokens, repeats, seed=0):
    g = torch.Generator().manual_seed(seed + batch * 1000 + prompt_len)
    prompts = torch.randint(4, model.config.vocab_size, (batch, prompt_len), generator=g).tolist()
    best = {}
    match = True
    for _ in range(repeats):
        for name, fn in (("ours", lambda: run_engine(engine, prompts, new_tokens)),
                         ("generate", lambda: run_transformers(model, prompts, new_tokens, stock_moe=True)),
                         ("generate_fast_moe", lambda: run_transformers(model, prompts, new_tokens))):
            total, itl, tokens = fn()
            best.setdefault(name + "_tokens", tokens)
            if name not in best or total < best[name][0]:
                best[name] = (total, itl)
        match &= best["ours_tokens"] == best["generate_tokens"] == best["generate_fast_moe_tokens"]
    row = {"batch": batch, "prompt_len": prompt_len, "new_tokens": new_tokens, "outputs_match": match}
    for name in ("ours", "generate", "generate_fast_moe"):
        total, itl = best[name]
        row[f"{name}_tokens_per_s"] = round(batch * new_tokens / total, 1)
        row[f"{name}_itl_p50_ms"] = round(_pct(itl, 0.5) * 1e3, 2)
        row[f"{name}_itl_p99_ms"] = round(_pct(itl, 0.99) * 1e3, 2)
    row["speedup"] = round(row["ours_tokens_per_s"] / row["generate_tokens_per_s"], 2)
    if new_tokens > 4:
        matmul_ms = matmul_ms_per_step(engine, prompts, new_tokens)
        row["ours_matmul_ms_per_step"] = round(matmul_ms, 2)
        row["decode_speedup_ceiling"] = round(row["generate_itl_p50_ms"] / matmul_ms, 2)
    row["speedup_fast_moe"] = round(row["ours_tokens_per_s"] / row["generate_fast_moe_tokens_per_s"], 2)
    return row


def try_generate_batch(model, tokenizer, timeout_s=120):
    """transformers' continuous batching on this architecture: expected to fail in 5.24."""
    def _alarm(*_):
        raise TimeoutError(f"generate_batch did not finish in {timeout_s}s")

    previous = signal.signal(signal.SIGALRM, _alarm)
    signal.alarm(timeout_s)
    try:
        config = GenerationConfig(max_new_tokens=8, do_sample=False, eos_token_id=None, pad_token_id=0)
        results = model.generate_batch(inputs=[[5, 6, 7, 8], [9, 10]], generation_config=config, progress_bar=False)
        # failures are logged and stored per request, not raised
        errors = [r.error for r in results.values() if r.error] if results else ["no results returned"]
        complete = bool(results) and all(len(r.generated_tokens) == 8 for r in results.values())
        if errors or not complete:
            return {"works": False, "error": (errors or ["requests returned incomplete outputs"])[0][:300]}
        return {"works": True, "error": None}
    except Exception as exc:  # recorded, not raised: this is the result
        return {"works": False, "error": f"{type(exc).__name__}: {str(exc)[:300]}"}
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)


def transformers_cache_bytes_per_token(model, length=16):
    cache = DynamicCache(config=model.config)
    with torch.inference_mode():
        model(torch.arange(4, 4 + length, device=model.device)[None], past_key_values=cache, use_cache=True)
    total = sum(t.numel() * t.element_size() for layer in cache.layers for t in (layer.keys, layer.values))
    return total // length


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--quick", action="store_true", help="prompt length 16 only, 32 new tokens, one repeat")
    parser.add_argument("--repeats", type=int, default=None)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--device", choices=("auto", "cpu", "cuda"), default="cpu", help="auto: CUDA when present")
    parser.add_argument("--preset", choices=("tiny", "small", "base"), default=None,
                        help="a random model of this preset's shapes (default: the newest checkpoint, else small)")
    parser.add_argument("--batches", default="1,8,32", help="comma-separated batch sizes")
    parser.add_argument("--prompt-lens", default=None, help="comma-separated prompt lengths (default 16,512; --quick 16)")
    parser.add_argument("--new-tokens", type=int, default=None, help="default 128 (--quick 32)")
    parser.add_argument("--generate-batch-timeout", type=int, default=120, help="seconds; 0 skips generate_batch()")
    parser.add_argument("--out", help="also write the JSON report to this file")
    args = parser.parse_args(argv)
    new_tokens = args.new_tokens or (32 if args.quick else 128)
    prompt_lens = tuple(int(x) for x in args.prompt_lens.split(",")) if args.prompt_lens else ((16,) if args.quick else (16, 512))
    batches = tuple(int(x) for x in args.batches.split(","))
    repeats = args.repeats or (1 if args.quick else 2)
    device = "cuda" if args.device == "cuda" or (args.device == "auto" and torch.cuda.is_available()) else "cpu"
    if device == "cuda" and not torch.cuda.is_available():
        raise SystemExit("--device cuda: no CUDA device here")

    # the machine is shared: one thread per process keeps both sides out of each other's barriers
    torch.set_num_threads(args.threads)
    model, tokenizer, source = load_model(args.preset, device)
    model.config.max_position_embeddings = max(model.config.max_position_embeddings, max(prompt_lens) + new_tokens)
    engine = Engine(model, tokenizer, max_slots=max(32, max(batches)), max_len=max(prompt_lens) + new_tokens)
    run_engine(engine, [[5, 6, 7]], 4)  # warm-up (lazy inits on both sides)
    run_transformers(model, [[5, 6, 7]], 4)
    rows = [scenario(model, engine, b, p, new_tokens, repeats) for p in prompt_lens for b in batches]
    peak_rss_mb = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)  # before generate_batch's cache
    summary = {
        "model": source,
        "parameters": sum(p.numel() for p in model.parameters()),
        "torch_threads": torch.get_num_threads(),
        "load_average_1min": round(os.getloadavg()[0], 2),
        "scenarios": rows,
        "device": torch.cuda.get_device_name() if device == "cuda" else "cpu",
        "peak_gpu_memory_mb": round(torch.cuda.max_memory_allocated() / 2**20, 1) if device == "cuda" else None,
        "generate_batch": (try_generate_batch(model, tokenizer, args.generate_batch_timeout)
                           if args.generate_batch_timeout else {"works": None, "error": "skipped"}),
        "kv_cache_bytes_per_token": {"ours": engine.cache.bytes_per_token,
                                     "transformers_dynamic_cache": transformers_cache_bytes_per_token(model)},
        "ours_cache_preallocated_bytes": engine.cache.nbytes,
        "peak_rss_mb": peak_rss_mb,
    }
    for row in rows:
        summary[f"speedup_vs_generate_batch{row['batch']}_prompt{row['prompt_len']}"] = row["speedup"]
        summary[f"speedup_vs_generate_fast_moe_batch{row['batch']}_prompt{row['prompt_len']}"] = row["speedup_fast_moe"]
    for b in batches:  # headline: the first prompt length
        summary[f"speedup_vs_generate_batch{b}"] = next(r["speedup"] for r in rows if r["batch"] == b)
        summary[f"speedup_vs_generate_fast_moe_batch{b}"] = next(r["speedup_fast_moe"] for r in rows if r["batch"] == b)
    summary["all_outputs_match"] = all(r["outputs_match"] for r in rows)
    for b in batches:  # the decode ceiling (see matmul_ms_per_step) for the headline prompt length
        row = next(r for r in rows if r["batch"] == b)
        if "decode_speedup_ceiling" in row:
            summary[f"decode_speedup_ceiling_batch{b}"] = row["decode_speedup_ceiling"]
    lines = [f"model: {source}; threads {summary['torch_threads']}; load {summary['load_average_1min']}",
             "generate = transformers as shipped (its expert loop); +fastMoE = generate() with our MoE path",
             f"{'batch':>5} {'prompt':>6} {'ours tok/s':>10} {'generate':>9} {'speedup':>7} {'+fastMoE':>9} {'speedup':>7} "
             f"{'ours p50/p99 ms':>16} {'gen p50/p99 ms':>15} match {'matmul ms':>9} ceiling"]
    for r in rows:
        lines.append(f"{r['batch']:>5} {r['prompt_len']:>6} {r['ours_tokens_per_s']:>10} {r['generate_tokens_per_s']:>9} "
                     f"{r['speedup']:>7} {r['generate_fast_moe_tokens_per_s']:>9} {r['speedup_fast_moe']:>7} "
                     f"{r['ours_itl_p50_ms']:>7}/{r['ours_itl_p99_ms']:<8} "
                     f"{r['generate_itl_p50_ms']:>7}/{r['generate_itl_p99_ms']:<7} {r['outputs_match']!s:>5} "
                     f"{r.get('ours_matmul_ms_per_step', '-'):>9} {r.get('decode_speedup_ceiling', '-'):>7}")
    lines.append("ceiling = generate()'s decode step / the matrix multiplies alone of ours: the most any engine could "
                 "win at fp32 with exact greedy outputs here")
    lines.append(f"generate_batch: {summary['generate_batch']}")
    lines.append(f"KV bytes/token: {summary['kv_cache_bytes_per_token']}; peak RSS {summary['peak_rss_mb']} MB")
    if args.out:
        Path(args.out).write_text(json.dumps(summary, indent=2))
    emit(summary, "\n".join(lines), args.json)


if __name__ == "__main__":
    main()
