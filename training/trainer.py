"""Train a LongCat-Flash MoE greeting model: `train_model` is the loop, read top to bottom (nanoGPT style).

    result = train_model(TrainConfig(preset="small", data_paths=[], out_dir=Path("runs/a")))

* Objectives: ``sft`` (prompt + response, loss masked on the prompt) or ``pretrain`` (plain
  text: query lines and responses, loss on every token). CPU by default, CUDA when present (bf16
  autocast there). Seeded; ``deterministic`` also turns on torch's deterministic algorithms and
  runs single-threaded, and then a resumed run repeats an uninterrupted one exactly.
* The run folder (run.json, metrics.jsonl, the resume check, the progress bar) is training/runs.py;
  the saved state (every ``save_every`` steps and when stopped) training/state.py; one step's
  pieces (AdamW, schedule, batches, routing controls, metrics) training/steps.py.
* ``on_progress(dict)`` returning False stops training cleanly (state saved, resumable).

No Django here. On a CPU shared with other jobs, start the process with
``OMP_WAIT_POLICY=PASSIVE`` (before torch is imported; see bench/__init__.py for why).
"""
from __future__ import annotations

import json
import os
import random
from contextlib import contextmanager, nullcontext
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import torch
from transformers import AutoTokenizer

from generation.checkpoint import save_checkpoint
from generation.moe import enable_fast_moe
from generation.presets import Preset, PresetError, get_preset
from generation.tokenizer import build_tokenizer, example_texts
from training.data.conditioning import condition_examples
from training.data.examples import STARTER_FILES, file_sha256, load_examples, load_texts, split_by_query
from training.data.formats import FormatError
from training.routing import RoutingRecorder
from training.runs import Progress, RunFolder, TrainingError, jsonable, notify
from training.state import load_state, save_state
from training.steps import (BestWeights, Window, build_model, encode, final_metrics, get_batch, heldout_loss,
                            log_metrics, lr_at, make_optimizer, set_lr, train_step)

OBJECTIVES = ("sft", "pretrain")


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
        run = RunFolder(out_dir, TrainingError, what="training")

        if resume:
            run.check_resumable(spec)
            tokenizer = AutoTokenizer.from_pretrained(run.state_dir)
        elif cfg.init_checkpoint is not None:
            tokenizer = AutoTokenizer.from_pretrained(cfg.init_checkpoint)
            run.start(spec)
        else:
            tokenizer = build_tokenizer(example_texts(train_ex) + texts, min_freq=preset.tokenizer_min_freq)
            run.start(spec)

        train_seqs = encode(tokenizer, train_ex, texts, cfg.objective, preset.seq_len)
        heldout_seqs = encode(tokenizer, heldout_ex, [], cfg.objective, preset.seq_len)
        if not train_seqs:
            raise TrainingError("the corpus has no training examples left after the held-out split")

        model = build_model(preset, tokenizer, cfg.seed, cfg.init_checkpoint).to(device)
        if cfg.fast_moe:
            model = enable_fast_moe(model)
        optimizer = make_optimizer(model, preset)
        step, history, window = 0, [], Window()
        if resume:
            step, history, window = load_state(run.state_dir, model, optimizer, device)
            run.keep_metrics(history)  # drop lines logged after the last save

        recorder = RoutingRecorder(model).attach()
        autocast = torch.autocast("cuda", dtype=torch.bfloat16) if device.type == "cuda" else nullcontext()
        max_steps = preset.max_steps
        bar = Progress(max_steps, initial=step, desc=f"train {preset.name}", enabled=cfg.progress_bar)
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
            elapsed, eta = bar.advance(step, loss=f"{loss:.3f}")
            keep_going = notify(on_progress, {"event": "step", "step": step, "max_steps": max_steps,
                                              "loss": loss, "real_experts_per_token": real_experts,
                                              "elapsed_s": elapsed, "eta_s": eta})

            if step % preset.log_every == 0 or step == max_steps:
                metrics = log_metrics(step, max_steps, window, recorder.stats(real_tokens), optimizer, elapsed, eta)
                metrics["heldout_loss"] = heldout_loss(model, heldout_seqs, preset, tokenizer.pad_token_id,
                                                       device, autocast, preset.eval_batches)
                recorder.clear()  # eval forwards must not count as training routing
                history.append(metrics)
                run.log(metrics)
                keep_going = notify(on_progress, {"event": "log", **metrics}) and keep_going
                window = Window()
                if best.offer(model, step, metrics["heldout_loss"]):
                    bar.write(f"early stop at step {step}: no better held-out loss since step {best.step}")
                    break
            if step % preset.save_every == 0 or not keep_going:
                save_state(run.state_dir, model, optimizer, tokenizer, step, history, window)
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
        save_state(run.state_dir, model, optimizer, tokenizer, step, history, window)
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
