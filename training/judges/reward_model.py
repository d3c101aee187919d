"""A Bradley-Terry reward model on the generator's LongCat-Flash MoE backbone.

``train_reward_model(pairs, RewardModelConfig(...), out_dir)`` trains ``LongcatFlashModel`` (from a
preset, or a generator checkpoint's backbone and tokenizer) plus a linear head on the last
non-pad token (the ``<eos>`` of ``<bos> prompt <sep> greeting <eos>``). Loss
``-log sigmoid(r_chosen - r_rejected)``; pairs the length rule gets wrong or cannot tell apart
weigh ``hard_pair_weight``, so the model learns more than length. Validated on a salted split by
query; calibrated to Good/Bad by the threshold that best separates validation chosen from
rejected (``score = sigmoid((r - threshold) / scale)``). ``on_progress(dict)`` returning False stops it.
Saved atomically as a folder (backbone safetensors, tokenizer, ``reward_head.safetensors``,
``reward_model.json``, ``trained_queries.json`` for the leakage guard); ``RewardModelJudge.load``.
"""
from __future__ import annotations

import json
import math
import shutil
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file
from torch import nn

from generation.checkpoint import (CheckpointError, _fsync_tree, _restore_router_biases, check_checkpoint,
                                   replace_dir_atomically)
from generation.moe import enable_fast_moe
from generation.presets import Preset
from generation.tokenizer import encode_prompt
from training.judges.base import BAD, GOOD, Verdict
from training.judges.registry import write_trained_queries


META_FILE = "reward_model.json"
HEAD_FILE = "reward_head.safetensors"
FORMAT_VERSION = 1
INIT_LR_FACTOR = 0.25  # of the preset's lr, when the backbone starts from a generator checkpoint
# Defaults measured with bench.reward_model (small, held-out overall / chosen-not-longer / length-matched):
# 300 steps, weight 2: 0.989 / 0.909 / 0.923; 600 steps, weight 2: 0.990 / 0.841 / 0.952; 600 steps,
# weight 4: 0.994 / 0.955 / 0.962 (the best, seed 0; seeds 1 and 2: 0.989 / 0.864 / 0.923 and 0.994 / 0.909 / 0.942;
# TF-IDF 0.996 / 0.977 / 0.990); weight 8: 0.989 / 0.841 / 0.923.
STEPS_FACTOR = 1.5  # of the preset's max_steps (the generator's): ~1.35 epochs of the paper's pairs on small


class RewardModelError(Exception):
    """Training that cannot start or a reward-model folder that cannot be loaded."""


@dataclass
class RewardModelConfig:
    preset: str | Preset = "small"
    init_checkpoint: Path | None = None  # a generator checkpoint folder to start the backbone from
    max_steps: int | None = None  # default: STEPS_FACTOR x the preset's max_steps (small: 600)
    batch_pairs: int | None = None  # pairs per step; default: half the preset's batch size
    lr: float | None = None  # default: the preset's lr, or INIT_LR_FACTOR of it from a generator checkpoint
    seed: int = 0
    validation_fraction: float = 0.1
    hard_pair_weight: float = 4.0  # loss weight of pairs the length rule gets wrong or cannot tell apart
    eval_every: int | None = None  # default: about 4 evaluations per run
    max_validation_pairs: int = 600  # validation evaluation is a forward pass over these (both sides)
    pooling: str = "last"  # "last": the last non-pad token; "mean": the mean over real tokens
    name: str = "reward-model"
    progress_bar: bool = True
    fast_moe: bool = True


@dataclass
class RewardModelResult:
    folder: Path | None
    metrics: dict
    history: list[dict] = field(default_factory=list)
    completed: bool = True
    judge: "RewardModelJudge | None" = None


# --------------------------------------------------------------------------------------------
# The model


