"""LongCat-Flash router top-k: softmax, + e_score_correction_bias for the choice, top-k.

As in transformers' ``LongcatFlashTopkRouter``: the bias only decides WHICH experts are picked;
the weights are the unbiased softmax scores of the picks times ``routed_scaling_factor``.
The classifier matmul stays outside (a plain ``F.linear``). Slots come out sorted by biased
score, highest first (transformers uses ``sorted=False``, whose order is unspecified; the MoE
output does not depend on slot order).
"""
from __future__ import annotations

import os

import torch

__all__ = ["router_topk", "router_topk_torch"]


def router_topk_torch(router_logits: torch.Tensor, e_score_correction_bias: torch.Tensor, top_k: int,
                      routed_scaling_factor: float):
    """``router_logits`` [T, E] -> ``(topk_weights [T, K] fp32, topk_index [T, K] int64)``."""
    scores = router_logits.float().softmax(dim=-1)
    biased = scores.detach() + e_score_correction_bias.float().unsqueeze(0)
    topk_index = torch.topk(biased, k=top_k, dim=-1, sorted=True).indices
    topk_weights = scores.gather(1, topk_index) * routed_scaling_factor
    return topk_weights, topk_index


def router_topk(router_logits, e_score_correction_bias, top_k, routed_scaling_factor):
    """Triton on CUDA when no gradient is needed (the kernel has no backward); torch otherwise."""
    use_triton = (
        router_logits.is_cuda
        and not (torch.is_grad_enabled() and router_logits.requires_grad)
        and os.environ.get("ZHUFU_MOE_NO_TRITON") != "1"
    )
    if use_triton:
        try:
            from .router_triton import router_topk_triton
        except ImportError:
            use_triton = False
    if use_triton:
        return router_topk_triton(router_logits, e_score_correction_bias, top_k, routed_scaling_factor)
    return router_topk_torch(router_logits, e_score_correction_bias, top_k, routed_scaling_factor)
