"""MLA forward over the slot cache, with the up-projection absorbed (DeepSeek-V2 section 2.1.2).

transformers' ``LongcatFlashMLA`` caches the compressed KV but re-expands every cached token
through ``kv_b_proj`` on each step. Here ``kv_b_proj`` splits per head into ``W_uk`` [dn, r] and
``W_uv`` [dv, r]; since  q_nope . (W_uk c) = (q_nope W_uk) . c  and  sum_t p_t W_uv c_t =
W_uv (sum_t p_t c_t),  a step multiplies the *query* by W_uk and the attention output by W_uv,
and attends over the cached rows [c, k_rope] directly: one key shared by all heads (MQA shaped).

Matches ``LongcatFlashMLA.forward`` (transformers 5.24): q LoRA with ``q_a_layernorm``, the
``mla_scale_q_lora`` / ``mla_scale_kv_lora`` factors, interleaved rope on the rope parts only,
``self.scaling`` (which already carries yarn's mscale when configured), fp32 softmax.
Projections and norms are called as functions on the module's weights (see runner.py).
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F


@dataclass
class AttentionBatch:
    """Where a step's flat tokens go in the cache and what they attend to (shared by all sublayers).

    The first ``num_decode`` tokens are decode tokens (one per running sequence); prefill tokens
    follow, one contiguous segment per prompt chunk (chunked prefill: a chunk after the first
    also attends to the rows its earlier chunks left in the cache).
    """

    write_slots: torch.Tensor  # [N] slot of each token
    write_pos: torch.Tensor  # [N] position of each token
    num_decode: int
    decode_slots: torch.Tensor | None  # [D] slots, when not one contiguous range
    decode_range: tuple[int, int] | None  # (first, stop) when the slots are contiguous: read a view
    decode_len: int  # longest cached length among decode rows (after this step's write)
    decode_mask: torch.Tensor | None  # [D, 1, decode_len] additive mask (0 or -inf)
    prefill_segments: list[tuple[int, int, int, int]]  # (start in the flat batch, length, slot, first position)


def rms_norm(x: torch.Tensor, norm) -> torch.Tensor:
    """``LongcatFlashRMSNorm.forward``; fp32 takes torch's fused kernel (bit-identical in fp32)."""
    if x.dtype == torch.float32 and norm.weight.dtype == torch.float32:
        return F.rms_norm(x, norm.weight.shape, norm.weight, norm.variance_epsilon)
    return norm(x)


def linear(x: torch.Tensor, module) -> torch.Tensor:
    """``module(x)`` for an nn.Linear without the module call (hooks and all): a decode step makes ~30."""
    return F.linear(x, module.weight, module.bias)


