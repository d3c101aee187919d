"""The checkpoint part of the status page and /healthz (registered with core's health checks in
CheckpointsConfig.ready()): the active generator, and whether its folder is complete."""
from webapp.checkpoints.services import active_checkpoint
from webapp.core.health import PartHealth

CHECK_ORDER = 50  # after beat, before the device (core's parts are 10..60)


def check_checkpoint() -> PartHealth:
    try:
        checkpoint = active_checkpoint()
    except Exception as exc:  # noqa: BLE001
        return PartHealth("checkpoint", False, f"cannot read the registry: {exc}")
    if checkpoint is None:
        return PartHealth("checkpoint", False, "no active checkpoint: run `python manage.py train_model`")
    problem = checkpoint.missing_files()
    if problem:
        return PartHealth("checkpoint", False, f"{checkpoint.name}: {problem}")
    return PartHealth("checkpoint", True, f"{checkpoint.name} ({checkpoint.preset})")