class RewardModel(nn.Module):
    def __init__(self, backbone: nn.Module, pooling: str = "last"):
        super().__init__()
        if pooling not in ("last", "mean"):
            raise RewardModelError(f"pooling must be 'last' or 'mean', not {pooling!r}")
        self.backbone = backbone
        self.pooling = pooling
        self.head = nn.Linear(backbone.config.hidden_size, 1)
        nn.init.normal_(self.head.weight, std=1.0 / math.sqrt(backbone.config.hidden_size))
        nn.init.zeros_(self.head.bias)

    def forward(self, input_ids: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        """One scalar reward per right-padded sequence of `lengths` real tokens."""
        hidden = self.backbone(input_ids=input_ids).last_hidden_state  # [B, S, H]
        if self.pooling == "last":
            pooled = hidden[torch.arange(hidden.shape[0], device=hidden.device), lengths - 1]
        else:
            mask = (torch.arange(hidden.shape[1], device=hidden.device)[None, :] < lengths[:, None]).to(hidden.dtype)
            pooled = (hidden * mask[..., None]).sum(1) / lengths[:, None].to(hidden.dtype)
        return self.head(pooled).squeeze(-1)


def encode_item(tokenizer, query: str, response: str, seq_len: int) -> list[int]:
    """<bos> prompt <sep> response <eos>, the response cut so that <eos> always ends it."""
    prompt = encode_prompt(tokenizer, query)[: seq_len // 2]
    answer = tokenizer.encode(response.strip(), add_special_tokens=False)[: seq_len - len(prompt) - 1]
    return prompt + answer + [tokenizer.eos_token_id]


def collate(seqs: Sequence[list[int]], pad_id: int) -> tuple[torch.Tensor, torch.Tensor]:
    width = max(len(s) for s in seqs)
    ids = torch.full((len(seqs), width), pad_id, dtype=torch.long)
    for row, seq in enumerate(seqs):
        ids[row, : len(seq)] = torch.tensor(seq)
    return ids, torch.tensor([len(s) for s in seqs])


@torch.no_grad()
def compute_rewards(model: RewardModel, seqs: Sequence[list[int]], pad_id: int, batch_size: int = 64) -> list[float]:
    """Rewards in input order; batches of similar length to waste little on padding."""
    was_training = model.training
    model.eval()
    order = sorted(range(len(seqs)), key=lambda i: len(seqs[i]))
    out = [0.0] * len(seqs)
    device = next(model.parameters()).device
    for start in range(0, len(order), batch_size):
        chunk = order[start : start + batch_size]
        ids, lengths = collate([seqs[i] for i in chunk], pad_id)
        for i, value in zip(chunk, model(ids.to(device), lengths.to(device)).float().tolist()):
            out[i] = value
    model.train(was_training)
    return out


# --------------------------------------------------------------------------------------------
# The judge


@dataclass
class RewardModelJudge:
    model: RewardModel
    tokenizer: object
    threshold: float = 0.0
    scale: float = 1.0
    seq_len: int = 128
    name: str = "reward-model"
    info: dict = field(default_factory=dict)
    batch_size: int = 64

    @property
    def version(self) -> str:
        return self.name

    def rewards(self, queries: Sequence[str], responses: Sequence[str]) -> list[float]:
        if len(queries) != len(responses):
            raise ValueError(f"{len(queries)} queries but {len(responses)} responses")
        if not responses:
            return []
        seqs = [encode_item(self.tokenizer, q, r, self.seq_len) for q, r in zip(queries, responses)]
        return compute_rewards(self.model, seqs, self.tokenizer.pad_token_id, self.batch_size)

    def scores(self, queries: Sequence[str], responses: Sequence[str]) -> list[float]:
        return [_sigmoid((r - self.threshold) / self.scale) for r in self.rewards(queries, responses)]

    def evaluate(self, query: str, response: str) -> Verdict:
        reward = self.rewards([query], [response])[0]
        score = _sigmoid((reward - self.threshold) / self.scale)
        return Verdict(GOOD if score >= 0.5 else BAD, score,
                       f"reward {reward:.3f} vs threshold {self.threshold:.3f}", self.version)

    @classmethod
    def load(cls, folder: Path) -> "RewardModelJudge":
        return load_reward_model(Path(folder))


def _sigmoid(x: float) -> float:
    return 1.0 / (1.0 + math.exp(-min(max(x, -50.0), 50.0)))


# --------------------------------------------------------------------------------------------
# Saving and loading


def save_reward_model(judge: RewardModelJudge, folder: Path, preset: Preset, metrics: dict, history: list[dict],
                      trained_queries: Sequence[str] = ()) -> Path:
    folder = Path(folder)
    folder.parent.mkdir(parents=True, exist_ok=True)
    tmp = folder.parent / f".{folder.name}.tmp-{uuid.uuid4().hex[:8]}"
    try:
        judge.model.backbone.save_pretrained(tmp, safe_serialization=True)
        judge.tokenizer.save_pretrained(tmp)
        head = judge.model.head
        save_file({"weight": head.weight.detach().contiguous().cpu(), "bias": head.bias.detach().contiguous().cpu()},
                  str(tmp / HEAD_FILE))
        meta = {"kind": "reward_model", "format_version": FORMAT_VERSION, "name": judge.name,
                "threshold": judge.threshold, "scale": judge.scale, "seq_len": judge.seq_len,
                "preset": preset.name, "pooling": judge.model.pooling, "init": judge.info.get("init"),
                "metrics": metrics, "history": history}
        (tmp / META_FILE).write_text(json.dumps(meta, ensure_ascii=False, indent=2, default=str), encoding="utf-8")
        write_trained_queries(tmp, trained_queries)
        _fsync_tree(tmp)
        replace_dir_atomically(tmp, folder)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return folder


def read_meta(folder: Path) -> dict:
    path = folder / META_FILE
    if not folder.is_dir():
        raise RewardModelError(f"reward-model folder {folder} does not exist")
    if not path.is_file():
        raise RewardModelError(f"{folder}: missing {META_FILE} (not a reward-model folder)")
    try:
        meta = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise RewardModelError(f"{path}: invalid JSON: {exc}") from exc
    if not isinstance(meta, dict) or meta.get("kind") != "reward_model":
        raise RewardModelError(f"{path}: not a reward-model description (kind={meta.get('kind') if isinstance(meta, dict) else None!r})")
    for key in ("threshold", "scale", "seq_len"):
        if isinstance(meta.get(key), bool) or not isinstance(meta.get(key), (int, float)):
            raise RewardModelError(f"{path}: {key} is {meta.get(key)!r}, expected a number")
    if meta["scale"] <= 0 or meta["seq_len"] < 4:
        raise RewardModelError(f"{path}: scale must be positive and seq_len at least 4")
    return meta


def load_reward_model(folder: Path) -> RewardModelJudge:
    """A RewardModelJudge from a saved folder; safetensors only; RewardModelError names any problem."""
    from transformers import AutoTokenizer, LongcatFlashModel

    meta = read_meta(folder)
    try:
        check_checkpoint(folder)  # safetensors present and readable, config.json sane, tokenizer there
    except CheckpointError as exc:
        raise RewardModelError(f"reward model backbone: {exc}") from exc
    head_path = folder / HEAD_FILE
    if not head_path.is_file():
        raise RewardModelError(f"{folder}: missing {HEAD_FILE}")
    try:
        head = load_file(str(head_path))
    except (SafetensorError, OSError, ValueError) as exc:
        raise RewardModelError(f"{head_path}: corrupt safetensors file: {exc}") from exc
    try:
        backbone, info = LongcatFlashModel.from_pretrained(folder, use_safetensors=True, trust_remote_code=False,
                                                           output_loading_info=True, dtype=torch.float32)
        tokenizer = AutoTokenizer.from_pretrained(folder, trust_remote_code=False)
    except Exception as exc:  # transformers raises many types; name the folder and the cause
        raise RewardModelError(f"{folder}: the backbone or tokenizer could not be loaded: {exc}") from exc
    problems = {k: v for k, v in info.items() if k in ("missing_keys", "unexpected_keys", "mismatched_keys") and v}
    if problems:
        raise RewardModelError(f"{folder}: backbone weights do not match config.json: {problems}")
    try:
        _restore_router_biases(backbone, folder)
    except CheckpointError as exc:
        raise RewardModelError(str(exc)) from exc
    model = RewardModel(enable_fast_moe(backbone), meta.get("pooling", "last"))
    hidden = backbone.config.hidden_size
    if set(head) != {"weight", "bias"} or tuple(head["weight"].shape) != (1, hidden) or tuple(head["bias"].shape) != (1,):
        raise RewardModelError(f"{head_path}: expected weight [1, {hidden}] and bias [1], "
                               f"found {({k: tuple(v.shape) for k, v in head.items()})}")
    with torch.no_grad():
        model.head.weight.copy_(head["weight"])
        model.head.bias.copy_(head["bias"])
    model.eval()
    return RewardModelJudge(model, tokenizer, float(meta["threshold"]), float(meta["scale"]), int(meta["seq_len"]),
                            meta.get("name", folder.name),
                            info={"preset": meta.get("preset"), "pooling": meta.get("pooling"),
                                  "metrics": meta.get("metrics", {}), "init": meta.get("init")})
