"""Train a generator run and register its checkpoint: the glue between training/ and the registry."""
import json
import secrets
from datetime import datetime, timezone
from pathlib import Path

from django.conf import settings
from django.db import transaction

from training.runs import jsonable
from webapp.checkpoints.models import Checkpoint
from webapp.checkpoints.services import RegistryError, promote_checkpoint, register_checkpoint


class TrainingStopped(RegistryError):
    """on_progress asked the trainer to stop: its state is saved, resume_run=<run> finishes it."""

    def __init__(self, run_name: str):
        super().__init__(f"training of {run_name} stopped before the end; nothing was registered")
        self.run_name = run_name


def new_run_name(preset: str) -> str:
    # The random tail keeps two runs started in the same second apart.
    return f"{preset}-{datetime.now(timezone.utc):%Y%m%d-%H%M%S}-{secrets.token_hex(2)}"


def train_and_register(*, preset: str, data_paths: list[Path], resume_run: str | None = None, seed: int = 0,
                       deterministic: bool = False, max_steps: int | None = None, promote: bool = False,
                       on_progress=None, run_name: str | None = None, prompt_format: str = "query") -> Checkpoint:
    """Train (or resume) a run under var/runs/, then register its checkpoint as a candidate.

    Nothing is written to the registry unless training finished and the checkpoint folder
    is complete; with `promote` (or when nothing is active yet) it becomes the active one.
    `run_name` names a fresh run (default: preset + time); TrainingStopped when on_progress stopped it."""
    from training.trainer import TrainConfig, train_model

    run_name = resume_run or run_name or new_run_name(preset)
    out_dir = Path(settings.RUNS_DIR) / run_name
    if resume_run and not out_dir.is_dir():
        raise RegistryError(f"no run named {resume_run!r} under {settings.RUNS_DIR}")
    if Checkpoint.objects.filter(name=run_name).exists():
        raise RegistryError(f"run {run_name!r} already finished and is registered")
    config = TrainConfig(preset=preset, data_paths=[Path(p) for p in data_paths], out_dir=out_dir, seed=seed,
                         deterministic=deterministic, max_steps=max_steps, prompt_format=prompt_format)
    result = train_model(config, resume=bool(resume_run), on_progress=on_progress)
    if not result.completed:
        raise TrainingStopped(run_name)
    with transaction.atomic():
        checkpoint = register_checkpoint(
            name=run_name, run_name=run_name, path=str(result.checkpoint_dir), preset=preset,
            # What config.json says, so loading can check the folder still holds this model.
            model_config=json.loads((Path(result.checkpoint_dir) / "config.json").read_text()), data=jsonable(result.data), metrics=jsonable(result.metrics),
        )
        if promote or not Checkpoint.objects.filter(status=Checkpoint.Status.ACTIVE).exists():
            checkpoint = promote_checkpoint(checkpoint)
    return checkpoint

