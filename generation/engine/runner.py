"""One forward of a loaded LongcatFlashForCausalLM over a step's flat tokens (no padding).

Walks the model's own weights in the order of ``LongcatFlashDecoderLayer.forward`` (two attention
sublayers, two dense MLPs and the shortcut MoE per layer). Only attention is ours (absorbed MLA
over the slot cache); norms, MLPs and the MoE compute what the model's modules compute, with the
same ops on the same weights (so outputs stay bit-identical), but called as functions: at decode
batch sizes a step is ~150 small ops and nn.Module call overhead was a third of its time. The MoE
is the fast sorted/grouped path (``enable_fast_moe``; kernels.moe_forward, Triton on CUDA).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from generation.moe import enable_fast_moe
from kernels.moe import moe_forward
from kernels.router import router_topk

from .attention import AbsorbedMLA, AttentionBatch, linear, rms_norm


def dense_mlp(x: torch.Tensor, mlp) -> torch.Tensor:
    """``LongcatFlashMLP.forward``: down(act(gate(x)) * up(x))."""
    return linear(mlp.act_fn(linear(x, mlp.gate_proj)) * linear(x, mlp.up_proj), mlp.down_proj)


def shortcut_moe(x: torch.Tensor, moe) -> torch.Tensor:
    """``LongcatFlashMoE.forward`` with the fast router and experts of generation.moe."""
    router, experts = moe.router, moe.experts
    logits = F.linear(x.float(), router.classifier.weight.float())
    weights, index = router_topk(logits, router.e_score_correction_bias, router.top_k, router.routed_scaling_factor)
    act = getattr(experts, "_fast_moe_act", None) or experts.act_fn
    return moe_forward(x, experts.gate_up_proj, experts.down_proj, index, weights.to(logits.dtype),
                       experts.num_routed_experts, act)


class ModelRunner:
    def __init__(self, model, max_len: int):
        config = model.config
        rope_type = (getattr(config, "rope_parameters", None) or {}).get("rope_type", "default")
        if rope_type == "dynamic":
            raise ValueError("dynamic rope rescales with the sequence length; the engine needs a fixed table")
        enable_fast_moe(model)
        self.model = model
        inner = model.model
        self.embed = inner.embed_tokens
        self.norm = inner.norm
        self.lm_head = model.lm_head
        self.layers = [
            (layer, [AbsorbedMLA(layer.self_attn[i], 2 * index + i) for i in (0, 1)])
            for index, layer in enumerate(inner.layers[: config.num_layers])
        ]
        # rope tables from the model's own rotary module, looked up by position each step; the
        # interleaved rope uses the first half of each (cos/sin are cat(freqs, freqs))
        param = next(model.parameters())
        with torch.no_grad():
            positions = torch.arange(max_len, device=param.device)[None]
            cos, sin = inner.rotary_emb(param.new_empty(1, dtype=param.dtype), positions)
        half = cos.shape[-1] // 2
        self.cos, self.sin = cos[0, :, :half].contiguous(), sin[0, :, :half].contiguous()

    @torch.inference_mode()
    def forward(
        self, input_ids: torch.Tensor, positions: torch.Tensor, batch: AttentionBatch, cache: torch.Tensor, logit_rows
    ) -> torch.Tensor:
        """Logits [len(logit_rows), vocab] (fp32) for the rows that sample a token."""
        hidden = self.embed(input_ids)
        cos, sin = self.cos[positions].unsqueeze(1), self.sin[positions].unsqueeze(1)  # [N, 1, rope / 2]
        for layer, (attn0, attn1) in self.layers:
            hidden = hidden + attn0.forward(rms_norm(hidden, layer.input_layernorm[0]), cos, sin, cache[attn0.sublayer], batch)
            normed = rms_norm(hidden, layer.post_attention_layernorm[0])
            shortcut = shortcut_moe(normed, layer.mlp)
            hidden = hidden + dense_mlp(normed, layer.mlps[0])
            hidden = hidden + attn1.forward(rms_norm(hidden, layer.input_layernorm[1]), cos, sin, cache[attn1.sublayer], batch)
            hidden = hidden + dense_mlp(rms_norm(hidden, layer.post_attention_layernorm[1]), layer.mlps[1]) + shortcut
        hidden = hidden.index_select(0, logit_rows)  # the norm is per row: only rows that sample
        return linear(rms_norm(hidden, self.norm), self.lm_head).float()
