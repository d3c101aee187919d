"""No generation request is lost: claims, leases and the recovery sweep.

A task message can vanish (Redis restarted without persistence; a worker killed with SIGKILL
keeps its unacked message until the broker's visibility timeout, an hour) and a task can be
delivered twice (redelivery, a re-enqueue). So the database, not the broker, decides:

* `claim` moves a request to running under a row lock; a second delivery finds it running with
  a fresh lease (or done) and leaves it alone, so a request is written once.
* The running task keeps a lease fresh (`keep_alive`, a ``core.Heartbeat`` row named
  ``generation:<id>``). The same row records when a queued request was last enqueued.
* `recover_lost_requests` (Celery beat, every STUDIO_RECOVERY_SECONDS) re-enqueues queued requests
  not enqueued for STUDIO_QUEUED_GRACE_SECONDS and puts running requests whose lease is older than
  STUDIO_LEASE_SECONDS back in the queue (their worker died or lost the database mid-run).
"""
from __future__ import annotations

import logging
import time
from datetime import timedelta

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from webapp.core.models import Heartbeat
from webapp.studio.models import GenerationRequest

logger = logging.getLogger(__name__)
LEASE_ROLE = "generation"
Status = GenerationRequest.Status


def lease_seconds() -> float:
    return float(getattr(settings, "STUDIO_LEASE_SECONDS", 60))


def queued_grace_seconds() -> float:
    return float(getattr(settings, "STUDIO_QUEUED_GRACE_SECONDS", 120))


def lease_name(request_id: int) -> str:
    return f"{LEASE_ROLE}:{request_id}"


def touch(request_id: int, state: str, task_id: str | None = None) -> None:
    """Record a sign of life: 'queued' when (re-)enqueued, 'running' while a worker writes (with its task id)."""
    Heartbeat.objects.update_or_create(name=lease_name(request_id), defaults={
        "role": LEASE_ROLE, "last_seen": timezone.now(), "info": {"state": state, "task": task_id}})


def release(request_id: int) -> None:
    Heartbeat.objects.filter(name=lease_name(request_id)).delete()


def last_sign_of_life(req: GenerationRequest):
    row = Heartbeat.objects.filter(name=lease_name(req.pk)).first()
    if row is not None:
        return row.last_seen
    return req.started_at if req.status == Status.RUNNING and req.started_at else req.created_at


def is_stale(req: GenerationRequest, seconds: float) -> bool:
    return last_sign_of_life(req) < timezone.now() - timedelta(seconds=seconds)


def held_by_another(req: GenerationRequest, task_id: str | None) -> bool:
    """A live run of another task holds it. The same task id means this message was redelivered
    (its worker process died: reject_on_worker_lost), so that earlier run is gone."""
    if req.status != Status.RUNNING:
        return False
    row = Heartbeat.objects.filter(name=lease_name(req.pk)).first()
    if row is None or row.info.get("state") != "running" or row.info.get("task") == task_id:
        return False
    return row.last_seen >= timezone.now() - timedelta(seconds=lease_seconds())


def claim(request_id: int, task_id: str | None = None) -> tuple[GenerationRequest | None, str]:
    """(request, '') when this delivery may write it, now marked running; else (None, why not)."""
    with transaction.atomic():
        req = GenerationRequest.objects.select_for_update().filter(pk=request_id).first()
        if req is None:
            return None, "missing"
        if req.status == Status.DONE:
            return None, "already done"
        if held_by_another(req, task_id):
            return None, "running elsewhere"
        req.mark_running()
        touch(req.pk, "running", task_id)
    return req, ""


def still_mine(req: GenerationRequest) -> bool:
    """Inside the final transaction: lock the row and check no later attempt took it over."""
    current = GenerationRequest.objects.select_for_update().get(pk=req.pk)
    return current.status == Status.RUNNING and current.attempts == req.attempts


class KeepAlive:
    """Refreshes the lease at most every quarter lease, from the generation loop."""

    def __init__(self, request_id: int, task_id: str | None):
        self.request_id, self.task_id, self.last = request_id, task_id, time.monotonic()

    def __call__(self) -> None:
        if time.monotonic() - self.last >= lease_seconds() / 4:
            self.last = time.monotonic()
            touch(self.request_id, "running", self.task_id)


def recover_lost_requests() -> dict:
    """Re-enqueue what no worker will finish; returns the ids it acted on."""
    from webapp.studio.services import enqueue

    restarted = []
    for pk in GenerationRequest.objects.filter(status=Status.RUNNING).values_list("pk", flat=True):
        with transaction.atomic():
            req = GenerationRequest.objects.select_for_update().get(pk=pk)
            if req.status != Status.RUNNING or not is_stale(req, lease_seconds()):
                continue
            req.status = Status.QUEUED  # its worker is gone: the next claim starts it from empty
            req.save(update_fields=["status"])
            restarted.append(pk)
    requeued = list(restarted)
    for req in GenerationRequest.objects.filter(status=Status.QUEUED).exclude(pk__in=restarted):
        if is_stale(req, queued_grace_seconds()):  # its message was lost, or is stuck behind a long queue
            requeued.append(req.pk)
    for pk in requeued:
        enqueue(pk)
    if requeued:
        logger.warning("recovery: re-enqueued generation requests %s (of which %s had lost their worker)",
                       requeued, restarted)
    return {"requeued": requeued, "restarted": restarted}
