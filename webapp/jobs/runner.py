"""Running one job inside a worker: the database-backed JobHandle and its heartbeat thread.

`on_progress` is called by trainers at every step; it keeps the latest state in memory and
writes to the database at most every FLUSH_SECONDS (progress, ETA, buffered metric points and
log lines in one go), which is also when it looks at the cancel flag."""
from __future__ import annotations

import math
import os
import shutil
import socket
import threading
import time
from pathlib import Path

from django.conf import settings
from django.db import close_old_connections, connection
from django.utils import timezone

from webapp.jobs.models import LogLine, MetricPoint, TrainingJob

FLUSH_SECONDS = 1.0
HEARTBEAT_SECONDS = 5.0
# Keys of a progress payload that are bookkeeping, not curves.
NOT_METRICS = {"event", "step", "max_steps", "elapsed_s", "eta_s", "stage", "message", "epoch"}


def worker_identity() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


def job_workdir(job_id: int) -> Path:
    return Path(settings.VAR_DIR) / "jobs" / str(job_id)


def numeric_metrics(payload: dict) -> dict[str, float]:
    return {key: float(value) for key, value in payload.items()
            if key not in NOT_METRICS and isinstance(value, (int, float)) and not isinstance(value, bool)
            and math.isfinite(value)}


def describe(payload: dict) -> str:
    """A log line for a payload: its message, else its key=value pairs."""
    if payload.get("message"):
        return str(payload["message"])
    parts = []
    for key, value in payload.items():
        if key == "event":
            continue
        parts.append(f"{key}={value:.4g}" if isinstance(value, float) else f"{key}={value}")
    return f"{payload.get('event', 'event')}: " + " ".join(parts)


class DatabaseJobHandle:
    """The JobHandle (webapp.jobs.kinds) a kind's `run` gets in the worker."""

    def __init__(self, job: TrainingJob, resumed: bool):
        self.job = job
        self.id = job.pk
        self.params = dict(job.params)
        self.resumed = resumed
        self.workdir = job_workdir(job.pk)
        if not resumed:  # a fresh start owns an empty folder (ids restart when a database is recreated)
            shutil.rmtree(self.workdir, ignore_errors=True)
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.cancelled = False
        self._fields: dict = {}
        self._points: list[MetricPoint] = []
        self._lines: list[LogLine] = []
        self._step_metric_names: set[str] = set()
        self._last_flush = 0.0
        self._trim_replayed_steps = resumed

    # --- the JobHandle protocol
    def on_progress(self, payload: dict) -> bool:
        event = payload.get("event")
        if event == "step":
            self._on_step(payload)
        elif event == "stage":
            self._fields["stage"] = str(payload.get("stage", ""))[:100]
            self._lines.append(LogLine(job_id=self.id, message=f"stage: {payload.get('stage', '')}"))
            self.flush(force=True)
        elif event == "done":  # the final summary: a log line; its figures end up in the job's result
            self._lines.append(LogLine(job_id=self.id, message=describe(payload)))
        else:
            self._on_log(payload)
        self.flush()
        return not self.cancelled

    def log(self, message: str) -> None:
        self._lines.append(LogLine(job_id=self.id, message=str(message)))
        self.flush()

    # --- payloads
    def _on_step(self, payload: dict) -> None:
        step, max_steps = payload.get("step"), payload.get("max_steps")
        if self._trim_replayed_steps and isinstance(step, (int, float)):
            # A resumed run repeats the steps after its last saved state: drop the dead attempt's points
            # for them, so each curve keeps one value per step.
            MetricPoint.objects.filter(job_id=self.id, step__gte=int(step)).delete()
            self._trim_replayed_steps = False
        if isinstance(step, (int, float)) and isinstance(max_steps, (int, float)) and max_steps > 0:
            self._fields["progress"] = max(0.0, min(1.0, step / max_steps))
        if isinstance(payload.get("eta_s"), (int, float)) and math.isfinite(payload["eta_s"]):
            self._fields["eta_seconds"] = max(0.0, float(payload["eta_s"]))
        metrics = numeric_metrics(payload)
        self._step_metric_names |= set(metrics)
        self._add_points(payload, metrics)

    def _on_log(self, payload: dict) -> None:
        self._lines.append(LogLine(job_id=self.id, message=describe(payload)))
        # Curves the steps do not already draw (held-out loss, pass rate, ...) come from log events.
        extra = {k: v for k, v in numeric_metrics(payload).items() if k not in self._step_metric_names}
        self._add_points(payload, extra)

    def _add_points(self, payload: dict, metrics: dict[str, float]) -> None:
        step = payload.get("step")
        if not isinstance(step, (int, float)):
            return
        self._points += [MetricPoint(job_id=self.id, name=name[:80], step=int(step), value=value)
                         for name, value in metrics.items()]

    # --- writes, throttled
    def flush(self, force: bool = False) -> None:
        now = time.monotonic()
        if not force and now - self._last_flush < FLUSH_SECONDS:
            return
        self._last_flush = now
        if self._points:
            MetricPoint.objects.bulk_create(self._points)
        if self._lines:
            LogLine.objects.bulk_create(self._lines)
        self._points, self._lines = [], []
        if self._fields:
            TrainingJob.objects.filter(pk=self.id, status=TrainingJob.Status.RUNNING).update(**self._fields)
            self._fields = {}
        if TrainingJob.objects.filter(pk=self.id, cancel_requested=True).exists():
            self.cancelled = True


class Heartbeat:
    """A thread that stamps the job's heartbeat while the job runs, so the reaper can tell a live
    worker stuck in a long step from a dead one."""

    def __init__(self, job_id: int, worker: str, every: float = HEARTBEAT_SECONDS):
        self.job_id, self.worker, self.every = job_id, worker, every
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"job-{job_id}-heartbeat", daemon=True)

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join(timeout=self.every + 5)

    def _run(self):
        try:
            while not self._stop.wait(self.every):
                try:
                    close_old_connections()
                    TrainingJob.objects.filter(pk=self.job_id, worker=self.worker,
                                               status=TrainingJob.Status.RUNNING).update(heartbeat_at=timezone.now())
                except Exception:  # noqa: BLE001 - a database hiccup: try again on the next beat
                    pass
        finally:
            connection.close()  # this thread's own connection