def rope_interleaved(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """transformers' ``apply_rotary_pos_emb_interleave`` for one tensor; ``cos``/``sin`` are its half tables."""
    x1, x2 = x[..., 0::2], x[..., 1::2]
    return torch.cat([x1 * cos - x2 * sin, x2 * cos + x1 * sin], dim=-1)


class AbsorbedMLA:
    """Reads the weights of one ``LongcatFlashMLA`` sublayer; owns none."""

    def __init__(self, attn, sublayer: int):
        self.attn = attn
        self.sublayer = sublayer
        self.num_heads = attn.num_heads
        self.nope = attn.qk_nope_head_dim
        self.rope = attn.qk_rope_head_dim
        self.rank = attn.kv_lora_rank
        self.v_dim = attn.v_head_dim
        self.scaling = attn.scaling
        # LongcatFlashMLA adds these LoRA factors; plain DeepSeek MLA has none
        self.scale_q = getattr(attn, "mla_scale_q_lora", 1.0)
        self.scale_kv = getattr(attn, "mla_scale_kv_lora", 1.0)

    def _up_weights(self) -> tuple[torch.Tensor, torch.Tensor]:
        # Views of kv_b_proj.weight (rows are head-major [k_nope | v] blocks), never copies.
        w = self.attn.kv_b_proj.weight.view(self.num_heads, self.nope + self.v_dim, self.rank)
        return w[:, : self.nope], w[:, self.nope :]

    def forward(self, x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor, cache: torch.Tensor, batch: AttentionBatch):
        """x [N, hidden] -> [N, hidden]; ``cos``/``sin`` [N, 1, rope / 2]; ``cache`` this sublayer's [slots, max_len, rank + rope]."""
        attn, n = self.attn, x.shape[0]
        w_uk, w_uv = self._up_weights()

        q = linear(rms_norm(linear(x, attn.q_a_proj), attn.q_a_layernorm), attn.q_b_proj)
        q_nope, q_rot = q.view(n, self.num_heads, self.nope + self.rope).split([self.nope, self.rope], dim=-1)
        latent, k_rot = linear(x, attn.kv_a_proj_with_mqa).split([self.rank, self.rope], dim=-1)
        latent = rms_norm(latent, attn.kv_a_layernorm) * self.scale_kv
        q_rot = rope_interleaved(q_rot * self.scale_q, cos, sin)  # [N, H, rope]
        k_rot = rope_interleaved(k_rot, cos[:, 0], sin[:, 0])  # [N, rope]: one key for all heads

        # absorb W_uk into the query: [H, N, nope] @ [H, nope, rank]
        q_latent = torch.bmm(q_nope.transpose(0, 1) * self.scale_q, w_uk).transpose(0, 1)
        query = torch.cat([q_latent, q_rot], dim=-1)  # [N, H, rank + rope]
        rows = torch.cat([latent, k_rot], dim=-1)  # [N, rank + rope]
        cache[batch.write_slots, batch.write_pos] = rows

        d = batch.num_decode
        if d == n:  # decode only: no scratch buffer
            out = self._decode(query, cache, batch)
        else:
            out = query.new_empty(n, self.num_heads, self.rank)
            if d:
                out[:d] = self._decode(query[:d], cache, batch)
            for start, length, slot, past in batch.prefill_segments:
                keys = rows[start : start + length] if past == 0 else cache[slot, : past + length]
                out[start : start + length] = self._prefill(query[start : start + length], keys, past)

        # absorb W_uv into the output: [H, N, rank] @ [H, rank, v]
        values = torch.bmm(out.transpose(0, 1), w_uv.transpose(1, 2)).transpose(0, 1)
        return linear(values.reshape(n, self.num_heads * self.v_dim), attn.o_proj)

    def _decode(self, query: torch.Tensor, cache: torch.Tensor, batch: AttentionBatch) -> torch.Tensor:
        if batch.decode_range is not None:
            keys = cache[batch.decode_range[0] : batch.decode_range[1], : batch.decode_len]
        else:
            keys = cache[:, : batch.decode_len].index_select(0, batch.decode_slots)
        scores = torch.baddbmm(batch.decode_mask, query, keys.transpose(1, 2), alpha=self.scaling)
        probs = torch.softmax(scores, dim=-1, dtype=torch.float32).to(query.dtype)
        return torch.bmm(probs, keys[..., : self.rank])  # [D, H, rank]

    def _prefill(self, query: torch.Tensor, keys: torch.Tensor, past: int) -> torch.Tensor:
        # one prompt chunk at positions past..past+T: causal attention over the prompt's rows up to
        # itself (the shared key broadcasts over heads)
        q = query.transpose(0, 1).unsqueeze(0)  # [1, H, T, rank + rope]
        k = keys.unsqueeze(0).unsqueeze(0).expand(1, self.num_heads, -1, -1)
        v = k[..., : self.rank]
        if past == 0:
            out = F.scaled_dot_product_attention(q, k, v, is_causal=True, scale=self.scaling)
        else:
            t = query.shape[0]
            causal = torch.ones(t, past + t, dtype=torch.bool, device=query.device).tril(diagonal=past)
            out = F.scaled_dot_product_attention(q, k, v, attn_mask=causal, scale=self.scaling)
        return out[0].transpose(0, 1)  # [T, H, rank]
