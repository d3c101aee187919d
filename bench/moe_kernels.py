"""MoE expert-layer timings, side by side in one run: transformers' loop (the anchor) vs ours.

    python -m bench.moe_kernels [--json] [--threads N] [--repeats N] [--quick] [--device auto|cpu|cuda] [--preset small|base]

Expert shapes of a preset (``small`` by default: hidden 256, expert intermediate 512, 16 real + 8
zero experts, top-4; ``base``: hidden 1024, 512, 64 + 32, top-8) for decode-like (T = 8..32, and
256 with ``base``) and prefill-like (T = 512..2048) token counts. It times, for inference (no
grad) and for training (forward + backward):

* ``transformers_loop``: stock ``LongcatFlashExperts.forward``
* ``torch_fast``: :func:`kernels.moe.moe_forward_torch` (torch._grouped_mm when it works here)
* ``torch_fast_sliced``: the same with the per-expert slice loop instead of grouped_mm

Ratios are loop time / our time (> 1 means faster than the loop). On CUDA it also times the
Triton fused kernel (inference) and reports its achieved memory bandwidth (bytes it must move at
the least / time) and TFLOP/s (expert GEMM flops of the real slots / time), for every inference
row.
"""
from __future__ import annotations

import argparse
import json
import platform
import statistics
import time

import torch
from transformers import LongcatFlashConfig

from generation.presets import get_preset
from transformers.models.longcat_flash.modeling_longcat_flash import LongcatFlashExperts

from kernels.moe import _probe_grouped_mm, moe_forward_torch, triton_available

SHAPE = dict(hidden_size=256, expert_ffn_hidden_size=512, n_routed_experts=16, zero_expert_num=8, moe_topk=4)
DECODE_T = (8, 16, 32)
PREFILL_T = (512, 1024, 2048)
SHAPE_KEYS = ("hidden_size", "expert_ffn_hidden_size", "n_routed_experts", "zero_expert_num", "moe_topk")


def use_preset_shape(name: str) -> None:
    """Time the expert shapes of a preset (``small`` keeps the historical SHAPE above)."""
    global DECODE_T
    if name == "small":
        return
    model = get_preset(name).model
    SHAPE.update({key: model[key] for key in SHAPE_KEYS})
    DECODE_T = (8, 32, 256)  # 256: the engine's large decode batch on a GPU


def make_experts(device, dtype) -> LongcatFlashExperts:
    config = LongcatFlashConfig(**SHAPE, hidden_act="silu")
    experts = LongcatFlashExperts(config).to(device=device, dtype=dtype)
    with torch.no_grad():
        experts.gate_up_proj.normal_(0.0, SHAPE["hidden_size"] ** -0.5)
        experts.down_proj.normal_(0.0, SHAPE["expert_ffn_hidden_size"] ** -0.5)
    return experts


def make_routing(T: int, device, seed: int = 0):
    """Softmax-router-like picks over real + zero experts (about K*16/24 real picks per token)."""
    g = torch.Generator().manual_seed(seed)
    n_total = SHAPE["n_routed_experts"] + SHAPE["zero_expert_num"]
    scores = torch.randn(T, n_total, generator=g).softmax(-1)
    weights, index = scores.topk(SHAPE["moe_topk"], dim=-1)
    return index.to(device), (weights * 4.0).to(device)


def synchronize(device):
    if device.type == "cuda":
        torch.cuda.synchronize()


def time_call(fn, device, repeats: int, warmup: int = 2) -> float:
    """Median wall time in ms."""
    for _ in range(warmup):
        fn()
    synchronize(device)
    samples = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        synchronize(device)
        samples.append((time.perf_counter() - start) * 1e3)
    return statistics.median(samples)


def implementations(experts: LongcatFlashExperts, device):
    n_real = experts.num_routed_experts

    def loop(x, idx, w):
        return LongcatFlashExperts.forward(experts, x, idx, w)

    def fast(x, idx, w):
        return moe_forward_torch(x, experts.gate_up_proj, experts.down_proj, idx, w, n_real)

    def sliced(x, idx, w):
        return moe_forward_torch(x, experts.gate_up_proj, experts.down_proj, idx, w, n_real, use_grouped_mm=False)

    impls = {"transformers_loop": loop, "torch_fast": fast, "torch_fast_sliced": sliced}
    if device.type == "cuda" and triton_available():
        from kernels.moe_triton import moe_forward_triton

        impls["triton_fused"] = lambda x, idx, w: moe_forward_triton(
            x, experts.gate_up_proj, experts.down_proj, idx, w, n_real, "silu"
        )
    return impls


