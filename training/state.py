"""Resumable state of a model + AdamW loop, in a run folder's ``state/`` (safetensors + JSON, never
pickle): the weights, AdamW moments keyed by parameter name, RNG states, the step, the logged
history and the unlogged window. Saved to a temporary folder, then swapped in atomically."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from generation.checkpoint import replace_dir_atomically
from training.runs import TrainingError, write_json
from training.steps import Window

def save_state(state_dir: Path, model, optimizer, tokenizer, step: int, history: list[dict], window: Window) -> None:
    tmp = state_dir.parent / f".{state_dir.name}.tmp"
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir(parents=True)
    save_file({k: v.detach().contiguous().cpu() for k, v in model.state_dict().items()}, tmp / "model.safetensors")
    tensors, groups = optimizer_tensors(model, optimizer)
    tensors.update(rng_tensors())
    save_file(tensors, tmp / "optimizer.safetensors")
    tokenizer.save_pretrained(tmp)
    write_json(tmp / "state.json", {"step": step, "param_groups": groups, "history": history,
                                    "window": {"losses": window.losses, "grad_norms": window.grad_norms}})
    replace_dir_atomically(tmp, state_dir)


def optimizer_tensors(model, optimizer) -> tuple[dict, list[dict]]:
    """AdamW moments keyed by parameter name, and the param groups (as names) for JSON."""
    names = {id(p): n for n, p in model.named_parameters()}
    tensors = {}
    for param, state in optimizer.state.items():
        for key, value in state.items():
            tensors[f"{names[id(param)]}::{key}"] = value.detach().contiguous().cpu()
    groups = [{**{k: v for k, v in g.items() if k != "params"}, "params": [names[id(p)] for p in g["params"]]}
              for g in optimizer.param_groups]
    return tensors, groups


def rng_tensors() -> dict:
    tensors = {"rng::torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        for i, s in enumerate(torch.cuda.get_rng_state_all()):
            tensors[f"rng::cuda{i}"] = s
    return tensors


def load_state(state_dir: Path, model, optimizer, device) -> tuple[int, list[dict], Window]:
    state = json.loads((state_dir / "state.json").read_text(encoding="utf-8"))
    weights = load_file(state_dir / "model.safetensors", device=str(device))
    missing, unexpected = model.load_state_dict(weights, strict=False)
    if missing or unexpected:
        raise TrainingError(f"saved state in {state_dir} does not fit the model: missing {missing[:3]}, unexpected {unexpected[:3]}")
    tensors = load_file(state_dir / "optimizer.safetensors")
    params = dict(model.named_parameters())
    for group, saved in zip(optimizer.param_groups, state["param_groups"]):
        group.update({k: v for k, v in saved.items() if k != "params"})
    for name, param in params.items():
        slots = {key.split("::", 1)[1]: value for key, value in tensors.items() if key.split("::", 1)[0] == name}
        if slots:
            optimizer.state[param] = {k: (v if k == "step" else v.to(param.device)) for k, v in slots.items()}
    torch.set_rng_state(tensors["rng::torch"])
    if torch.cuda.is_available():
        states = [tensors[k] for k in sorted(tensors) if k.startswith("rng::cuda")]
        if states:
            torch.cuda.set_rng_state_all(states)
    window = Window()  # the unlogged steps before the save, so the next log line averages them too
    window.losses, window.grad_norms = state["window"]["losses"], state["window"]["grad_norms"]
    return state["step"], state["history"], window
