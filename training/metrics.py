"""Figures the benches and the web app compute from trained models and routing statistics."""
from __future__ import annotations

import json
import math
from pathlib import Path

SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "igniting"


def expert_flops_per_token(model_config: dict, real_experts_per_token: float) -> float:
    """Forward FLOPs of the real experts' SwiGLU matmuls per token, from measured routing.

    Each real-expert assignment does gate_up (H -> 2F) and down (F -> H): 2*H*2F + 2*F*H = 6*H*F
    multiply-adds counted as 2 FLOPs each; zero experts cost nothing. ``real_experts_per_token``
    is the mean over layers, so it is multiplied by the number of MoE layers.
    """
    h, f = model_config["hidden_size"], model_config["expert_ffn_hidden_size"]
    return 6 * h * f * real_experts_per_token * model_config["num_layers"]


def shared_data_file(name: str) -> Path:
    """A file of the paper's public data (read in place, never copied into the repository)."""
    path = SHARED_DATA / name
    if not path.is_file():
        raise FileNotFoundError(f"{path} is missing: the benches read the paper's data from {SHARED_DATA}")
    return path


def format_table(rows: list[dict], columns: list[str]) -> str:
    """A plain-text table, numbers rounded for reading."""

    def cell(value):
        if isinstance(value, float):
            return f"{value:.4g}" if math.isfinite(value) else str(value)
        return str(value)

    cells = [[cell(r.get(c, "")) for c in columns] for r in rows]
    widths = [max(len(c), *(len(row[i]) for row in cells)) for i, c in enumerate(columns)]
    lines = ["  ".join(c.ljust(w) for c, w in zip(columns, widths))]
    lines.append("  ".join("-" * w for w in widths))
    lines += ["  ".join(v.ljust(w) for v, w in zip(row, widths)) for row in cells]
    return "\n".join(lines)


def emit(summary: dict, table: str, as_json: bool) -> None:
    """The readable table, then (with --json) the JSON summary as the last line of stdout."""
    print(table, flush=True)
    if as_json:
        print(json.dumps(summary, ensure_ascii=False), flush=True)
