"""Checkpoints: standard Hugging Face folders, written atomically, loaded from safetensors only.

A checkpoint folder holds ``config.json``, ``model.safetensors``, the tokenizer files and
``zhufu.json`` (preset, metrics, data). Stock ``AutoModelForCausalLM.from_pretrained(dir)``
and ``AutoTokenizer.from_pretrained(dir)`` load it without remote code.
"""
from __future__ import annotations

import errno
import json
import os
import shutil
import uuid
from pathlib import Path

import torch
from safetensors import SafetensorError, safe_open

META_FILE = "zhufu.json"
WEIGHTS_FILE = "model.safetensors"
PICKLE_WEIGHTS = ("pytorch_model.bin", "pytorch_model.bin.index.json", "model.pt", "model.bin")
TOKENIZER_FILE = "tokenizer.json"
BIAS_SUFFIX = "e_score_correction_bias"


class CheckpointError(Exception):
    """A checkpoint folder that cannot be loaded; the message names the problem and the path."""


class CheckpointWriteError(CheckpointError, OSError):
    """Saving failed (a full disk, a write error): nothing was replaced; the message says why and where."""


# --------------------------------------------------------------------------------------------
# Saving


def save_checkpoint(model, tokenizer, dir: Path, extra_metadata: dict | None = None) -> Path:
    """Write the checkpoint into a temp folder beside ``dir``, fsync it, then swap it in."""
    dir = Path(dir)
    dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = dir.parent / f".{dir.name}.tmp-{uuid.uuid4().hex[:8]}"
    try:
        model.save_pretrained(tmp, safe_serialization=True)
        tokenizer.save_pretrained(tmp)
        _check_buffers_saved(model, tmp)
        (tmp / META_FILE).write_text(
            json.dumps(extra_metadata or {}, ensure_ascii=False, indent=2, default=str), encoding="utf-8"
        )
        _fsync_tree(tmp)
        replace_dir_atomically(tmp, dir)
    except (OSError, SafetensorError) as exc:
        raise CheckpointWriteError(f"could not write the checkpoint {dir}: {_describe_write_error(exc)}; "
                              f"nothing was replaced{' (the previous checkpoint there is unchanged)' if dir.exists() else ''}"
                              ) from exc
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return dir


def _describe_write_error(exc: Exception) -> str:
    # safetensors reports a full disk as "IoError(Os { code: 28, kind: StorageFull, ... })"
    text = str(exc)
    if getattr(exc, "errno", None) == errno.ENOSPC or "code: 28" in text or "No space left" in text:
        return f"the disk is full (No space left on device): {text}"
    return text


def _check_buffers_saved(model, folder: Path) -> None:
    """The router biases are buffers: make sure the weights file carries them (and not stale ones)."""
    expected = {k: v for k, v in model.state_dict().items() if k.endswith(BIAS_SUFFIX)}
    with safe_open(folder / WEIGHTS_FILE, framework="pt") as f:
        for name, value in expected.items():
            if name not in f.keys() or not torch.equal(f.get_tensor(name).to(value.device), value):
                raise CheckpointError(f"{folder}: router bias {name} was not saved correctly")


def replace_dir_atomically(tmp: Path, dir: Path) -> None:
    """Rename the finished temp folder to ``dir``; an old checkpoint is moved aside first and
    deleted only once the new one is in place, so a crash leaves one complete folder."""
    old = None
    if dir.exists():
        old = dir.parent / f".{dir.name}.old-{uuid.uuid4().hex[:8]}"
        os.rename(dir, old)
    os.rename(tmp, dir)
    _fsync_dir(dir.parent)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def _fsync_tree(folder: Path) -> None:
    for path in folder.rglob("*"):
        if path.is_file():
            with open(path, "rb") as f:
                os.fsync(f.fileno())
    _fsync_dir(folder)


def _fsync_dir(folder: Path) -> None:
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


# --------------------------------------------------------------------------------------------
# Loading


def read_metadata(dir: Path) -> dict:
    path = Path(dir) / META_FILE
    return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else {}


