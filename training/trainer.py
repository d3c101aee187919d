"""Train a LongCat-Flash MoE greeting model, top to bottom (nanoGPT style).

    result = train_model(TrainConfig(preset="small", data_paths=[], out_dir=Path("runs/a")))

* Objectives: ``sft`` (prompt + response, loss masked on the prompt) or ``pretrain`` (plain
  text: query lines and responses, loss on every token).
* CPU by default, CUDA when present (bf16 autocast there). Seeded; ``deterministic`` also
  turns on torch's deterministic algorithms and runs single-threaded.
* Resumable: every ``save_every`` steps (and when stopped) the run folder's ``state/`` gets
  the model, AdamW moments, RNG states and step as safetensors + JSON (never pickle). The
  learning rate is a pure function of the step and the batch order a pure function of
  (seed, step), so resuming in deterministic mode repeats an uninterrupted run exactly.
* Routing (LongCat-Flash): after every optimiser step ``update_router_bias`` steers the
  average number of real experts per token towards the preset's K_e; optional balance loss
  and hidden z-loss per the preset.
* Metrics every ``log_every`` steps go to ``metrics.jsonl`` and ``on_progress(dict)``;
  ``on_progress`` returning False stops training cleanly (state saved, resumable).

No Django here: the web app wraps these functions. On a CPU shared with other jobs, start the
process with ``OMP_WAIT_POLICY=PASSIVE`` (it must be set before torch is imported): spinning
OpenMP threads made ``small`` ~6x slower on 2 busy cores.
"""
from __future__ import annotations

import json
import math
import os
import random
import time
from contextlib import contextmanager, nullcontext
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file
from tqdm import tqdm

from generation.checkpoint import replace_dir_atomically, save_checkpoint
from generation.presets import Preset, PresetError, get_preset
from generation.tokenizer import build_example, build_tokenizer, example_texts
from training.data.conditioning import condition_examples
from training.data.examples import STARTER_FILES, file_sha256, load_examples, load_texts, split_by_query
from training.data.formats import FormatError
from training.routing import RoutingRecorder, balance_loss, hidden_z_loss, update_router_bias

OBJECTIVES = ("sft", "pretrain")
IGNORE = -100  # label value the loss skips (prompt and padding)


class TrainingError(Exception):
    """A run that cannot start or resume; the message names the problem."""


@dataclass
class TrainConfig:
    preset: str  # a preset name (or, for benchmarks, a Preset object)
    data_paths: list[Path]  # empty -> the starter corpus files
    out_dir: Path  # the run folder; checkpoint written into out_dir / "checkpoint"
    seed: int = 0
    deterministic: bool = False
    max_steps: int | None = None  # override the preset
    fast_moe: bool = True
    device: str | None = None  # None = cuda if available else cpu
    objective: str = "sft"
    progress_bar: bool = True
    patience: int | None = None  # stop after this many logs without a better held-out loss, keep the best weights
    prompt_format: str = "query"  # "slots": queries become the parsed request slots (generation.conditioning)
    init_checkpoint: Path | None = None  # start from this checkpoint's weights and tokenizer (SFT after pretraining)
    text_paths: list[Path] = field(default_factory=list)  # pretrain only: JSON Lines of {"text": ...} documents
    max_texts: int | None = None  # pretrain only: a seeded sample of this many documents from text_paths


@dataclass
class TrainResult:
    checkpoint_dir: Path | None  # None when stopped early (resume to finish)
    metrics: dict
    model_config: dict
    data: dict
    completed: bool = True
    history: list[dict] = field(default_factory=list)  # every logged metrics dict


# --------------------------------------------------------------------------------------------
# The training loop


