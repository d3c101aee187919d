"""The checkpoint registry: registering trained runs, promotion, rollback, lookup.

Rollback undoes the last promotion: the previously active checkpoint is the retired one with
the latest `promoted_at` (promotion stamps it; retiring keeps it)."""
from pathlib import Path

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from webapp.checkpoints.models import Checkpoint


class RegistryError(Exception):
    pass


def active_checkpoint() -> Checkpoint | None:
    """The active generator (only generators can be active; MARL policies never are)."""
    return Checkpoint.objects.filter(status=Checkpoint.Status.ACTIVE, family=Checkpoint.Family.GENERATOR).first()


def register_checkpoint(*, name: str, run_name: str, path: str, preset: str, model_config: dict,
                        data: dict, metrics: dict, family: str = Checkpoint.Family.GENERATOR) -> Checkpoint:
    if Checkpoint.objects.filter(name=name).exists():
        raise RegistryError(f"a checkpoint named {name!r} is already registered")
    return Checkpoint.objects.create(
        name=name, run_name=run_name, path=path, preset=preset, model_config=model_config,
        data=data, metrics=metrics, status=Checkpoint.Status.CANDIDATE, family=family,
    )


def register_shipped_model(folder=None) -> tuple[Checkpoint | None, str]:
    """(the shipped checkpoint, registered and active; '') or (None, why it cannot be used).

    The committed model under ``models/`` is checked like any checkpoint (config, safetensors,
    tokenizer), so a corrupt or missing one makes ``make demo`` train instead of serving garbage."""
    from generation.checkpoint import CheckpointError, check_checkpoint, load_checkpoint, read_metadata

    folder = Path(folder or settings.SHIPPED_MODEL_DIR)
    if not folder.is_dir():
        return None, f"{folder} is missing"
    try:
        config = check_checkpoint(folder)
        load_checkpoint(folder, fast_moe=False)
    except CheckpointError as exc:
        return None, str(exc)
    meta = read_metadata(folder)
    name = f"shipped-{folder.name}"
    checkpoint = Checkpoint.objects.filter(name=name).first() or register_checkpoint(
        name=name, run_name=name, path=str(folder), preset=meta.get("preset", ""), model_config=config,
        data=meta.get("data", {}), metrics=meta.get("metrics", {}))
    return promote_checkpoint(checkpoint), ""


@transaction.atomic
def promote_checkpoint(checkpoint: Checkpoint) -> Checkpoint:
    """Make `checkpoint` the one active checkpoint; the previous one is retired atomically."""
    locked = Checkpoint.objects.select_for_update().get(pk=checkpoint.pk)
    if locked.family != Checkpoint.Family.GENERATOR:
        raise RegistryError(f"cannot promote {locked.name}: it is a {locked.family} checkpoint, not a generator")
    problem = locked.missing_files()
    if problem:
        raise RegistryError(f"cannot promote {locked.name}: {problem}")
    if locked.status == Checkpoint.Status.ACTIVE:
        return locked
    Checkpoint.objects.select_for_update().filter(status=Checkpoint.Status.ACTIVE).update(
        status=Checkpoint.Status.RETIRED
    )
    locked.status = Checkpoint.Status.ACTIVE
    locked.promoted_at = timezone.now()
    locked.save(update_fields=["status", "promoted_at"])
    return locked


def previous_active_checkpoint() -> Checkpoint | None:
    return (Checkpoint.objects.exclude(status=Checkpoint.Status.ACTIVE).filter(promoted_at__isnull=False)
            .order_by("-promoted_at").first())


def rollback() -> Checkpoint:
    """Promote the checkpoint that was active before the current one."""
    previous = previous_active_checkpoint()
    if previous is None:
        raise RegistryError("nothing to roll back to: no checkpoint was active before the current one")
    return promote_checkpoint(previous)


def resolve_checkpoint(identifier: str | None, family: str = Checkpoint.Family.GENERATOR) -> Checkpoint:
    """A checkpoint of `family` by id or name, or the active generator when `identifier` is None."""
    if identifier is None:
        checkpoint = active_checkpoint()
        if checkpoint is None:
            raise RegistryError("no active checkpoint: train one with `python manage.py train_model --preset small`")
        return checkpoint
    query = Checkpoint.objects.filter(name=identifier)
    if identifier.isdigit():
        query = Checkpoint.objects.filter(pk=int(identifier)) | query
    checkpoint = query.first()
    if checkpoint is None:
        raise RegistryError(f"no checkpoint with id or name {identifier!r}")
    if checkpoint.family != family:
        raise RegistryError(f"checkpoint {checkpoint.name!r} is a {checkpoint.family} checkpoint, not a {family}")
    return checkpoint
