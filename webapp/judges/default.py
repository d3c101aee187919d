"""The default judge: the principled offline judge, registered and activated on a fresh install.

``ensure_default_judge()`` trains ``training.judges.principled`` on the team corpus only
(training/data/starter, never ../shared: nothing the demo registers learnt from the paper's data)
into ``var/judges/principled-team-v1`` (once; about a minute on 2 busy cores), registers it as a
JudgeVersion of kind "principled" and activates it when no judge is active. Run again it trains
nothing, registers nothing twice and never replaces a judge someone activated.
``serving_judge()`` is the active judge's object, loaded once per process and reloaded only when
another version becomes active (the studio's worker judges every request with it).
(An LLM judge falls back to this folder's judge: services.load_judge.)
"""
from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from django.conf import settings
from django.db import IntegrityError

from training.judges.principled import META_FILE, PrincipledJudge, train_principled
from training.judges.train_side import STARTER_DIR, collect
from webapp.judges.models import JudgeVersion
from webapp.judges.services import (JudgeServiceError, activate_judge, active_judge, judges_dir, load_judge,
                                    register_judge)

DEFAULT_JUDGE_NAME = settings.DEFAULT_JUDGE_NAME
REPRODUCE = "python -m training.judges.principled --no-shared --out {folder}"


@dataclass
class DefaultJudge:
    version: JudgeVersion
    trained: bool  # trained in this call (else its folder was already there)
    activated: bool  # activated in this call (else another judge, or this one, already was)
    seconds: float

    def summary(self) -> str:
        state = "is active" if self.version.is_active else f"registered (the active judge is {active_judge()})"
        how = f"trained on the team corpus in {self.seconds:.1f} s" if self.trained else f"ready in {self.seconds:.1f} s"
        return f"{self.version.name} ({self.version.kind}) {state}; {how}"


def default_judge_folder() -> Path:
    return judges_dir() / DEFAULT_JUDGE_NAME


def train_default_folder(folder: Path, say: Callable[[str], None]) -> PrincipledJudge:
    """Train on the team corpus only and save to `folder` (written aside and renamed into place)."""
    say(f"Judge: training the principled judge on the team corpus into {folder} (once, about a minute)")
    judge = train_principled(collect(STARTER_DIR, None), progress=lambda step: say(f"  judge: {step}"))
    judge.name = DEFAULT_JUDGE_NAME
    judge.save(folder)
    return judge


def ensure_default_judge(progress: Callable[[str], None] | None = None) -> DefaultJudge:
    """Train (when its folder is missing), register (when it is not) and activate (when no judge is)."""
    say = progress or (lambda message: None)
    started = time.perf_counter()
    folder = default_judge_folder()
    trained = not (folder / META_FILE).is_file()
    if trained:
        train_default_folder(folder, say)
    version = JudgeVersion.objects.filter(name=DEFAULT_JUDGE_NAME).first()
    if version is None:
        info = PrincipledJudge.load(folder).info  # also proves the folder loads before it is registered
        try:
            version = register_judge(
                kind=JudgeVersion.Kind.PRINCIPLED, name=DEFAULT_JUDGE_NAME, path=folder,
                config={"corpus": "team (training/data/starter)", "reproduce": REPRODUCE.format(folder=folder)},
                metrics={"train_seconds": info.get("train_seconds"),
                         "calibration_kappa": (info.get("calibration") or {}).get("final_kappa")})
        except (JudgeServiceError, IntegrityError):  # another process registered it meanwhile
            version = JudgeVersion.objects.get(name=DEFAULT_JUDGE_NAME)
    activated = active_judge() is None
    if activated:
        version = activate_judge(version)
    return DefaultJudge(version, trained, activated, time.perf_counter() - started)


_lock = threading.Lock()
_loaded: dict[tuple, tuple[JudgeVersion, object]] = {}


def serving_judge() -> tuple[JudgeVersion, object] | None:
    """(the active JudgeVersion, its judge object) loaded once per process; None when no judge is active."""
    version = active_judge()
    if version is None:
        return None
    key = (version.pk, version.kind, version.path, version.name)
    with _lock:
        if key not in _loaded:
            judge = load_judge(version)
            _loaded.clear()  # one judge in memory: the previous active one is let go
            _loaded[key] = (version, judge)
        return _loaded[key]