def train_model(cfg: TrainConfig, resume: bool = False, on_progress=None) -> TrainResult:
    preset = resolve_preset(cfg)
    device = pick_device(cfg.device)
    out_dir = Path(cfg.out_dir)
    with determinism(cfg.deterministic):
        torch.manual_seed(cfg.seed)
        random.seed(cfg.seed)
        examples, texts, data_info = load_data(cfg)
        if cfg.prompt_format == "slots":
            examples, data_info["conditioning"] = condition_examples(examples, cfg.prompt_format)
        train_ex, heldout_ex = split_by_query(examples, preset.heldout_fraction, cfg.seed)
        data_info.update(train_examples=len(train_ex), heldout_examples=len(heldout_ex))
        spec = run_spec(cfg, preset, data_info)
        state_dir = out_dir / "state"

        if resume:
            check_resumable(out_dir, spec)
            from transformers import AutoTokenizer

            tokenizer = AutoTokenizer.from_pretrained(state_dir)
        elif cfg.init_checkpoint is not None:
            from transformers import AutoTokenizer

            tokenizer = AutoTokenizer.from_pretrained(cfg.init_checkpoint)
            out_dir.mkdir(parents=True, exist_ok=True)
            (out_dir / "metrics.jsonl").unlink(missing_ok=True)
            write_json(out_dir / "run.json", spec)
        else:
            tokenizer = build_tokenizer(example_texts(train_ex) + texts, min_freq=preset.tokenizer_min_freq)
            out_dir.mkdir(parents=True, exist_ok=True)
            (out_dir / "metrics.jsonl").unlink(missing_ok=True)
            write_json(out_dir / "run.json", spec)

        train_seqs = encode(tokenizer, train_ex, texts, cfg.objective, preset.seq_len)
        heldout_seqs = encode(tokenizer, heldout_ex, [], cfg.objective, preset.seq_len)
        if not train_seqs:
            raise TrainingError("the corpus has no training examples left after the held-out split")

        model = build_model(preset, tokenizer, cfg.seed, cfg.init_checkpoint).to(device)
        if cfg.fast_moe:
            from generation.moe import enable_fast_moe

            model = enable_fast_moe(model)
        optimizer = make_optimizer(model, preset)
        step, history, window = 0, [], Window()
        if resume:
            step, history, window = load_state(state_dir, model, optimizer, device)
            rewrite_jsonl(out_dir / "metrics.jsonl", history)  # drop lines logged after the last save

        recorder = RoutingRecorder(model).attach()
        autocast = torch.autocast("cuda", dtype=torch.bfloat16) if device.type == "cuda" else nullcontext()
        max_steps = preset.max_steps
        bar = tqdm(total=max_steps, initial=step, desc=f"train {preset.name}", unit="step",
                   disable=not cfg.progress_bar, dynamic_ncols=True)
        start_step, started = step, time.perf_counter()
        stopped = False
        best = BestWeights(cfg.patience)

        while step < max_steps:
            set_lr(optimizer, lr_at(step, preset))
            input_ids, labels, n_tokens = get_batch(train_seqs, step, preset.batch_size, cfg.seed, tokenizer.pad_token_id)
            input_ids, labels = input_ids.to(device), labels.to(device)

            real_tokens = input_ids != tokenizer.pad_token_id  # routing statistics skip padding
            loss, grad_norm, real_experts = train_step(model, optimizer, recorder, input_ids, labels, real_tokens,
                                                       preset, autocast)
            step += 1

            window.add(loss, n_tokens, grad_norm)
            elapsed = time.perf_counter() - started
            eta = elapsed / max(step - start_step, 1) * (max_steps - step)
            bar.update(1)
            bar.set_postfix(loss=f"{loss:.3f}")
            keep_going = notify(on_progress, {"event": "step", "step": step, "max_steps": max_steps,
                                              "loss": loss, "real_experts_per_token": real_experts,
                                              "elapsed_s": elapsed, "eta_s": eta})

            if step % preset.log_every == 0 or step == max_steps:
                metrics = log_metrics(step, max_steps, window, recorder.stats(real_tokens), optimizer, elapsed, eta)
                metrics["heldout_loss"] = heldout_loss(model, heldout_seqs, preset, tokenizer.pad_token_id,
                                                       device, autocast, preset.eval_batches)
                recorder.clear()  # eval forwards must not count as training routing
                history.append(metrics)
                append_jsonl(out_dir / "metrics.jsonl", metrics)
                keep_going = notify(on_progress, {"event": "log", **metrics}) and keep_going
                window = Window()
                if best.offer(model, step, metrics["heldout_loss"]):
                    bar.write(f"early stop at step {step}: no better held-out loss since step {best.step}")
                    break
            if step % preset.save_every == 0 or not keep_going:
                save_state(state_dir, model, optimizer, tokenizer, step, history, window)
            if not keep_going and step < max_steps:
                stopped = True
                break
        bar.close()
        best.restore(model)

        model_config = model.config.to_dict()
        if stopped:  # the state is saved; resume=True finishes the run
            last = dict(history[-1]) if history else {"step": step}
            return TrainResult(None, last, model_config, data_info, completed=False, history=history)
        final = final_metrics(history, model, heldout_seqs, preset, tokenizer.pad_token_id, device, autocast)
        if best.step is not None:
            final.update(best_step=best.step, stopped_at_step=step)
        save_state(state_dir, model, optimizer, tokenizer, step, history, window)
        checkpoint_dir = save_checkpoint(model, tokenizer, out_dir / "checkpoint", {
            "preset": preset.name, "preset_config": preset.to_dict(), "train_config": jsonable(asdict(cfg)),
            "metrics": final, "data": data_info, "prompt_format": cfg.prompt_format,
        })
        notify(on_progress, {"event": "done", **final})
        return TrainResult(checkpoint_dir, final, model_config, data_info, completed=True, history=history)


