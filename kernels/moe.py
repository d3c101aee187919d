"""Fast Mixture-of-Experts forward for LongCat-Flash style layers (real FFN experts + identity experts).

Weight layout is the one of ``transformers.models.longcat_flash.LongcatFlashExperts``:

* ``gate_up_proj``: ``[E, 2I, H]`` with ``E`` = total experts (real + zero) or real only; rows
  ``[:I]`` are the gate, ``[I:]`` the up projection; only the first ``num_real_experts`` are used.
* ``down_proj``: ``[E_real, H, I]`` (``F.linear`` layout, i.e. ``y = h @ down_proj[e].T``).

Expert index ``e >= num_real_experts`` is a zero-computation (identity) expert: its slot adds
``weight * x`` and costs no matmul.

This module imports only torch (and triton lazily); nothing of ours.
"""
from __future__ import annotations

import os
from typing import Callable

import torch
import torch.nn.functional as F

__all__ = [
    "ACTIVATIONS",
    "moe_forward",
    "moe_forward_torch",
    "moe_forward_reference",
    "align_by_expert",
    "sort_slots_by_expert",
    "triton_available",
]


def _gelu_tanh(x: torch.Tensor) -> torch.Tensor:
    return F.gelu(x, approximate="tanh")


# Names as in transformers' ACT2FN for the activations a LongCat config may carry.
ACTIVATIONS: dict[str, Callable[[torch.Tensor], torch.Tensor]] = {
    "silu": F.silu,
    "swish": F.silu,
    "gelu": F.gelu,
    "gelu_new": _gelu_tanh,
    "gelu_pytorch_tanh": _gelu_tanh,
    "relu": F.relu,
}


# what the Triton kernel implements (kernels.moe_triton.ACT_CODES); others take the torch path
TRITON_ACTIVATIONS = frozenset({"silu", "swish", "gelu", "gelu_new", "gelu_pytorch_tanh", "relu"})


def resolve_activation(act) -> Callable[[torch.Tensor], torch.Tensor]:
    if callable(act):
        return act
    try:
        return ACTIVATIONS[act]
    except KeyError:
        raise ValueError(f"unsupported activation {act!r}; known: {sorted(ACTIVATIONS)}") from None


# ---------------------------------------------------------------------------------------------
# routing bookkeeping shared by the torch and Triton paths
# ---------------------------------------------------------------------------------------------


def identity_weight(topk_index: torch.Tensor, topk_weights: torch.Tensor, num_real_experts: int) -> torch.Tensor:
    """Per token, the summed routing weight of its zero-expert slots: their output is that times x."""
    is_zero = topk_index >= num_real_experts
    return (topk_weights * is_zero.to(topk_weights.dtype)).sum(dim=1)


def sort_slots_by_expert(topk_index: torch.Tensor, num_real_experts: int):
    """Flattened (token, slot) positions of the real slots, grouped by expert.

    Returns ``(slot_pos, counts)``: ``slot_pos`` [S] indexes ``topk_index.reshape(-1)`` with the
    slots of expert 0 first, then expert 1, ...; ``counts`` [E_real] the group sizes. Zero-expert
    slots are dropped here (they never reach a matmul).
    """
    flat = topk_index.reshape(-1)
    real_pos = torch.nonzero(flat < num_real_experts, as_tuple=True)[0]
    experts = flat[real_pos]
    # stable sort keeps token order inside a group, which makes results reproducible
    order = torch.argsort(experts, stable=True)
    counts = torch.bincount(experts, minlength=num_real_experts)
    return real_pos[order], counts


def align_by_expert(topk_index: torch.Tensor, num_real_experts: int, block_m: int):
    """Block-aligned expert sort for block GEMM kernels (the idea of vLLM's moe_align_block_size).

    Real slots are grouped by expert and each group is padded to a multiple of ``block_m`` so
    every block of ``block_m`` rows belongs to one expert. Zero-expert slots and experts without
    tokens get no block at all.

    Returns ``(sorted_slots, block_expert)``: ``sorted_slots`` [num_blocks * block_m] int32 holds
    flat slot positions (``t * K + k``), padding rows hold ``T * K`` (out of range = skip);
    ``block_expert`` [num_blocks] int32 the expert of each block.
    """
    num_slots = topk_index.numel()
    device = topk_index.device
    slot_pos, counts = sort_slots_by_expert(topk_index, num_real_experts)
    blocks_per_expert = torch.div(counts + block_m - 1, block_m, rounding_mode="floor")
    padded_start = torch.cumsum(blocks_per_expert, 0) * block_m - blocks_per_expert * block_m
    group_start = torch.cumsum(counts, 0) - counts
    experts = topk_index.reshape(-1)[slot_pos]
    rank_in_group = torch.arange(slot_pos.numel(), device=device) - group_start[experts]
    num_blocks = int(blocks_per_expert.sum())
    sorted_slots = torch.full((num_blocks * block_m,), num_slots, dtype=torch.int32, device=device)
    sorted_slots[padded_start[experts] + rank_in_group] = slot_pos.to(torch.int32)
    block_expert = torch.repeat_interleave(
        torch.arange(num_real_experts, device=device, dtype=torch.int32), blocks_per_expert
    )
    return sorted_slots, block_expert


