"""A training run's folder and progress, shared by the loops (SFT, reward model, GRPO; MARL may adopt it).

    run = RunFolder(out_dir, TrainingError, what="training")
    run.check_resumable(spec) if resume else run.start(spec)
    bar = Progress(max_steps, initial=step, desc="train small", enabled=cfg.progress_bar)
    elapsed, eta = bar.advance(step, loss=f"{loss:.3f}")
    run.log(metrics)

The folder holds ``run.json`` (what a resumed run must share with the original), ``metrics.jsonl``
(one logged dict a line) and ``state/`` (the loop's resumable state, ``state/state.json`` among it;
training/state.py writes it for model + AdamW loops). JSON is written atomically, tensors and paths
become lists and strings. No torch import here: anything with ``tolist()`` counts as a tensor.
"""
from __future__ import annotations

import json
import os
import time
from pathlib import Path

from tqdm import tqdm


class TrainingError(Exception):
    """A run that cannot start or resume; the message names the problem."""


class RunFolder:
    """run.json, metrics.jsonl and state/ of one run; `error` is the loop's own exception class."""

    def __init__(self, path: Path, error: type[Exception], what: str = "training"):
        self.path, self.error, self.what = Path(path), error, what
        self.run_file, self.metrics_file = self.path / "run.json", self.path / "metrics.jsonl"
        self.state_dir = self.path / "state"

    def start(self, spec: dict) -> None:
        """A fresh run: the folder exists, no old metrics, run.json is this run's spec."""
        self.path.mkdir(parents=True, exist_ok=True)
        self.metrics_file.unlink(missing_ok=True)
        write_json(self.run_file, spec)

    def check_resumable(self, spec: dict) -> None:
        """Raise `error` naming the problem unless a saved state of a run with this spec is here."""
        if not self.run_file.is_file() or not (self.state_dir / "state.json").is_file():
            raise self.error(f"nothing to resume in {self.path}: no saved {self.what} state")
        saved = json.loads(self.run_file.read_text(encoding="utf-8"))
        differing = sorted(diff_keys(saved, spec))
        if differing:
            raise self.error(f"cannot resume {self.path}: the run was started with a different {', '.join(differing)}")

    def log(self, metrics: dict) -> None:
        append_jsonl(self.metrics_file, metrics)

    def keep_metrics(self, history: list[dict]) -> None:
        """On resume: metrics.jsonl becomes the saved history (lines logged after the last save go)."""
        rewrite_jsonl(self.metrics_file, history)


class Progress:
    """A tqdm bar (off when `enabled` is False) that also gives the elapsed time and the ETA."""

    def __init__(self, total: int, *, initial: int = 0, desc: str, enabled: bool = True):
        self.total, self.start_step = total, initial
        self.started = time.perf_counter()
        self.bar = tqdm(total=total, initial=initial, desc=desc, unit="step", disable=not enabled, dynamic_ncols=True)

    def times(self, step: int) -> tuple[float, float]:
        """(seconds since the bar started, estimated seconds to `total` at this run's pace)."""
        elapsed = time.perf_counter() - self.started
        return elapsed, elapsed / max(step - self.start_step, 1) * (self.total - step)

    def advance(self, step: int, **postfix) -> tuple[float, float]:
        """One step done (now at `step`): move the bar, show `postfix`; returns times(step)."""
        self.bar.update(1)
        if postfix:
            self.bar.set_postfix(**postfix)
        return self.times(step)

    def write(self, message: str) -> None:
        self.bar.write(message)

    def close(self) -> None:
        self.bar.close()


def notify(on_progress, payload: dict) -> bool:
    """Send a progress dict; the callback returns False to stop the run."""
    if on_progress is None:
        return True
    return on_progress(payload) is not False


def diff_keys(a: dict, b: dict, prefix: str = "") -> list[str]:
    """Dotted keys whose values differ between two nested dicts."""
    keys = []
    for key in sorted(set(a) | set(b)):
        x, y = a.get(key), b.get(key)
        if isinstance(x, dict) and isinstance(y, dict):
            keys += diff_keys(x, y, f"{prefix}{key}.")
        elif x != y:
            keys.append(f"{prefix}{key}")
    return keys


def jsonable(value):
    if hasattr(value, "tolist") and not isinstance(value, (list, tuple, dict)):  # a tensor (or a numpy value)
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
