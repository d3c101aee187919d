"""The kinds of training job the platform runs, and the handle a running job gets.

Each app that owns a kind of job declares it in its own `jobs.py` (found at start-up the
way the admin finds `admin.py`):

    class SFTParams(forms.Form): ...            # parameters, validated with named-field errors

    def run_sft(params: dict, job: JobHandle) -> dict:
        ...                                     # plain glue into training/: no HTTP, no Celery
        return {"checkpoint": checkpoint.name}  # JSON result shown on the job page

    register(JobKind(name="sft", label="SFT", params_form=SFTParams, run=run_sft))

`run` reports through `job.on_progress(payload)`, the same callback the trainers in
training/ already take: {"event": "step", "step": i, "max_steps": n, ...metrics} moves the
progress bar and adds points to the curves, {"event": "log", ...} adds a log line,
{"event": "stage", "stage": name} names the current stage. It returns False once the job was
cancelled: the trainer then stops cleanly, and the job ends as cancelled.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Protocol


class JobHandle(Protocol):
    id: int
    params: dict
    workdir: Path  # a folder of this job's own, kept across a resume after a worker died
    resumed: bool  # True when a worker restarted this job after the previous one died

    def on_progress(self, payload: dict) -> bool: ...

    def log(self, message: str) -> None: ...


@dataclass(frozen=True)
class JobKind:
    name: str
    label: str
    params_form: Any  # a django.forms.Form class
    run: Callable[[dict, JobHandle], dict]
    description: str = ""
    summary: str = ""  # one line for the index of kinds on /train/start/; empty: the description's first sentence
    resumable: bool = False  # True: a job whose worker died is restarted (job.resumed), else marked failed
    tags: tuple[str, ...] = field(default_factory=tuple)


def one_line(kind: JobKind) -> str:
    """The kind's one-line summary: its own, else its description up to the first full stop."""
    if kind.summary:
        return kind.summary
    first, dot, _ = kind.description.partition(". ")
    return first + ("." if dot else "")


class FieldError(ValueError):
    """A job parameter at fault, raised by a kind's `run` (or what it calls): `field` names the form field,
    `fix` is (url, label) of the page that fixes it when there is one. The job page shows both."""

    def __init__(self, field: str, message: str, fix: tuple[str, str] | None = None):
        self.field, self.fix, self.message = field, fix, message
        super().__init__(f"{field}: {message}")


_KINDS: dict[str, JobKind] = {}


class UnknownJobKind(KeyError):
    pass


def register(kind: JobKind) -> JobKind:
    if kind.name in _KINDS and _KINDS[kind.name] is not kind:
        raise ValueError(f"job kind {kind.name!r} is registered twice")
    _KINDS[kind.name] = kind
    return kind


def get_kind(name: str) -> JobKind:
    try:
        return _KINDS[name]
    except KeyError:
        raise UnknownJobKind(f"unknown job kind {name!r}; known: {', '.join(sorted(_KINDS)) or 'none'}") from None


def all_kinds() -> list[JobKind]:
    return [_KINDS[name] for name in sorted(_KINDS)]
