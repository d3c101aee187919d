"""Router top-k in Triton: the twin of :func:`kernels.router.router_topk_torch` (forward only).

One program handles ``BLOCK_T`` tokens with all experts in registers: softmax, add the bias for
the choice, then K rounds of argmax (first index wins ties), each taking the unbiased score of
the pick as its weight and masking the pick out. Slots come out highest biased score first.
"""
from __future__ import annotations

import torch
import triton
import triton.language as tl

__all__ = ["router_topk_triton"]


@triton.jit
def _router_topk_kernel(
    logits_ptr, bias_ptr, weight_ptr, index_ptr,
    T, E, scale,
    stride_lt, stride_le,
    TOP_K: tl.constexpr, BLOCK_T: tl.constexpr, BLOCK_E: tl.constexpr,
):
    rows = tl.program_id(0) * BLOCK_T + tl.arange(0, BLOCK_T)
    cols = tl.arange(0, BLOCK_E)
    row_ok = rows < T
    col_ok = cols < E
    mask = row_ok[:, None] & col_ok[None, :]
    logits = tl.load(logits_ptr + rows[:, None].to(tl.int64) * stride_lt + cols[None, :] * stride_le,
                     mask=mask, other=-float("inf")).to(tl.float32)
    # rows past T are all -inf: give them a finite logit so the softmax stays NaN-free
    logits = tl.where(row_ok[:, None] & col_ok[None, :], logits, tl.where(col_ok[None, :], 0.0, -float("inf")))
    shifted = logits - tl.max(logits, axis=1)[:, None]
    num = tl.exp(shifted)
    scores = num / tl.sum(num, axis=1)[:, None]
    bias = tl.load(bias_ptr + cols, mask=col_ok, other=0.0).to(tl.float32)
    choice = tl.where(col_ok[None, :], scores + bias[None, :], -float("inf"))
    for k in tl.static_range(TOP_K):
        best = tl.max(choice, axis=1)
        # lowest column among the maxima: deterministic tie-break
        pick = tl.min(tl.where(choice == best[:, None], cols[None, :], BLOCK_E), axis=1)
        hit = cols[None, :] == pick[:, None]
        weight = tl.sum(tl.where(hit, scores, 0.0), axis=1) * scale
        tl.store(weight_ptr + rows * TOP_K + k, weight, mask=row_ok)
        tl.store(index_ptr + rows * TOP_K + k, pick.to(tl.int64), mask=row_ok)
        choice = tl.where(hit, -float("inf"), choice)


def router_topk_triton(router_logits: torch.Tensor, e_score_correction_bias: torch.Tensor, top_k: int,
                       routed_scaling_factor: float, block_t: int = 16):
    """Same contract as :func:`kernels.router.router_topk_torch` (no autograd)."""
    logits = router_logits.reshape(-1, router_logits.shape[-1])
    T, E = logits.shape
    weights = torch.empty((T, top_k), dtype=torch.float32, device=logits.device)
    index = torch.empty((T, top_k), dtype=torch.int64, device=logits.device)
    if T == 0:
        return weights, index
    _router_topk_kernel[(triton.cdiv(T, block_t),)](
        logits, e_score_correction_bias.contiguous(), weights, index,
        T, E, float(routed_scaling_factor),
        logits.stride(0), logits.stride(1),
        TOP_K=top_k, BLOCK_T=block_t, BLOCK_E=triton.next_power_of_2(E),
    )
    return weights, index
