"""Routing controls for LongCat-Flash MoE training (arXiv:2509.01322, section 2).

* :class:`RoutingRecorder` hooks every ``LongcatFlashTopkRouter`` and keeps, per layer, the top-k
  picks and the router logits (with their graph while gradients are on) for statistics and losses.
* :func:`update_router_bias`: aux-loss-free balancing with computation-budget control. After each
  optimiser step every REAL expert ``i`` of a layer moves its ``e_score_correction_bias`` by
  ``mu * (K_e/K * 1/N - T_i/(K * T_all))``; the zero (identity) experts' biases stay 0, so the
  real experts' share of the K slots converges to K_e/K.
* :func:`balance_loss`: device-level balance loss, real experts in ``groups`` equal groups and the
  zero experts as one extra group, so the budget set by the bias is not fought by this loss.
* :func:`hidden_z_loss`: the hidden z-loss against massive activations.

In transformers' router the expert axis is ``[real experts..., zero experts...]``: an index
``>= router.num_experts`` (= ``config.n_routed_experts``) is a zero expert, and
``e_score_correction_bias`` has one entry per expert in that same order.
"""
from __future__ import annotations

import torch
from torch import nn
from transformers.models.longcat_flash.modeling_longcat_flash import LongcatFlashTopkRouter

__all__ = [
    "RoutingRecorder",
    "balance_loss",
    "find_routers",
    "hidden_z_loss",
    "update_router_bias",
]


def find_routers(model: nn.Module) -> list[LongcatFlashTopkRouter]:
    """The model's routers in layer order."""
    return [m for m in model.modules() if isinstance(m, LongcatFlashTopkRouter)]


def _flat_mask(token_mask: torch.Tensor | None, n_tokens: int, device) -> torch.Tensor | None:
    """A boolean [n_tokens] mask from e.g. an attention mask [B, S] (router tokens are B*S flat)."""
    if token_mask is None:
        return None
    mask = token_mask.reshape(-1).to(device=device, dtype=torch.bool)
    if mask.numel() != n_tokens:
        raise ValueError(f"token_mask has {mask.numel()} entries for {n_tokens} routed tokens")
    return mask


