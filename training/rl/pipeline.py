"""The RLAIF round as plain functions, each callable alone (no Django; webapp/rlaif wires the registry):

    sft_dir  = sft_stage(preset="small", data_paths=[...], out_dir=run / "sft")
    judge    = judge_stage(pair_files=[...], out_dir=run / "judge", exclude_queries=heldout)  # or any loaded judge
    grpo     = grpo_stage(GRPOConfig(init_checkpoint=sft_dir, out_dir=run / "grpo", prompts=train_prompts), judge)
    before   = evaluation_stage(sft_dir, heldout, judge, reference=sft_dir, training_greetings=texts)
    after    = evaluation_stage(grpo.checkpoint_dir, heldout, judge, reference=sft_dir, training_greetings=texts)
    decision = gate_stage(after, before)            # promotion itself is the web app's (registry)
"""
from __future__ import annotations

from pathlib import Path
from typing import Iterable, Sequence

from generation.checkpoint import read_metadata
from generation.conditioning import DEFAULT_FORMAT
from generation.guards import CopyDetector
from training.data.examples import STARTER_FILES, load_examples
from training.judges.data import load_pairs
from training.judges.registry import write_trained_queries
from training.rl.evaluation import EvalSettings, evaluate_generation
from training.rl.gate import GateConfig, GateDecision, gate
from training.rl.grpo import GRPOConfig, GRPOResult, train_grpo
from training.trainer import TrainConfig, TrainingError, train_model


def sft_stage(*, preset: str, data_paths: Sequence[Path], out_dir: Path, max_steps: int | None = None, seed: int = 0,
              on_progress=None, progress_bar: bool = True) -> Path:
    """The SFT cold start (training.trainer); returns the checkpoint folder."""
    result = train_model(TrainConfig(preset=preset, data_paths=list(data_paths), out_dir=Path(out_dir), seed=seed,
                                     max_steps=max_steps, progress_bar=progress_bar), on_progress=on_progress)
    if result.checkpoint_dir is None:
        raise TrainingError("SFT was stopped before it finished")
    return result.checkpoint_dir


def judge_stage(*, pair_files: Sequence[Path], out_dir: Path, exclude_queries: Iterable[str] = (), name: str = "tfidf-rlaif",
                excellence_quantile: float | None = None):
    """A TF-IDF judge trained on preference pairs, leaving out ``exclude_queries`` (the held-out
    evaluation prompts, so the judge has not seen their answers). Saved to ``out_dir``.

    By default Good/Bad is calibrated to separate chosen from rejected texts, which passes almost
    any fluent greeting (an SFT model scores ~95%: no room to measure a gain). With
    ``excellence_quantile`` q, Good means "scores above the q-quantile of the chosen greetings":
    an excellence bar rather than an acceptability bar."""
    from training.judges.tfidf import train_tfidf_judge

    excluded = {q.strip() for q in exclude_queries}
    pairs = [p for f in pair_files for p in load_pairs(Path(f)) if p.query.strip() not in excluded and p.chosen != p.rejected]
    if not pairs:
        raise ValueError("pair_files: no preference pairs left after excluding the held-out queries")
    judge = train_tfidf_judge([p.chosen for p in pairs], [p.rejected for p in pairs], name=name)
    if excellence_quantile is not None:
        if not 0 < excellence_quantile < 1:
            raise ValueError(f"excellence_quantile must be in (0, 1), got {excellence_quantile}")
        import numpy as np

        judge.threshold = float(np.quantile(judge.rewards([p.chosen for p in pairs]), excellence_quantile))
        judge.info["excellence_quantile"] = excellence_quantile
    out_dir = Path(out_dir)
    judge.save(out_dir)
    write_trained_queries(out_dir, (p.query for p in pairs))
    return judge


def grpo_stage(cfg: GRPOConfig, judge, resume: bool = False, on_progress=None) -> GRPOResult:
    return train_grpo(cfg, judge, resume=resume, on_progress=on_progress)


def evaluation_stage(checkpoint: Path, prompts: Sequence[str], judge, reference: Path | None = None,
                     training_greetings: Iterable[str] | None = None, settings: EvalSettings | None = None) -> dict:
    return evaluate_generation(checkpoint, prompts, judge, reference, training_greetings=training_greetings,
                               settings=settings)


def gate_stage(candidate_report: dict, active_report: dict, cfg: GateConfig = GateConfig()) -> GateDecision:
    return gate(candidate_report, active_report, cfg)


def lineage(checkpoint: Path) -> list[Path]:
    """The checkpoint and the ones it was fine-tuned from (zhufu.json "parent"), newest first."""
    chain, seen = [], set()
    current: Path | None = Path(checkpoint)
    while current is not None and current not in seen and current.is_dir():
        seen.add(current)
        chain.append(current)
        parent = read_metadata(current).get("parent")
        current = Path(parent) if parent else None
    return chain


def sft_data_paths(checkpoint: Path) -> list[Path]:
    """The SFT data files at the root of a checkpoint's lineage (what novelty compares with)."""
    for folder in reversed(lineage(checkpoint)):
        paths = (read_metadata(folder).get("data") or {}).get("paths")
        if paths:
            return [Path(p) for p in paths]
    return []


def describe_backend(backend, checkpoint: Path, name: str):
    """What the greeting path needs to know of the checkpoint behind a backend: its name (for
    provenance), how it reads requests, and the greetings it was trained on (the copy guard)."""
    backend.checkpoint_name = name
    backend.prompt_format = read_metadata(Path(checkpoint)).get("prompt_format", DEFAULT_FORMAT)
    greetings = training_greetings(Path(checkpoint))
    backend.copies = CopyDetector(greetings) if greetings else None
    return backend


def training_greetings(checkpoint: Path, extra_paths: Sequence[Path] = ()) -> list[str] | None:
    """The greetings the checkpoint's SFT saw (plus ``extra_paths``); None when none can be found."""
    paths = [p for p in sft_data_paths(checkpoint) if p.is_file()] + [Path(p) for p in extra_paths]
    if not paths and all(p.is_file() for p in STARTER_FILES):
        paths = list(STARTER_FILES)  # the trainer's default corpus
    if not paths:
        return None
    return [response for _, response in load_examples(paths)]