def moved_bytes(experts, T, index) -> int:
    """Minimum HBM traffic of one fused forward: weights of the experts hit, x in, out, slot buffers."""
    n_real = experts.num_routed_experts
    hit = torch.unique(index[index < n_real]).numel()
    H, I = SHAPE["hidden_size"], SHAPE["expert_ffn_hidden_size"]
    elem = experts.gate_up_proj.element_size()
    real_slots = int((index < n_real).sum())
    weights = hit * 3 * I * H * elem
    activations = 2 * T * H * elem + real_slots * (H * elem + 2 * I * elem) + 2 * T * SHAPE["moe_topk"] * H * 4
    return weights + activations


def gemm_flops(experts, index) -> int:
    """Expert GEMM flops of one forward: gate_up (2I x H) and down (H x I) per real slot."""
    real_slots = int((index < experts.num_routed_experts).sum())
    H, I = SHAPE["hidden_size"], SHAPE["expert_ffn_hidden_size"]
    return real_slots * 2 * (2 * I * H + H * I)


def bench_one(impls, experts, T, device, dtype, repeats, train: bool):
    index, weights = make_routing(T, device, seed=T)
    x = torch.randn(T, SHAPE["hidden_size"], device=device, dtype=dtype)
    rows = {}
    for name, fn in impls.items():
        if train and name == "triton_fused":
            continue  # forward-only kernel

        def run(fn=fn):
            if not train:
                with torch.no_grad():
                    return fn(x, index, weights)
            experts.zero_grad(set_to_none=True)
            xi = x.detach().requires_grad_()
            fn(xi, index, weights).square().mean().backward()

        rows[name] = time_call(run, device, repeats)
    results = []
    anchor = rows["transformers_loop"]
    for name, ms in rows.items():
        row = dict(T=T, mode="train" if train else "infer", impl=name, ms=round(ms, 4),
                   speedup_vs_loop=round(anchor / ms, 3))
        if not train:
            row["achieved_GBps"] = round(moved_bytes(experts, T, index) / (ms * 1e-3) / 1e9, 1)
            row["achieved_TFLOPs"] = round(gemm_flops(experts, index) / (ms * 1e-3) / 1e12, 3)
        results.append(row)
    return results


def run(args) -> dict:
    wanted = "cpu" if args.cpu else args.device
    if wanted == "cuda" and not torch.cuda.is_available():
        raise SystemExit("--device cuda: no CUDA device here")
    device = torch.device("cuda" if wanted != "cpu" and torch.cuda.is_available() else "cpu")
    use_preset_shape(args.preset)
    dtype = torch.bfloat16 if device.type == "cuda" else torch.float32
    if device.type == "cpu":
        torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    experts = make_experts(device, dtype)
    impls = implementations(experts, device)
    decode, prefill = (DECODE_T[:1], PREFILL_T[:1]) if args.quick else (DECODE_T, PREFILL_T)
    results = []
    for phase, sizes in (("decode", decode), ("prefill", prefill)):
        for T in sizes:
            for train in (False, True):
                for row in bench_one(impls, experts, T, device, dtype, args.repeats, train):
                    results.append(dict(phase=phase, **row))
    return {
        "preset": args.preset,
        "shape": SHAPE,
        "device": torch.cuda.get_device_name() if device.type == "cuda" else platform.processor() or "cpu",
        "dtype": str(dtype),
        "threads": torch.get_num_threads() if device.type == "cpu" else None,
        "torch": torch.__version__,
        "torch_fast_uses_grouped_mm": _probe_grouped_mm(device, dtype),
        "repeats": args.repeats,
        "anchor": "transformers_loop",
        "results": results,
    }


def print_table(report: dict) -> None:
    print(f"{report['device']} {report['dtype']} threads={report['threads']} torch {report['torch']}")
    print(f"{'phase':8} {'T':>5} {'mode':6} {'impl':20} {'ms':>10} {'x vs loop':>10}")
    for r in report["results"]:
        extra = f"  {r['achieved_GBps']} GB/s {r['achieved_TFLOPs']} TFLOP/s" if "achieved_GBps" in r else ""
        print(f"{r['phase']:8} {r['T']:>5} {r['mode']:6} {r['impl']:20} {r['ms']:>10.3f} {r['speedup_vs_loop']:>10.2f}{extra}")


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--json", action="store_true", help="print one JSON document")
    parser.add_argument("--threads", type=int, default=1, help="CPU threads (default 1: shared machine)")
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--quick", action="store_true", help="one decode and one prefill size")
    parser.add_argument("--cpu", action="store_true", help="same as --device cpu")
    parser.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto", help="auto: CUDA when present")
    parser.add_argument("--preset", choices=("small", "base"), default="small", help="expert shapes to time")
    parser.add_argument("--out", help="also write the JSON report to this file")
    args = parser.parse_args(argv)
    report = run(args)
    if args.out:
        with open(args.out, "w") as f:
            json.dump(report, f, indent=2)
    if args.json:
        print(json.dumps(report, indent=2))
    else:
        print_table(report)


if __name__ == "__main__":
    main()