class RoutingRecorder:
    """Records what every router of ``model`` chose.

    Use as ``with RoutingRecorder(model) as rec: model(...)`` or ``attach()`` / ``detach()``.
    Several forwards between two ``clear()`` calls are concatenated along tokens. Logits keep
    their autograd graph when recorded with gradients on (training), so :func:`balance_loss`
    can backpropagate into the router; otherwise they are stored detached.

    Every method taking ``token_mask`` accepts a mask over the concatenated recorded tokens
    (e.g. the batch's attention mask) so padding does not count.
    """

    def __init__(self, model: nn.Module):
        self.model = model
        self.routers = find_routers(model)
        if not self.routers:
            raise ValueError("the model has no LongcatFlashTopkRouter")
        self._layer_of = {id(r): i for i, r in enumerate(self.routers)}
        self._handles: list = []
        self._indices: list[list[torch.Tensor]] = [[] for _ in self.routers]
        self._logits: list[list[torch.Tensor]] = [[] for _ in self.routers]

    # -- lifecycle -------------------------------------------------------------------------------

    def attach(self) -> "RoutingRecorder":
        if not self._handles:
            self._handles = [r.register_forward_hook(self._hook) for r in self.routers]
        return self

    def detach(self) -> None:
        for handle in self._handles:
            handle.remove()
        self._handles = []

    def __enter__(self) -> "RoutingRecorder":
        return self.attach()

    def __exit__(self, *exc) -> None:
        self.detach()

    def clear(self) -> None:
        for per_layer in (self._indices, self._logits):
            for calls in per_layer:
                calls.clear()

    def _hook(self, module, inputs, output) -> None:
        router_logits, _weights, topk_indices = output
        self.record(self._layer_of[id(module)], router_logits, topk_indices)

    def record(self, layer: int, router_logits: torch.Tensor, topk_indices: torch.Tensor) -> None:
        """Append one router call's output for ``layer`` (what the hook does; handy for tests)."""
        self._indices[layer].append(topk_indices.detach().reshape(-1, topk_indices.shape[-1]))
        keep_graph = torch.is_grad_enabled() and router_logits.requires_grad
        logits = router_logits.reshape(-1, router_logits.shape[-1])
        self._logits[layer].append(logits if keep_graph else logits.detach())

    # -- recorded data ---------------------------------------------------------------------------

    @property
    def num_layers(self) -> int:
        return len(self.routers)

    def has_data(self) -> bool:
        return any(self._indices)

    def indices(self, layer: int) -> torch.Tensor:
        """[T, K] expert picks of ``layer`` over all recorded tokens."""
        if not self._indices[layer]:
            raise RuntimeError("nothing recorded for this layer; run a forward while attached")
        return torch.cat(self._indices[layer], dim=0)

    def logits(self, layer: int) -> torch.Tensor:
        """[T, E] router logits of ``layer`` (fp32, as the router computes them)."""
        if not self._logits[layer]:
            raise RuntimeError("nothing recorded for this layer; run a forward while attached")
        return torch.cat(self._logits[layer], dim=0)

    def scores(self, layer: int) -> torch.Tensor:
        """[T, E] routing probabilities (softmax of the logits, before the bias)."""
        return self.logits(layer).float().softmax(dim=-1)

    def num_real(self, layer: int) -> int:
        return int(self.routers[layer].num_experts)

    def num_total(self, layer: int) -> int:
        return int(self.routers[layer].n_routed_experts)

    def top_k(self, layer: int) -> int:
        return int(self.routers[layer].top_k)

    def _masked(self, tensor: torch.Tensor, token_mask) -> torch.Tensor:
        mask = _flat_mask(token_mask, tensor.shape[0], tensor.device)
        return tensor if mask is None else tensor[mask]

    def real_per_token(self, layer: int, token_mask=None) -> torch.Tensor:
        """[T] how many of each token's K picks are real experts."""
        idx = self._masked(self.indices(layer), token_mask)
        return (idx < self.num_real(layer)).sum(dim=1)

    def real_expert_counts(self, layer: int, token_mask=None) -> torch.Tensor:
        """[N] T_i: how many (token, slot) assignments each real expert received."""
        idx = self._masked(self.indices(layer), token_mask).reshape(-1)
        n_real = self.num_real(layer)
        return torch.bincount(idx[idx < n_real], minlength=n_real)

    # -- statistics ------------------------------------------------------------------------------

    def stats(self, token_mask=None) -> dict:
        """Routing statistics over all recorded tokens and layers.

        * ``real_experts_per_token_mean`` / ``_std``: over (layer, token) pairs, how many of the
          K picks were real FFN experts (std = spread across tokens).
        * ``real_experts_per_token_per_layer``: the mean per layer.
        * ``expert_load``: per layer, each real expert's fraction of that layer's real-expert
          assignments (sums to 1; uniform is 1/N).
        * ``zero_expert_share``: fraction of all (token, slot) assignments taken by zero experts.
        * ``router_entropy``: mean entropy (nats) of the softmax scores over all experts.
        """
        if not self.has_data():
            raise RuntimeError("nothing recorded; run a forward while attached")
        per_token, per_layer_mean, loads, entropies = [], [], [], []
        zero_slots, all_slots = 0, 0
        for layer in range(self.num_layers):
            real = self.real_per_token(layer, token_mask).float()
            per_token.append(real)
            per_layer_mean.append(real.mean().item())
            counts = self.real_expert_counts(layer, token_mask).float()
            loads.append((counts / counts.sum().clamp_min(1)).tolist())
            k = self.top_k(layer)
            all_slots += real.numel() * k
            zero_slots += (real.numel() * k) - real.sum().item()
            scores = self._masked(self.scores(layer).detach(), token_mask)
            entropies.append(-(scores * scores.clamp_min(1e-30).log()).sum(-1))
        per_token = torch.cat(per_token)
        return {
            "real_experts_per_token_mean": per_token.mean().item(),
            "real_experts_per_token_std": per_token.std(unbiased=False).item(),
            "real_experts_per_token_per_layer": per_layer_mean,
            "expert_load": loads,
            "zero_expert_share": zero_slots / all_slots if all_slots else 0.0,
            "router_entropy": torch.cat(entropies).mean().item(),
        }


# ---------------------------------------------------------------------------------------------
# aux-loss-free balancing with computation-budget control
# ---------------------------------------------------------------------------------------------


def bias_delta(counts: torch.Tensor, n_tokens: int, top_k: int, mu: float, target_real_experts: float) -> torch.Tensor:
    """``mu * (K_e/K * 1/N - T_i/(K * T_all))`` for the N real experts (``counts`` = T_i)."""
    n_real = counts.numel()
    target = target_real_experts / top_k / n_real
    measured = counts.double() / (top_k * n_tokens)
    return mu * (target - measured)


