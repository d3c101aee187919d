"""One forward of a loaded LongcatFlashForCausalLM over a step's flat tokens (no padding).

Walks the model's own modules in the order of ``LongcatFlashDecoderLayer.forward`` (two attention
sublayers, two dense MLPs and the shortcut MoE per layer). Only attention is ours (absorbed MLA
over the slot cache); embeddings, norms, MLPs and the MoE are the model's modules, the MoE switched
to the fast sorted/grouped path by ``enable_fast_moe``.
"""
from __future__ import annotations

import torch

from generation.moe import enable_fast_moe

from .attention import AbsorbedMLA, AttentionBatch


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
        # rope tables from the model's own rotary module, looked up by position each step
        param = next(model.parameters())
        with torch.no_grad():
            positions = torch.arange(max_len, device=param.device)[None]
            cos, sin = inner.rotary_emb(param.new_empty(1, dtype=param.dtype), positions)
        self.cos, self.sin = cos[0], sin[0]

    @torch.inference_mode()
    def forward(
        self, input_ids: torch.Tensor, positions: torch.Tensor, batch: AttentionBatch, cache: torch.Tensor, logit_rows
    ) -> torch.Tensor:
        """Logits [len(logit_rows), vocab] (fp32) for the rows that sample a token."""
        hidden = self.embed(input_ids)
        cos, sin = self.cos[positions], self.sin[positions]
        for layer, (attn0, attn1) in self.layers:
            residual = hidden
            hidden = residual + attn0.forward(layer.input_layernorm[0](hidden), cos, sin, cache[attn0.sublayer], batch)
            residual = hidden
            hidden = layer.post_attention_layernorm[0](hidden)
            shortcut = layer.mlp(hidden)
            hidden = residual + layer.mlps[0](hidden)
            residual = hidden
            hidden = residual + attn1.forward(layer.input_layernorm[1](hidden), cos, sin, cache[attn1.sublayer], batch)
            residual = hidden
            hidden = residual + layer.mlps[1](layer.post_attention_layernorm[1](hidden)) + shortcut
        hidden = hidden.index_select(0, logit_rows)  # the norm is per row: only rows that sample
        return self.lm_head(self.norm(hidden)).float()