# --------------------------------------------------------------------------------------------
# Setup


def resolve_preset(cfg: TrainConfig) -> Preset:
    """The preset named by cfg.preset (benchmarks may pass a Preset object), with max_steps applied."""
    if cfg.objective not in OBJECTIVES:
        raise TrainingError(f"unknown objective {cfg.objective!r}; valid objectives: {', '.join(OBJECTIVES)}")
    if isinstance(cfg.preset, Preset):
        preset = cfg.preset
    else:
        try:
            preset = get_preset(cfg.preset)
        except PresetError as exc:
            raise TrainingError(str(exc)) from None
    if cfg.max_steps is not None:
        if cfg.max_steps < 1:
            raise TrainingError(f"max_steps must be at least 1, got {cfg.max_steps}")
        preset = replace(preset, max_steps=cfg.max_steps)
    return preset


def pick_device(name: str | None) -> torch.device:
    if name is None:
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(name)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise TrainingError(f"device {name!r} requested but CUDA is not available")
    return device


@contextmanager
def determinism(enabled: bool):
    """Deterministic kernels and one CPU thread for the run; the caller's settings come back after."""
    if not enabled:
        yield
        return
    threads, was_deterministic = torch.get_num_threads(), torch.are_deterministic_algorithms_enabled()
    os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    torch.use_deterministic_algorithms(True)
    torch.set_num_threads(1)  # a fixed reduction order on CPU
    try:
        yield
    finally:
        torch.set_num_threads(threads)
        torch.use_deterministic_algorithms(was_deterministic)


def load_data(cfg: TrainConfig) -> tuple[list[tuple[str, str]], list[str], dict]:
    """(examples, extra plain texts for pretraining, description with sha256 of every file)."""
    paths = [Path(p) for p in cfg.data_paths] or list(STARTER_FILES)
    for path in paths:
        if not path.is_file():
            where = "starter corpus file" if not cfg.data_paths else "data file"
            raise TrainingError(f"{where} {path} does not exist")
    try:
        examples = load_examples(paths)
        texts = load_texts(paths) + document_texts(cfg) if cfg.objective == "pretrain" else []
    except FormatError as exc:
        raise TrainingError(f"cannot read training data: {exc}") from exc
    if not examples and not texts:
        raise TrainingError(f"the corpus is empty: no usable examples in {', '.join(map(str, paths))}")
    paths = paths + [Path(p) for p in cfg.text_paths if cfg.objective == "pretrain"]
    info = {
        "paths": [str(p) for p in paths],
        "sha256": {str(p): file_sha256(p) for p in paths},
        "examples": len(examples),
        "plain_texts": len(texts),
    }
    return examples, texts, info