@torch.no_grad()
def update_router_bias(model: nn.Module, recorder: RoutingRecorder, mu: float, target_real_experts: float,
                       token_mask=None) -> float:
    """Nudge every router's real-expert biases after an optimiser step; zero experts stay 0.

    Returns the measured mean number of real experts per token that the update reacted to.
    The recorder is left as is: call ``recorder.clear()`` before the next step's forward.
    """
    layer_of = {id(r): i for i, r in enumerate(recorder.routers)}
    measured = []
    for router in find_routers(model):
        layer = layer_of.get(id(router))
        if layer is None or not recorder._indices[layer]:
            continue
        k = recorder.top_k(layer)
        if not 0 < target_real_experts <= k:
            raise ValueError(f"target_real_experts must be in (0, {k}], got {target_real_experts}")
        n_real = recorder.num_real(layer)
        counts = recorder.real_expert_counts(layer, token_mask)
        n_tokens = recorder.real_per_token(layer, token_mask).numel()
        if n_tokens == 0:
            continue
        delta = bias_delta(counts, n_tokens, k, mu, target_real_experts)
        bias = router.e_score_correction_bias
        bias[:n_real] += delta.to(device=bias.device, dtype=bias.dtype)
        measured.append(counts.sum().item() / n_tokens)
    if not measured:
        raise RuntimeError("the recorder holds no routing for this model's routers")
    return sum(measured) / len(measured)


# ---------------------------------------------------------------------------------------------
# losses
# ---------------------------------------------------------------------------------------------


def expert_groups(n_real: int, n_total: int, groups: int, device) -> torch.Tensor:
    """[E] group id per expert: real experts in ``groups`` equal blocks, zero experts = ``groups``."""
    if groups < 1 or n_real % groups:
        raise ValueError(f"{n_real} real experts cannot be split into {groups} equal groups")
    group_size = n_real // groups
    ids = torch.full((n_total,), groups, dtype=torch.long, device=device)
    ids[:n_real] = torch.arange(n_real, device=device) // group_size
    return ids


def group_shares(n_real: int, n_total: int, groups: int, top_k: int, target_real_experts, device) -> torch.Tensor:
    """Expected fraction of the routed slots per group.

    With a budget K_e (the paper's setting): each real group K_e/(K*groups), the zero group
    (K - K_e)/K. Without one: proportional to the number of experts in the group.
    """
    n_zero = n_total - n_real
    if target_real_experts is None:
        sizes = [n_real / groups] * groups + [n_zero]
        return torch.tensor(sizes, dtype=torch.float32, device=device) / n_total
    real_share = target_real_experts / top_k
    return torch.tensor([real_share / groups] * groups + [1.0 - real_share], dtype=torch.float32, device=device)


def balance_loss(recorder: RoutingRecorder, groups: int, coef: float, target_real_experts: float | None = None,
                 token_mask=None) -> torch.Tensor:
    """Device-level balance loss ``coef * mean_layers sum_j f_j * P_j`` over ``groups + 1`` groups.

    ``f_j``: fraction of the layer's (token, slot) assignments that went to group j, divided by
    the group's expected share (see :func:`group_shares`), so 1 means on target.
    ``P_j``: mean over tokens of the routing probability mass on group j (differentiable).
    The zero experts are their own group, so this loss balances the real groups without pushing
    the real/zero split the bias controller sets. A group with an expected share of 0 (no zero
    experts, or K_e = K) is left out.
    """
    losses = []
    for layer in range(recorder.num_layers):
        if not recorder._logits[layer]:
            continue
        n_real, n_total, k = recorder.num_real(layer), recorder.num_total(layer), recorder.top_k(layer)
        scores = recorder._masked(recorder.scores(layer), token_mask)
        idx = recorder._masked(recorder.indices(layer), token_mask)
        if scores.shape[0] == 0:
            continue
        group_of = expert_groups(n_real, n_total, groups, scores.device)
        share = group_shares(n_real, n_total, groups, k, target_real_experts, scores.device)
        counts = torch.bincount(group_of[idx.reshape(-1)], minlength=groups + 1).float()
        keep = share > 0
        f = counts[keep] / (idx.numel() * share[keep])
        membership = torch.nn.functional.one_hot(group_of, groups + 1).to(scores.dtype)  # [E, G+1]
        prob_mass = (scores @ membership).mean(dim=0)[keep]
        losses.append((f.detach() * prob_mass).sum())
    if not losses:
        raise RuntimeError("nothing recorded; run a forward while attached")
    return coef * torch.stack(losses).mean()


def hidden_z_loss(hidden_states: torch.Tensor, coef: float, token_mask=None) -> torch.Tensor:
    """LongCat-Flash's hidden z-loss: ``coef * mean_t (logsumexp_i |h_t,i|)^2``.

    Penalises massive activations in the residual stream (arXiv:2509.01322, training stability
    section). The formula is the one the paper states as we read it; computed in fp32.
    ``hidden_states``: ``[..., H]``; ``token_mask`` (same leading shape) drops padding.
    """
    h = hidden_states.float().reshape(-1, hidden_states.shape[-1])
    lse = torch.logsumexp(h.abs(), dim=-1)
    mask = _flat_mask(token_mask, lse.shape[0], lse.device)
    if mask is not None:
        lse = lse[mask]
    if lse.numel() == 0:
        return hidden_states.new_zeros((), dtype=torch.float32)
    return coef * lse.pow(2).mean()
