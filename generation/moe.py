"""Switch a transformers LongCat-Flash model between its stock expert loop and our fast MoE path.

Each ``LongcatFlashExperts`` module gets its class swapped, in place, for a subclass whose forward
calls :func:`kernels.moe.moe_forward`, and each ``LongcatFlashTopkRouter`` one whose top-k goes
through :func:`kernels.router.router_topk` (Triton on CUDA inference, same math elsewhere).
Only those modules' classes change (not the transformers classes for everyone); parameters,
buffers and ``state_dict`` keys stay exactly the same, so checkpoints round-trip through stock
transformers.
"""
from __future__ import annotations

import torch.nn.functional as F
from torch import nn
from transformers.models.longcat_flash.modeling_longcat_flash import LongcatFlashExperts, LongcatFlashTopkRouter

from kernels.moe import moe_forward
from kernels.router import router_topk

__all__ = [
    "FastLongcatFlashExperts",
    "FastLongcatFlashTopkRouter",
    "enable_fast_moe",
    "disable_fast_moe",
    "fast_moe_enabled",
]


class FastLongcatFlashExperts(LongcatFlashExperts):
    """LongcatFlashExperts whose forward is the sorted, grouped fast path (same weights)."""

    def forward(self, hidden_states, top_k_index, top_k_weights):
        act = getattr(self, "_fast_moe_act", None) or self.act_fn
        return moe_forward(
            hidden_states,
            self.gate_up_proj,
            self.down_proj,
            top_k_index,
            top_k_weights,
            self.num_routed_experts,
            act,
        )


class FastLongcatFlashTopkRouter(LongcatFlashTopkRouter):
    """Same routing as transformers (softmax, bias for the choice only, scaled unbiased weights);
    top-k through kernels.router so CUDA inference can use the Triton kernel."""

    def forward(self, hidden_states):
        hidden_states = hidden_states.view(-1, self.hidden_dim)
        router_logits = F.linear(hidden_states.float(), self.classifier.weight.float())
        topk_weights, topk_indices = router_topk(
            router_logits, self.e_score_correction_bias, self.top_k, self.routed_scaling_factor
        )
        return router_logits, topk_weights.to(router_logits.dtype), topk_indices


_FAST_CLASSES = {LongcatFlashExperts: FastLongcatFlashExperts, LongcatFlashTopkRouter: FastLongcatFlashTopkRouter}


def _expert_modules(model: nn.Module) -> list[LongcatFlashExperts]:
    return [m for m in model.modules() if isinstance(m, LongcatFlashExperts)]


def _swappable_modules(model: nn.Module) -> list[nn.Module]:
    return [m for m in model.modules() if isinstance(m, tuple(_FAST_CLASSES))]


def _fast_class_for(module: nn.Module):
    for stock, fast in _FAST_CLASSES.items():
        if isinstance(module, stock):
            return fast
    raise TypeError(type(module))


def _hidden_act(model: nn.Module) -> str | None:
    config = getattr(model, "config", None)
    return getattr(config, "hidden_act", None)


def enable_fast_moe(model: nn.Module) -> nn.Module:
    """Route every LongcatFlashExperts in ``model`` through the fast path; idempotent."""
    act = _hidden_act(model)
    for module in _swappable_modules(model):
        fast = _fast_class_for(module)
        if isinstance(module, fast):
            continue
        # remember the exact class so disable_fast_moe restores it (even a user subclass)
        module._fast_moe_orig_class = type(module)
        if fast is FastLongcatFlashExperts:
            # the name lets the Triton path pick its activation; the callable is the fallback
            module._fast_moe_act = act
        module.__class__ = fast
    return model


def disable_fast_moe(model: nn.Module) -> nn.Module:
    """Back to the stock transformers loop; idempotent."""
    for module in _swappable_modules(model):
        if isinstance(module, (FastLongcatFlashExperts, FastLongcatFlashTopkRouter)):
            stock = LongcatFlashExperts if isinstance(module, LongcatFlashExperts) else LongcatFlashTopkRouter
            module.__class__ = module.__dict__.pop("_fast_moe_orig_class", stock)
            module.__dict__.pop("_fast_moe_act", None)
    return model


def fast_moe_enabled(model: nn.Module) -> bool:
    """True when the model has experts and all experts and routers use the fast path."""
    modules = _swappable_modules(model)
    return bool(_expert_modules(model)) and all(isinstance(m, _fast_class_for(m)) for m in modules)