def load_checkpoint(dir: Path, expected_config: dict | None = None, fast_moe: bool = True):
    """(model, tokenizer) from a checkpoint folder, in eval mode with the fast MoE path on."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    dir = Path(dir)
    config = check_checkpoint(dir, expected_config)
    try:
        model, info = AutoModelForCausalLM.from_pretrained(
            dir, use_safetensors=True, trust_remote_code=False, output_loading_info=True, dtype=torch.float32
        )
    except Exception as exc:  # transformers raises many types; name the folder and the cause
        raise CheckpointError(f"{dir}: the model could not be loaded: {exc}") from exc
    problems = {k: v for k, v in info.items() if k in ("missing_keys", "unexpected_keys", "mismatched_keys") and v}
    if problems:
        raise CheckpointError(f"{dir}: weights do not match config.json: {_short(problems)}")
    _restore_router_biases(model, dir)
    try:
        tokenizer = AutoTokenizer.from_pretrained(dir, trust_remote_code=False)
    except Exception as exc:
        raise CheckpointError(f"{dir}: the tokenizer could not be loaded: {exc}") from exc
    if len(tokenizer) > config["vocab_size"]:
        raise CheckpointError(f"{dir}: tokenizer has {len(tokenizer)} tokens but the model only {config['vocab_size']}")
    model.eval()
    if fast_moe:
        from generation.moe import enable_fast_moe

        model = enable_fast_moe(model)
    return model, tokenizer


def check_checkpoint(dir: Path, expected_config: dict | None = None) -> dict:
    """Validate a folder before loading it; returns its config.json as a dict."""
    if not dir.is_dir():
        raise CheckpointError(f"checkpoint folder {dir} does not exist")
    weights = dir / WEIGHTS_FILE
    if not weights.is_file():  # we always write one file; sharded checkpoints are not ours
        pickles = [name for name in PICKLE_WEIGHTS if (dir / name).exists()]
        if pickles:
            raise CheckpointError(
                f"{dir}: has {', '.join(pickles)} but no {WEIGHTS_FILE}; only safetensors are loaded "
                "(pickle files can run code), convert it to safetensors first"
            )
        raise CheckpointError(f"{dir}: no {WEIGHTS_FILE}")
    _check_safetensors(weights)
    config = _read_config(dir)
    if expected_config:
        _compare_config(dir, config, expected_config)
    if not (dir / TOKENIZER_FILE).is_file():
        raise CheckpointError(f"{dir}: tokenizer missing (no {TOKENIZER_FILE})")
    return config


def _check_safetensors(path: Path) -> None:
    """Read every tensor once: a truncated or garbled file fails here with a clear message."""
    try:
        with safe_open(path, framework="pt") as f:
            for name in f.keys():
                f.get_tensor(name)
    except (SafetensorError, OSError, ValueError, RuntimeError) as exc:
        raise CheckpointError(f"{path}: corrupt safetensors file: {exc}") from exc


def _read_config(dir: Path) -> dict:
    path = dir / "config.json"
    if not path.is_file():
        raise CheckpointError(f"{dir}: config.json missing")
    try:
        config = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise CheckpointError(f"{path}: invalid JSON: {exc}") from exc
    if not isinstance(config, dict):
        raise CheckpointError(f"{path}: expected a JSON object, got {type(config).__name__}")
    if config.get("model_type") != "longcat_flash":
        raise CheckpointError(f"{path}: model_type is {config.get('model_type')!r}, expected 'longcat_flash'")
    for key in ("vocab_size", "hidden_size", "num_layers", "n_routed_experts", "moe_topk"):
        if not isinstance(config.get(key), int) or config[key] <= 0:
            raise CheckpointError(f"{path}: {key} is {config.get(key)!r}, expected a positive integer")
    return config


def _compare_config(dir: Path, config: dict, expected: dict) -> None:
    differing = [key for key, value in expected.items() if config.get(key, _MISSING) != value]
    if differing:
        details = "; ".join(f"{k}: expected {expected[k]!r}, found {config.get(k, '<absent>')!r}" for k in differing)
        raise CheckpointError(f"{dir}: config.json differs from the expected config in {', '.join(differing)} ({details})")


_MISSING = object()


def _restore_router_biases(model, dir: Path) -> None:
    """Copy e_score_correction_bias from the file, and fail if any did not come back exactly."""
    with safe_open(dir / WEIGHTS_FILE, framework="pt") as f:
        saved = {name: f.get_tensor(name) for name in f.keys() if name.endswith(BIAS_SUFFIX)}
    buffers = {name: buf for name, buf in model.named_buffers() if name.endswith(BIAS_SUFFIX)}
    if set(saved) != set(buffers):
        raise CheckpointError(f"{dir}: router biases in the file ({len(saved)}) do not match the model ({len(buffers)})")
    with torch.no_grad():
        for name, buf in buffers.items():
            if not torch.equal(buf, saved[name].to(buf.dtype)):
                buf.copy_(saved[name])


def _short(problems: dict) -> str:
    return "; ".join(f"{k}: {', '.join(map(str, list(v)[:5]))}{' ...' if len(v) > 5 else ''}" for k, v in problems.items())
