"""The generation backend of this process, for the active checkpoint.

Web processes (the OpenAI-compatible API) and Celery workers (the writing studio) call
`get_backend()`; each process keeps one engine loaded and swaps it when another checkpoint
is promoted. Requests already streaming keep the engine they started on."""
import threading
import time

from django.conf import settings

from webapp.checkpoints.services import RegistryError, active_checkpoint

_lock = threading.Lock()
_state = {"checkpoint_id": None, "backend": None, "checked_at": 0.0}
RECHECK_SECONDS = 5.0  # how often the registry is asked whether the active checkpoint changed


class ModelNotReady(RegistryError):
    """No checkpoint can serve yet (none trained, or its files are missing)."""


def build_backend(checkpoint):
    """A backend for `checkpoint`: the remote server when settings name one, else the local engine."""
    from generation.backends import LocalEngineBackend, OpenAICompatibleBackend
    from generation.checkpoint import load_checkpoint

    if settings.GENERATION_BACKEND == "openai":
        return OpenAICompatibleBackend(settings.GENERATION_REMOTE_URL, model=settings.GENERATION_REMOTE_MODEL,
                                       api_key=settings.GENERATION_REMOTE_API_KEY or None)
    model, tokenizer = load_checkpoint(checkpoint.path, expected_config=checkpoint.model_config or None)
    return LocalEngineBackend.from_model(model, tokenizer, max_slots=settings.ENGINE_MAX_SLOTS)


def get_backend():
    """This process's backend for the active checkpoint; raises ModelNotReady when there is none."""
    now = time.monotonic()
    with _lock:
        if _state["backend"] is not None and now - _state["checked_at"] < RECHECK_SECONDS:
            return _state["backend"]
        checkpoint = active_checkpoint()
        _state["checked_at"] = now
        if checkpoint is None:
            raise ModelNotReady("the model is not ready yet: no checkpoint has been trained and promoted")
        problem = checkpoint.missing_files()
        if problem:
            raise ModelNotReady(f"the active checkpoint {checkpoint.name} cannot be loaded: {problem}")
        if checkpoint.pk != _state["checkpoint_id"] or _state["backend"] is None:
            _state["backend"] = build_backend(checkpoint)
            _state["checkpoint_id"] = checkpoint.pk
        return _state["backend"]


def active_checkpoint_name() -> str | None:
    """The name of the checkpoint this process serves (for provenance of generated greetings)."""
    from webapp.checkpoints.models import Checkpoint

    checkpoint_id = _state["checkpoint_id"]
    if checkpoint_id is None:
        return None
    return Checkpoint.objects.filter(pk=checkpoint_id).values_list("name", flat=True).first()


def reset_backend() -> None:
    """Forget the loaded engine (tests; a worker told to reload)."""
    with _lock:
        _state.update(checkpoint_id=None, backend=None, checked_at=0.0)