def document_texts(cfg: TrainConfig) -> list[str]:
    """Pretraining documents from cfg.text_paths ({"text": ...} a line), a seeded sample when capped."""
    texts = []
    for path in cfg.text_paths:
        path = Path(path)
        if not path.is_file():
            raise TrainingError(f"text file {path} does not exist (python -m training.data.registry fetch makes it)")
        with open(path, encoding="utf-8") as handle:
            for number, line in enumerate(handle, 1):
                try:
                    texts.append(json.loads(line)["text"])
                except (json.JSONDecodeError, KeyError, TypeError) as exc:
                    raise TrainingError(f"{path} line {number}: not a {{\"text\": ...}} object ({exc})") from None
    if cfg.max_texts is not None and len(texts) > cfg.max_texts:
        texts = random.Random(cfg.seed).sample(texts, cfg.max_texts)
    return texts


def run_spec(cfg: TrainConfig, preset: Preset, data_info: dict) -> dict:
    """What a resumed run must share with the original one."""
    return {
        "preset": preset.to_dict(),
        "seed": cfg.seed,
        "objective": cfg.objective,
        "prompt_format": cfg.prompt_format,
        "data_sha256": sorted(data_info["sha256"].values()),
        "init_checkpoint": str(cfg.init_checkpoint) if cfg.init_checkpoint else None,
        "max_texts": cfg.max_texts,
    }


def check_resumable(out_dir: Path, spec: dict) -> None:
    run_file, state_file = out_dir / "run.json", out_dir / "state" / "state.json"
    if not run_file.is_file() or not state_file.is_file():
        raise TrainingError(f"nothing to resume in {out_dir}: no saved training state")
    saved = json.loads(run_file.read_text(encoding="utf-8"))
    differing = sorted(_diff_keys(saved, spec))
    if differing:
        raise TrainingError(f"cannot resume {out_dir}: the run was started with a different {', '.join(differing)}")


def _diff_keys(a: dict, b: dict, prefix: str = "") -> list[str]:
    keys = []
    for key in sorted(set(a) | set(b)):
        x, y = a.get(key), b.get(key)
        if isinstance(x, dict) and isinstance(y, dict):
            keys += _diff_keys(x, y, f"{prefix}{key}.")
        elif x != y:
            keys.append(f"{prefix}{key}")
    return keys


def encode(tokenizer, examples, texts, objective: str, seq_len: int) -> list[tuple[list[int], int]]:
    """(token ids, prompt length) per training sequence, cut to seq_len."""
    seqs = [build_example(tokenizer, q, r) for q, r in examples]
    if objective == "pretrain":
        seqs = [(ids, 0) for ids, _ in seqs]  # plain language modelling: loss on every token
        seqs += [([tokenizer.bos_token_id, *tokenizer.encode(t, add_special_tokens=False), tokenizer.eos_token_id], 0)
                 for t in texts]
    return [(ids[:seq_len], min(n_prompt, seq_len)) for ids, n_prompt in seqs if n_prompt < min(len(ids), seq_len)]


def build_model(preset: Preset, tokenizer, seed: int, init_checkpoint: Path | None = None):
    from transformers import LongcatFlashForCausalLM

    torch.manual_seed(seed)
    if init_checkpoint is None:
        return LongcatFlashForCausalLM(preset.model_config(tokenizer))
    from generation.checkpoint import load_checkpoint

    wanted = preset.model_config(tokenizer).to_dict()  # the preset's architecture, on this tokenizer
    expected = {key: wanted[key] for key in (*preset.model, "vocab_size") if key in wanted}
    model, _ = load_checkpoint(Path(init_checkpoint), expected_config=expected, fast_moe=False)
    return model.train()


