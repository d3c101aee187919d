"""The generation backend of this process, for the active checkpoint.

Web processes (the OpenAI-compatible API) and Celery workers (the writing studio) call
`get_backend()`; each process keeps one engine loaded and swaps it when another checkpoint
is promoted. Requests already streaming keep the engine they started on."""
import threading
import time
from pathlib import Path

from django.conf import settings

from webapp.checkpoints.models import Checkpoint
from webapp.checkpoints.services import RegistryError, active_checkpoint

_lock = threading.Lock()  # guards _state; never held while a model loads
_loading = threading.Lock()  # one load at a time per process
_state = {"checkpoint_id": None, "backend": None, "checked_at": 0.0}
# How often the registry is asked whether the active checkpoint changed. 0: on every request (one indexed
# query), so a promotion or rollback is picked up by the next request of every web and worker process.
RECHECK_SECONDS = 0.0


class ModelNotReady(RegistryError):
    """No checkpoint can serve yet (none trained, or its files are missing)."""


def build_backend(checkpoint):
    """A backend for `checkpoint`: the remote server when settings name one, else the local engine."""
    from generation.backends import OpenAICompatibleBackend

    if settings.GENERATION_BACKEND == "openai":
        return OpenAICompatibleBackend(settings.GENERATION_REMOTE_URL, model=settings.GENERATION_REMOTE_MODEL,
                                       api_key=settings.GENERATION_REMOTE_API_KEY or None)
    return local_backend(checkpoint)


def local_backend(checkpoint):
    """The in-process engine on `checkpoint`'s weights, with this deployment's engine settings."""
    from generation.backends import LocalEngineBackend
    from generation.checkpoint import load_checkpoint
    from training.rl.pipeline import describe_backend

    model, tokenizer = load_checkpoint(checkpoint.path, expected_config=checkpoint.model_config or None)
    budget_mb = settings.ENGINE_MEMORY_BUDGET_MB
    backend = LocalEngineBackend.from_model(
        model, tokenizer, max_slots=settings.ENGINE_MAX_SLOTS, max_prefill_tokens=settings.ENGINE_PREFILL_TOKENS,
        memory_budget_bytes=int(budget_mb * 2**20) if budget_mb else None)
    return describe_backend(backend, Path(checkpoint.path), checkpoint.name)


def check_loadable(checkpoint) -> None:
    """RegistryError naming what is missing when `checkpoint`'s files are not all there."""
    problem = checkpoint.missing_files()
    if problem:
        raise RegistryError(f"checkpoint {checkpoint.name} cannot be loaded: {problem}")


def backend_for(checkpoint):
    """The one way from a registry row to a backend that writes with it: this process's served
    backend when `checkpoint` is the active local one, else a local engine loaded for the caller
    (a remote server cannot switch to an arbitrary checkpoint)."""
    check_loadable(checkpoint)
    if settings.GENERATION_BACKEND == "local" and checkpoint.status == checkpoint.Status.ACTIVE:
        return get_backend()
    return local_backend(checkpoint)


def get_backend():
    """This process's backend for the active checkpoint; raises ModelNotReady when there is none.

    Hot swap: when another checkpoint became active, the new engine is loaded without holding
    `_lock`; until it is ready, other threads keep getting the engine already loaded. A request
    keeps the backend object it got, so a generation in flight finishes on the old engine (freed
    once the last such request ends) while new requests use the new one."""
    now = time.monotonic()
    with _lock:
        current = _state["backend"]
        if current is not None and now - _state["checked_at"] < RECHECK_SECONDS:
            return current
        checkpoint = active_checkpoint()
        _state["checked_at"] = now
        if checkpoint is None:
            raise ModelNotReady("the model is not ready yet: no checkpoint has been trained and promoted")
        if current is not None and checkpoint.pk == _state["checkpoint_id"]:
            return current
    problem = checkpoint.missing_files()
    if problem:
        raise ModelNotReady(f"the active checkpoint {checkpoint.name} cannot be loaded: {problem}")
    if not _loading.acquire(blocking=current is None):
        return current  # another thread is loading the new one: keep serving with the loaded engine
    try:
        with _lock:
            if _state["checkpoint_id"] == checkpoint.pk and _state["backend"] is not None:
                return _state["backend"]  # loaded by another thread while we waited
        backend = build_backend(checkpoint)
        backend.checkpoint_name = checkpoint.name  # provenance that stays right for requests in flight
        with _lock:
            _state.update(backend=backend, checkpoint_id=checkpoint.pk)
        return backend
    finally:
        _loading.release()


def active_checkpoint_name() -> str | None:
    """The name of the checkpoint this process serves (for provenance of generated greetings)."""
    checkpoint_id = _state["checkpoint_id"]
    if checkpoint_id is None:
        return None
    return Checkpoint.objects.filter(pk=checkpoint_id).values_list("name", flat=True).first()


def reset_backend() -> None:
    """Forget the loaded engine (tests; a worker told to reload)."""
    with _lock:
        _state.update(checkpoint_id=None, backend=None, checked_at=0.0)
