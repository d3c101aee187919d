"""MoE and router kernels: plain torch functions, each with a Triton twin of the same signature.

Imports only torch and triton (triton lazily, so CPU-only installs work).
"""
from .moe import moe_forward, moe_forward_torch
from .router import router_topk, router_topk_torch

__all__ = ["moe_forward", "moe_forward_torch", "router_topk", "router_topk_torch"]
