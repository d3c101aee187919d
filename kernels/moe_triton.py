"""Fused MoE forward in Triton: the twin of :func:`kernels.moe.moe_forward_torch` (same signature).

Forward only (inference). Three launches:

1. ``_gate_up_act_kernel``: per block of ``BLOCK_M`` slots of one expert (block-aligned sort, see
   :func:`kernels.moe.align_by_expert`; zero experts and idle experts get no block), gathers the
   token rows and computes ``act(x @ Wg^T) * (x @ Wu^T)`` with both accumulators in one K loop.
2. ``_down_kernel``: ``h @ Wd^T`` times the slot's routing weight, written once per slot to a
   ``[T*K, H]`` fp32 buffer (no atomics, so the result is deterministic).
3. ``_combine_kernel``: per token, sums its K slots; an identity-expert slot adds ``w * x``
   directly, so zero experts cost one multiply-add and never touch a GEMM.

Under ``TRITON_INTERPRET=1`` the kernels run on CPU tensors (tests). The interpreter computes
bf16 arithmetic and bf16 ``tl.dot`` wrongly (numpy has no bf16), so there tiles are upcast to
fp32 right after loading (``UPCAST``, set for CPU tensors and fp32 inputs); on a GPU the dot runs on the native dtype with fp32
accumulation. Imports only torch and triton.
"""
from __future__ import annotations

import torch
import triton
import triton.language as tl

from .moe import align_by_expert

__all__ = ["moe_forward_triton", "ACT_CODES"]

ACT_CODES = {"silu": 0, "swish": 0, "gelu": 1, "gelu_new": 2, "gelu_pytorch_tanh": 2, "relu": 3}


@triton.jit
def _activation(x, ACT: tl.constexpr):
    if ACT == 0:
        y = x * tl.sigmoid(x)
    elif ACT == 1:
        y = 0.5 * x * (1.0 + tl.math.erf(x * 0.7071067811865476))
    elif ACT == 2:
        # tanh(z) = 2 sigmoid(2z) - 1 (no tl.tanh in every Triton version)
        z = 0.7978845608028654 * (x + 0.044715 * x * x * x)
        y = 0.5 * x * (1.0 + (2.0 * tl.sigmoid(2.0 * z) - 1.0))
    else:
        y = tl.maximum(x, 0.0)
    return y