def make_optimizer(model, preset: Preset) -> torch.optim.AdamW:
    """AdamW; matrices decay, vectors (norms) do not."""
    decay = [p for p in model.parameters() if p.requires_grad and p.dim() >= 2]
    no_decay = [p for p in model.parameters() if p.requires_grad and p.dim() < 2]
    groups = [{"params": decay, "weight_decay": preset.weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
    return torch.optim.AdamW(groups, lr=preset.lr, betas=(0.9, 0.95), eps=1e-8)


# --------------------------------------------------------------------------------------------
# One step's pieces


def lr_at(step: int, preset: Preset) -> float:
    """Linear warm-up, then cosine down to min_lr_ratio * lr."""
    if step < preset.warmup_steps:
        return preset.lr * (step + 1) / preset.warmup_steps
    progress = (step - preset.warmup_steps) / max(preset.max_steps - preset.warmup_steps, 1)
    cosine = 0.5 * (1 + math.cos(math.pi * min(progress, 1.0)))
    return preset.lr * (preset.min_lr_ratio + (1 - preset.min_lr_ratio) * cosine)


def set_lr(optimizer, lr: float) -> None:
    for group in optimizer.param_groups:
        group["lr"] = lr


def batch_indices(n: int, step: int, batch_size: int, seed: int) -> list[int]:
    """Sequence indices of a step: a fresh shuffle per epoch, a pure function of (seed, step)."""
    indices = []
    for sample in range(step * batch_size, (step + 1) * batch_size):
        epoch, pos = divmod(sample, n)
        indices.append(_epoch_order(n, seed, epoch)[pos])
    return indices


_ORDERS: dict[tuple[int, int, int], list[int]] = {}


def _epoch_order(n: int, seed: int, epoch: int) -> list[int]:
    key = (n, seed, epoch)
    if key not in _ORDERS:
        if len(_ORDERS) > 64:
            _ORDERS.clear()
        generator = torch.Generator().manual_seed(seed * 100_003 + epoch)
        _ORDERS[key] = torch.randperm(n, generator=generator).tolist()
    return _ORDERS[key]


def collate(seqs: list[tuple[list[int], int]], pad_id: int) -> tuple[torch.Tensor, torch.Tensor, int]:
    """Right-padded ids and labels (prompt and padding ignored) plus the count of loss tokens.

    No attention mask is needed: padding sits after every real token and attention is causal.
    """
    width = max(len(ids) for ids, _ in seqs)
    input_ids = torch.full((len(seqs), width), pad_id, dtype=torch.long)
    labels = torch.full((len(seqs), width), IGNORE, dtype=torch.long)
    for row, (ids, n_prompt) in enumerate(seqs):
        input_ids[row, : len(ids)] = torch.tensor(ids)
        labels[row, n_prompt : len(ids)] = torch.tensor(ids[n_prompt:])
    n_tokens = sum(len(ids) for ids, _ in seqs)
    return input_ids, labels, n_tokens


def get_batch(seqs, step: int, batch_size: int, seed: int, pad_id: int):
    return collate([seqs[i] for i in batch_indices(len(seqs), step, batch_size, seed)], pad_id)


def train_step(model, optimizer, recorder, input_ids, labels, real_tokens, preset: Preset, autocast):
    """One optimiser step and the router-bias update after it.

    Returns (LM loss, gradient norm, measured real experts per token of this step).
    """
    model.train()
    recorder.clear()
    with autocast:
        out = model(input_ids=input_ids, labels=labels, output_hidden_states=preset.z_loss_coef > 0)
        loss = out.loss + routing_losses(recorder, out, preset, real_tokens)
    loss.backward()
    grad_norm = torch.nn.utils.clip_grad_norm_(model.parameters(), preset.grad_clip).item()
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)
    real_experts = update_router_bias(model, recorder, preset.bias_update_rate, preset.target_real_experts, real_tokens)
    return out.loss.item(), grad_norm, real_experts


def routing_losses(recorder, out, preset: Preset, real_tokens) -> torch.Tensor:
    """The preset's auxiliary losses (0 when both are switched off)."""
    extra = out.loss.new_zeros(())
    if preset.balance_coef > 0:
        extra = extra + balance_loss(recorder, preset.balance_groups, preset.balance_coef,
                                     target_real_experts=preset.target_real_experts, token_mask=real_tokens)
    if preset.z_loss_coef > 0:
        # Every decoder layer's output (hidden_states[0] is the embedding).
        layers = torch.stack(out.hidden_states[1:])
        extra = extra + hidden_z_loss(layers, preset.z_loss_coef, token_mask=real_tokens.expand(layers.shape[:-1]))
    return extra


def notify(on_progress, payload: dict) -> bool:
    """Send a progress dict; the callback returns False to stop the run."""
    if on_progress is None:
        return True
    return on_progress(payload) is not False


# --------------------------------------------------------------------------------------------
# Metrics


class Window:
    """Running sums between two log lines."""

    def __init__(self):
        self.losses, self.grad_norms, self.tokens, self.started = [], [], 0, time.perf_counter()

    def add(self, loss: float, tokens: int, grad_norm: float) -> None:
        self.losses.append(loss)
        self.grad_norms.append(grad_norm)
        self.tokens += tokens


def log_metrics(step, max_steps, window: Window, stats: dict, optimizer, elapsed, eta) -> dict:
    """Window averages; routing statistics are those of the step just taken."""
    seconds = time.perf_counter() - window.started
    return {
        "step": step,
        "max_steps": max_steps,
        "loss": sum(window.losses) / len(window.losses),
        "lr": optimizer.param_groups[0]["lr"],
        "grad_norm": sum(window.grad_norms) / len(window.grad_norms),
        "tokens_per_s": window.tokens / max(seconds, 1e-9),
        "elapsed_s": elapsed,
        "eta_s": eta,
        **{k: jsonable(v) for k, v in stats.items()},
    }


class BestWeights:
    """Held-out early stopping: remembers the weights of the best held-out loss (on CPU)."""

    def __init__(self, patience: int | None):
        self.patience, self.step, self.loss, self.state, self.bad_logs = patience, None, float("inf"), None, 0

    def offer(self, model, step: int, loss: float | None) -> bool:
        """Record this log's held-out loss; True when training should stop."""
        if self.patience is None or loss is None:
            return False
        if loss < self.loss:
            self.step, self.loss, self.bad_logs = step, loss, 0
            self.state = {k: v.detach().to("cpu", copy=True) for k, v in model.state_dict().items()}
            return False
        self.bad_logs += 1
        return self.bad_logs >= self.patience

    def restore(self, model) -> None:
        if self.state is not None:
            model.load_state_dict(self.state)


@torch.no_grad()
def heldout_loss(model, seqs, preset: Preset, pad_id: int, device, autocast, max_batches: int | None) -> float | None:
    """Mean loss per response token over the first batches of the held-out set (fixed order)."""
    if not seqs:
        return None
    model.eval()
    total, count = 0.0, 0
    starts = range(0, len(seqs), preset.batch_size)
    for batch_no, start in enumerate(starts):
        if max_batches is not None and batch_no >= max_batches:
            break
        input_ids, labels, _ = collate(seqs[start : start + preset.batch_size], pad_id)
        n = int((labels[:, 1:] != IGNORE).sum())
        with autocast:
            out = model(input_ids=input_ids.to(device), labels=labels.to(device))
        total += out.loss.float().item() * n
        count += n
    model.train()
    return total / max(count, 1)


def final_metrics(history, model, heldout_seqs, preset, pad_id, device, autocast) -> dict:
    """The last log line, with the held-out loss over the whole held-out set."""
    final = dict(history[-1]) if history else {}
    final["heldout_loss"] = heldout_loss(model, heldout_seqs, preset, pad_id, device, autocast, None)
    final["heldout_sequences"] = len(heldout_seqs)
    return final


def jsonable(value):
    if isinstance(value, torch.Tensor):
        return value.tolist()
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, dict):
        return {k: jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [jsonable(v) for v in value]
    return value


def append_jsonl(path: Path, record: dict) -> None:
    with open(path, "a", encoding="utf-8") as f:
        f.write(json.dumps(jsonable(record), ensure_ascii=False) + "\n")


def rewrite_jsonl(path: Path, records: list[dict]) -> None:
    path.unlink(missing_ok=True)
    for record in records:
        append_jsonl(path, record)


def write_json(path: Path, data: dict) -> None:
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(jsonable(data), ensure_ascii=False, indent=2), encoding="utf-8")
    os.replace(tmp, path)


# --------------------------------------------------------------------------------------------
# Resumable state (safetensors + JSON)


def save_state(state_dir: Path, model, optimizer, tokenizer, step: int, history: list[dict], window: Window) -> None:
    tmp = state_dir.parent / f".{state_dir.name}.tmp"
    if tmp.exists():
        import shutil

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