# ---------------------------------------------------------------------------------------------
# grouped matmul: torch._grouped_mm where it works for this device/dtype, else a loop of slices
# ---------------------------------------------------------------------------------------------

_GROUPED_MM_OK: dict[tuple[str, torch.dtype], bool] = {}


class _ContiguousGrad(torch.autograd.Function):
    """Identity whose backward makes the incoming gradient contiguous.

    ``torch._grouped_mm``'s backward rejects expanded (stride 0) gradients, e.g. from ``.sum()``.
    """

    @staticmethod
    def forward(ctx, x):
        return x.view_as(x)

    @staticmethod
    def backward(ctx, grad):
        return grad.contiguous()


def _probe_grouped_mm(device: torch.device, dtype: torch.dtype) -> bool:
    key = (device.type, dtype)
    if key not in _GROUPED_MM_OK:
        ok = hasattr(torch, "_grouped_mm") and os.environ.get("ZHUFU_MOE_NO_GROUPED_MM") != "1"
        if ok:
            try:
                ok = _run_grouped_mm_probe(device, dtype)
            except (RuntimeError, TypeError, NotImplementedError):
                ok = False
        _GROUPED_MM_OK[key] = ok
    return _GROUPED_MM_OK[key]


def _run_grouped_mm_probe(device: torch.device, dtype: torch.dtype) -> bool:
    # the probe needs autograd even when the first real call runs under no_grad/inference_mode
    with torch.inference_mode(False), torch.enable_grad():
        x = torch.randn(8, 16, device=device, dtype=dtype, requires_grad=True)
        w = torch.randn(2, 16, 16, device=device, dtype=dtype, requires_grad=True)
        offs = torch.tensor([0, 8], device=device, dtype=torch.int32)
        y = _ContiguousGrad.apply(torch._grouped_mm(x, w.transpose(-2, -1), offs=offs))
        y.sum().backward()
        ref = x.detach() @ w.detach()[1].T
        return bool(torch.allclose(y.detach().float(), ref.float(), atol=1e-1, rtol=1e-2))


def grouped_linear(x: torch.Tensor, weight: torch.Tensor, counts: torch.Tensor, use_grouped_mm=None) -> torch.Tensor:
    """``y[rows of group e] = x[rows of group e] @ weight[e].T`` for rows laid out group after group.

    ``weight`` is ``[E, N, K]`` (``F.linear`` layout), ``counts`` ``[E]`` the rows per group.
    """
    if use_grouped_mm is None:
        use_grouped_mm = _probe_grouped_mm(x.device, x.dtype)
    if use_grouped_mm:
        offs = torch.cumsum(counts, 0).to(torch.int32)
        y = torch._grouped_mm(x, weight.transpose(-2, -1), offs=offs)
        # the autograd wrapper costs ~20 us a call, a few per decode step: only when a backward follows
        return _ContiguousGrad.apply(y) if _wants_grad(x, weight) else y
    outs = []
    start = 0
    # one host sync for all group sizes instead of one per expert
    for e, n in enumerate(counts.tolist()):
        if n:
            outs.append(F.linear(x[start:start + n], weight[e]))
            start += n
    if not outs:
        return x.new_zeros(0, weight.shape[1])
    return torch.cat(outs, dim=0)


# ---------------------------------------------------------------------------------------------
# the plain torch fast path
# ---------------------------------------------------------------------------------------------


def expert_swiglu(x_sorted, gate_up_proj, down_proj, counts, act_fn, use_grouped_mm=None):
    """Per expert ``down(act(gate(x)) * up(x))`` on rows already grouped by expert."""
    num_real = down_proj.shape[0]
    gate_up = grouped_linear(x_sorted, gate_up_proj[:num_real], counts, use_grouped_mm)
    gate, up = gate_up.chunk(2, dim=-1)
    return grouped_linear(act_fn(gate) * up, down_proj, counts, use_grouped_mm)