@triton.jit
def _gate_up_act_kernel(
    x_ptr, w_ptr, h_ptr, sorted_slots_ptr, block_expert_ptr,
    num_slots, H, I,
    stride_xt, stride_xh,
    stride_we, stride_wn, stride_wh,
    stride_hr, stride_hi,
    TOP_K: tl.constexpr, ACT: tl.constexpr, UPCAST: tl.constexpr, PRECISION: tl.constexpr,
    BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_K: tl.constexpr,
):
    pid_m = tl.program_id(0)
    pid_n = tl.program_id(1)
    expert = tl.load(block_expert_ptr + pid_m).to(tl.int64)
    rows = pid_m * BLOCK_M + tl.arange(0, BLOCK_M)
    slots = tl.load(sorted_slots_ptr + rows)
    valid = slots < num_slots
    tokens = tl.where(valid, slots // TOP_K, 0).to(tl.int64)
    cols = pid_n * BLOCK_N + tl.arange(0, BLOCK_N)
    col_ok = cols < I
    w_base = w_ptr + expert * stride_we
    acc_gate = tl.zeros((BLOCK_M, BLOCK_N), dtype=tl.float32)
    acc_up = tl.zeros((BLOCK_M, BLOCK_N), dtype=tl.float32)
    for k0 in range(0, H, BLOCK_K):
        ks = k0 + tl.arange(0, BLOCK_K)
        k_ok = ks < H
        x = tl.load(x_ptr + tokens[:, None] * stride_xt + ks[None, :] * stride_xh,
                    mask=valid[:, None] & k_ok[None, :], other=0.0)
        w_mask = k_ok[:, None] & col_ok[None, :]
        # [BLOCK_K, BLOCK_N] tiles of W^T: gate rows are [0, I), up rows [I, 2I)
        wg = tl.load(w_base + cols[None, :] * stride_wn + ks[:, None] * stride_wh, mask=w_mask, other=0.0)
        wu = tl.load(w_base + (cols[None, :] + I) * stride_wn + ks[:, None] * stride_wh, mask=w_mask, other=0.0)
        if UPCAST:
            x = x.to(tl.float32)
            wg = wg.to(tl.float32)
            wu = wu.to(tl.float32)
        acc_gate = tl.dot(x, wg, acc_gate, input_precision=PRECISION)
        acc_up = tl.dot(x, wu, acc_up, input_precision=PRECISION)
    h = _activation(acc_gate, ACT) * acc_up
    tl.store(h_ptr + rows[:, None] * stride_hr + cols[None, :] * stride_hi,
             h.to(h_ptr.dtype.element_ty), mask=valid[:, None] & col_ok[None, :])


@triton.jit
def _down_kernel(
    h_ptr, w_ptr, slot_out_ptr, sorted_slots_ptr, block_expert_ptr, weight_ptr,
    num_slots, H, I,
    stride_hr, stride_hi,
    stride_we, stride_wn, stride_wi,
    stride_os, stride_oh,
    UPCAST: tl.constexpr, PRECISION: tl.constexpr,
    BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_K: tl.constexpr,
):
    pid_m = tl.program_id(0)
    pid_n = tl.program_id(1)
    expert = tl.load(block_expert_ptr + pid_m).to(tl.int64)
    rows = pid_m * BLOCK_M + tl.arange(0, BLOCK_M)
    slots = tl.load(sorted_slots_ptr + rows)
    valid = slots < num_slots
    cols = pid_n * BLOCK_N + tl.arange(0, BLOCK_N)
    col_ok = cols < H
    w_base = w_ptr + expert * stride_we
    acc = tl.zeros((BLOCK_M, BLOCK_N), dtype=tl.float32)
    for k0 in range(0, I, BLOCK_K):
        ks = k0 + tl.arange(0, BLOCK_K)
        k_ok = ks < I
        h = tl.load(h_ptr + rows[:, None] * stride_hr + ks[None, :] * stride_hi,
                    mask=valid[:, None] & k_ok[None, :], other=0.0)
        # down_proj[e] is [H, I]; the tile is its transpose [BLOCK_K (I), BLOCK_N (H)]
        w = tl.load(w_base + cols[None, :] * stride_wn + ks[:, None] * stride_wi,
                    mask=k_ok[:, None] & col_ok[None, :], other=0.0)
        if UPCAST:
            h = h.to(tl.float32)
            w = w.to(tl.float32)
        acc = tl.dot(h, w, acc, input_precision=PRECISION)
    safe_slots = tl.where(valid, slots, 0).to(tl.int64)
    route_w = tl.load(weight_ptr + safe_slots, mask=valid, other=0.0).to(tl.float32)
    acc = acc * route_w[:, None]
    tl.store(slot_out_ptr + safe_slots[:, None] * stride_os + cols[None, :] * stride_oh,
             acc, mask=valid[:, None] & col_ok[None, :])


@triton.jit
def _combine_kernel(
    x_ptr, slot_out_ptr, index_ptr, weight_ptr, out_ptr,
    H, num_real,
    stride_xt, stride_xh, stride_os, stride_oh, stride_ot, stride_oc,
    TOP_K: tl.constexpr, BLOCK_H: tl.constexpr,
):
    t = tl.program_id(0).to(tl.int64)
    cols = tl.program_id(1) * BLOCK_H + tl.arange(0, BLOCK_H)
    ok = cols < H
    x = tl.load(x_ptr + t * stride_xt + cols * stride_xh, mask=ok, other=0.0).to(tl.float32)
    acc = tl.zeros((BLOCK_H,), dtype=tl.float32)
    for k in tl.static_range(TOP_K):
        slot = t * TOP_K + k
        expert = tl.load(index_ptr + slot)
        w = tl.load(weight_ptr + slot).to(tl.float32)
        # a block-shaped condition: the interpreter rejects a scalar bool inside a mask
        is_real = (tl.zeros((BLOCK_H,), dtype=tl.int64) + expert) < num_real
        y = tl.load(slot_out_ptr + slot * stride_os + cols * stride_oh, mask=ok & is_real, other=0.0)
        # identity expert: w * x, fused here instead of a GEMM
        acc += tl.where(is_real, y, w * x)
    tl.store(out_ptr + t * stride_ot + cols * stride_oc, acc.to(out_ptr.dtype.element_ty), mask=ok)


def _act_code(act) -> int:
    if not isinstance(act, str) or act not in ACT_CODES:
        raise ValueError(f"the Triton MoE kernel supports activations {sorted(ACT_CODES)}, got {act!r}")
    return ACT_CODES[act]


def pick_block_m(num_slots: int, num_real_experts: int) -> int:
    """Small blocks for decode (few rows per expert, less padding), larger ones for prefill."""
    rows_per_expert = num_slots / max(num_real_experts, 1)
    if rows_per_expert <= 16:
        return 16
    return 32 if rows_per_expert <= 64 else 64


def moe_forward_triton(hidden, gate_up_proj, down_proj, topk_index, topk_weights, num_real_experts, act="silu",
                       block_m: int | None = None, block_n: int = 64, block_k: int = 32):
    """Fused MoE forward (no autograd). Same contract as :func:`kernels.moe.moe_forward_torch`."""
    T, H = hidden.shape
    K = topk_index.shape[1]
    act_code = _act_code(act)
    topk_index = topk_index.contiguous()
    topk_weights = topk_weights.contiguous()
    out = torch.empty_like(hidden)
    if T == 0:
        return out
    # CPU tensors only reach a Triton kernel through the interpreter
    upcast = not hidden.is_cuda or hidden.dtype == torch.float32
    # fp32 inputs: exact fp32 products, not TF32, to match the torch path
    precision = "ieee" if upcast else None
    slot_out = torch.empty((T * K, H), dtype=torch.float32, device=hidden.device)
    if num_real_experts > 0 and gate_up_proj is not None:
        I = down_proj.shape[2]
        bm = block_m or pick_block_m(T * K, num_real_experts)
        sorted_slots, block_expert = align_by_expert(topk_index, num_real_experts, bm)
        num_blocks = block_expert.numel()
        if num_blocks:
            h = torch.empty((num_blocks * bm, I), dtype=hidden.dtype, device=hidden.device)
            _gate_up_act_kernel[(num_blocks, triton.cdiv(I, block_n))](
                hidden, gate_up_proj, h, sorted_slots, block_expert,
                T * K, H, I,
                hidden.stride(0), hidden.stride(1),
                gate_up_proj.stride(0), gate_up_proj.stride(1), gate_up_proj.stride(2),
                h.stride(0), h.stride(1),
                TOP_K=K, ACT=act_code, UPCAST=upcast, PRECISION=precision,
                BLOCK_M=bm, BLOCK_N=block_n, BLOCK_K=block_k,
            )
            _down_kernel[(num_blocks, triton.cdiv(H, block_n))](
                h, down_proj, slot_out, sorted_slots, block_expert, topk_weights,
                T * K, H, I,
                h.stride(0), h.stride(1),
                down_proj.stride(0), down_proj.stride(1), down_proj.stride(2),
                slot_out.stride(0), slot_out.stride(1),
                UPCAST=upcast, PRECISION=precision,
                BLOCK_M=bm, BLOCK_N=block_n, BLOCK_K=block_k,
            )
    block_h = min(triton.next_power_of_2(H), 256)
    _combine_kernel[(T, triton.cdiv(H, block_h))](
        hidden, slot_out, topk_index, topk_weights, out,
        H, num_real_experts,
        hidden.stride(0), hidden.stride(1), slot_out.stride(0), slot_out.stride(1), out.stride(0), out.stride(1),
        TOP_K=K, BLOCK_H=block_h,
    )
    return out
