"""Train a MARL policy (training/marl) and register it as a family="marl" checkpoint.

MARL checkpoints share the registry with generators (files, metrics, listing) but are never
promoted: the registry only lets generators be active."""
import json
import secrets
from datetime import datetime, timezone
from pathlib import Path

from django.conf import settings
from django.db import transaction

from training.runs import jsonable
from webapp.checkpoints.models import Checkpoint
from webapp.checkpoints.services import RegistryError, register_checkpoint, resolve_checkpoint


def new_marl_run_name(algo: str, env: str) -> str:
    return f"marl-{algo}-{env}-{datetime.now(timezone.utc):%Y%m%d-%H%M%S}-{secrets.token_hex(2)}"


def marl_checkpoint_dir(identifier: str) -> Path:
    """The folder of a registered MARL checkpoint, by id or name."""
    return Path(resolve_checkpoint(identifier, family=Checkpoint.Family.MARL).path)


def config_from_params(params: dict):
    """A MARLConfig from form or command-line parameters; init_from names a registered MARL checkpoint."""
    from training.marl.train import MARLConfig

    known = {k: v for k, v in params.items() if k in MARLConfig.__dataclass_fields__ and v not in (None, "")}
    if known.get("init_from"):
        known["init_from"] = init_folder(str(known["init_from"]))
    return MARLConfig(**known)


def init_folder(identifier: str) -> Path:
    try:
        return marl_checkpoint_dir(identifier)
    except RegistryError as exc:
        raise RegistryError(f"init_from: {exc}") from None


def train_and_register_marl(config, on_progress=None, run_name: str | None = None) -> Checkpoint | None:
    """Train with `config` (a training.marl.train.MARLConfig, validated there) under var/runs/ and
    register the result; None when the run was cancelled (nothing is registered then)."""
    from training.marl.train import MARLCheckpointError, train_marl
    config.validate()
    run_name = run_name or new_marl_run_name(config.algo, config.env)
    if Checkpoint.objects.filter(name=run_name).exists():
        raise RegistryError(f"run {run_name!r} is already registered")
    config.out_dir = Path(settings.RUNS_DIR) / run_name
    result = train_marl(config, on_progress=on_progress)
    if result.cancelled:
        return None
    if result.checkpoint_dir is None:
        raise MARLCheckpointError("checkpoint: training finished without writing a checkpoint")
    saved_config = json.loads((result.checkpoint_dir / "config.json").read_text())
    with transaction.atomic():
        return register_checkpoint(
            name=run_name, run_name=run_name, path=str(result.checkpoint_dir), preset=f"marl-{config.algo}",
            model_config=saved_config, data={"env": config.env, "seed": config.seed, "steps": config.steps},
            metrics=jsonable({**result.metrics, "curve": result.curve}), family=Checkpoint.Family.MARL,
        )
