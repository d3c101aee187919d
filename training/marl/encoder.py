"""The HRT history encoder: a GRU over windows of w steps, a causal transformer over m windows.

Input: a history [batch, m*w, features] (oldest step first, zero rows before an episode
started) with its validity mask [batch, m*w]. `per_window` returns one encoding per window
[batch, m, d]; the output at window t depends only on steps up to the end of window t
(the transformer is masked causally), which the tests check. `forward` returns the newest
window's encoding [batch, d], what the actors and critics use.
"""
from __future__ import annotations

import math

import torch
from torch import nn

from training.marl.options import ENCODER_KINDS


class PositionalEncoding(nn.Module):
    """Fixed sinusoidal positions (Vaswani et al.), added to the sequence."""

    def __init__(self, d_model: int, max_len: int = 256):
        super().__init__()
        position = torch.arange(max_len).unsqueeze(1)
        div = torch.exp(torch.arange(0, d_model, 2) * (-math.log(10000.0) / d_model))
        table = torch.zeros(max_len, d_model)
        table[:, 0::2] = torch.sin(position * div)
        table[:, 1::2] = torch.cos(position * div)[:, : d_model // 2]
        self.register_buffer("table", table, persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.table[: x.shape[1]]


def causal_transformer(d_model: int, heads: int, layers: int) -> nn.TransformerEncoder:
    layer = nn.TransformerEncoderLayer(d_model, heads, dim_feedforward=2 * d_model, dropout=0.0,
                                       batch_first=True, norm_first=True)
    return nn.TransformerEncoder(layer, layers, enable_nested_tensor=False)


def causal_mask(length: int) -> torch.Tensor:
    return torch.triu(torch.full((length, length), float("-inf")), diagonal=1)


class HRTEncoder(nn.Module):
    def __init__(self, input_dim: int, window: int = 4, windows: int = 4, d_model: int = 64, heads: int = 2,
                 layers: int = 1, kind: str = "hrt"):
        super().__init__()
        if kind not in ENCODER_KINDS:
            raise ValueError(f"encoder: unknown kind {kind!r}; choose one of {', '.join(ENCODER_KINDS)}")
        self.window, self.windows, self.kind, self.out_dim = window, windows, kind, d_model
        # Every kind gets the same input projection so ablations differ only in the sequence model.
        self.embed = nn.Linear(input_dim + 1, d_model)  # +1: the validity flag, so padding is not "at the origin"
        if kind in ("hrt", "rnn"):
            self.rnn = nn.GRU(d_model, d_model, batch_first=True)
        if kind in ("hrt", "transformer"):
            self.positions = PositionalEncoding(d_model)
            self.transformer = causal_transformer(d_model, heads, layers)

    @property
    def history(self) -> int:
        return self.window * self.windows

    def per_window(self, history: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        batch, steps, _ = history.shape
        if steps != self.history:
            raise ValueError(f"history: expected {self.history} steps, got {steps}")
        x = torch.relu(self.embed(torch.cat([history, mask.unsqueeze(-1).to(history.dtype)], dim=-1)))
        if self.kind == "hrt":
            # Lower level: each window of w steps on its own (no state carried across windows).
            _, h = self.rnn(x.reshape(batch * self.windows, self.window, -1))
            codes = h[-1].reshape(batch, self.windows, -1)
            return self.transformer(self.positions(codes), mask=causal_mask(self.windows).to(x.device))
        if self.kind == "rnn":
            out, _ = self.rnn(x)
        else:
            out = self.transformer(self.positions(x), mask=causal_mask(steps).to(x.device))
        return out[:, self.window - 1 :: self.window]  # the output at the last step of each window

    def forward(self, history: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        return self.per_window(history, mask)[:, -1]