def moe_forward_torch(
    hidden: torch.Tensor,
    gate_up_proj: torch.Tensor | None,
    down_proj: torch.Tensor | None,
    topk_index: torch.Tensor,
    topk_weights: torch.Tensor,
    num_real_experts: int,
    act="silu",
    use_grouped_mm: bool | None = None,
) -> torch.Tensor:
    """Sorted/grouped MoE forward; autograd flows to hidden, both projections and topk_weights.

    ``use_grouped_mm``: None picks ``torch._grouped_mm`` when it works on this device/dtype.
    """
    T, H = hidden.shape
    K = topk_index.shape[1]
    # the routing weights are fp32 in transformers; mix in fp32 like its loop, then cast back
    mix_dtype = torch.promote_types(hidden.dtype, topk_weights.dtype)
    # identity experts: one fused multiply for all their slots, no matmul
    out = hidden.to(mix_dtype) * identity_weight(topk_index, topk_weights, num_real_experts).to(mix_dtype)[:, None]
    if num_real_experts == 0 or gate_up_proj is None or T == 0:
        return out.to(hidden.dtype)

    slot_pos, counts = sort_slots_by_expert(topk_index, num_real_experts)
    if slot_pos.numel() == 0:
        return out.to(hidden.dtype)
    token_idx = torch.div(slot_pos, K, rounding_mode="floor")
    if use_grouped_mm is None and not hidden.is_cuda and slot_pos.numel() < num_real_experts and not _wants_grad(
        hidden, gate_up_proj, down_proj, topk_weights
    ):
        # decode on CPU: _grouped_mm runs one mm per expert, empty ones included; slice the busy ones
        use_grouped_mm = False
    y = expert_swiglu(hidden[token_idx], gate_up_proj, down_proj, counts, resolve_activation(act), use_grouped_mm)
    slot_weight = topk_weights.reshape(-1)[slot_pos].to(mix_dtype)
    out = out.index_add(0, token_idx, y.to(mix_dtype) * slot_weight[:, None])
    return out.to(hidden.dtype)


def moe_forward_reference(hidden, gate_up_proj, down_proj, topk_index, topk_weights, num_real_experts, act="silu"):
    """Naive per-(token, slot) loop in float64: the ground truth the fast paths are tested against."""
    act_fn = resolve_activation(act)
    T, K = topk_index.shape
    rows = []
    for t in range(T):
        acc = torch.zeros(hidden.shape[1], dtype=torch.float64, device=hidden.device)
        x = hidden[t].double()
        for k in range(K):
            e = int(topk_index[t, k])
            w = topk_weights[t, k].double()  # kept as a tensor so gradients flow
            if e >= num_real_experts:
                acc = acc + w * x
                continue
            gu = gate_up_proj[e].double() @ x
            gate, up = gu.chunk(2)
            acc = acc + w * (down_proj[e].double() @ (act_fn(gate) * up))
        rows.append(acc)
    if not rows:
        return hidden.new_zeros(hidden.shape)
    return torch.stack(rows).to(hidden.dtype)


# ---------------------------------------------------------------------------------------------
# dispatch
# ---------------------------------------------------------------------------------------------


def triton_available() -> bool:
    try:
        import triton  # noqa: F401
    except ImportError:
        return False
    return True


def _wants_grad(*tensors) -> bool:
    return torch.is_grad_enabled() and any(t is not None and t.requires_grad for t in tensors)


def moe_forward(hidden, gate_up_proj, down_proj, topk_index, topk_weights, num_real_experts, act="silu"):
    """Triton fused kernel for CUDA inference; the torch path otherwise (CPU, or when training).

    The Triton kernel is forward-only, so anything that needs gradients takes the torch path.
    """
    use_triton = (
        hidden.is_cuda
        and isinstance(act, str)
        and act in TRITON_ACTIVATIONS
        and gate_up_proj is not None
        and num_real_experts > 0
        and not _wants_grad(hidden, gate_up_proj, down_proj, topk_weights)
        and os.environ.get("ZHUFU_MOE_NO_TRITON") != "1"
        and triton_available()
    )
    if use_triton:
        from .moe_triton import moe_forward_triton

        return moe_forward_triton(hidden, gate_up_proj, down_proj, topk_index, topk_weights, num_real_experts, act)
    return moe_forward_torch(hidden, gate_up_proj, down_proj, topk_index, topk_weights, num_real_experts, act)
