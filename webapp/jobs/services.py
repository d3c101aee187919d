"""What the training platform does: start a job (validated, one at a time), run it in a worker,
cancel it, and recover jobs whose worker died.

Recovery, in one place (`recover_or_skip`), used both by the reaper (celery beat) and by a task
that the broker delivers again after its worker died (acks_late): a job whose heartbeat is
stale is resumed when its kind is resumable, else marked failed with the reason."""
from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import timedelta

from django.conf import settings
from django.db import IntegrityError, transaction
from django.utils import timezone

from webapp.jobs.kinds import FieldError, JobKind, UnknownJobKind, get_kind
from webapp.jobs.models import TRAIN_SLOT, InvalidTransition, LogLine, TrainingJob
from webapp.jobs.runner import DatabaseJobHandle, Heartbeat, worker_identity

logger = logging.getLogger(__name__)

MAX_ATTEMPTS = 3  # a job whose worker died this many times is failed rather than resumed again


def stale_after() -> timedelta:
    """How old a running job's heartbeat may get before its worker counts as dead."""
    return timedelta(seconds=getattr(settings, "JOBS_HEARTBEAT_STALE_AFTER", 60))


class JobError(Exception):
    """A refused request; `field` names the parameter at fault when there is one."""

    def __init__(self, message: str, field: str | None = None, errors: dict | None = None):
        super().__init__(message)
        self.message, self.field, self.errors = message, field, errors or {}


class JobBusy(JobError):
    """Another training job is queued or running."""


def active_job() -> TrainingJob | None:
    return TrainingJob.objects.filter(status__in=TrainingJob.ACTIVE).first()


def validate_params(kind: JobKind, params: dict) -> dict:
    """The kind's form, cleaned to JSON-able values; JobError naming each bad field otherwise."""
    form = kind.params_form(data=params)
    if not form.is_valid():
        errors = {field: [str(e) for e in errs] for field, errs in form.errors.items()}
        summary = "; ".join(f"{field}: {' '.join(msgs)}" for field, msgs in errors.items())
        raise JobError(f"invalid parameters for {kind.name}: {summary}", field=next(iter(errors)), errors=errors)
    return {key: _jsonable(value) for key, value in form.cleaned_data.items()}


def _jsonable(value):
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    return str(value)  # Decimal, Path, date: their text


def start_job(kind: str, params: dict, user=None) -> TrainingJob:
    """Validate, take the training slot and enqueue `webapp.train.run_job`.

    Raises JobError (unknown kind, bad parameters: `field` names it) or JobBusy (another job
    holds the slot). The slot is a unique column, so two concurrent starts cannot both win."""
    try:
        job_kind = get_kind(kind)
    except UnknownJobKind as exc:
        raise JobError(str(exc.args[0]), field="kind") from None
    cleaned = validate_params(job_kind, params)
    try:
        with transaction.atomic():
            job = TrainingJob.objects.create(kind=job_kind.name, params=cleaned, created_by=user,
                                             status=TrainingJob.Status.QUEUED, slot=TRAIN_SLOT)
    except IntegrityError:
        busy = active_job()
        where = f"job #{busy.pk} ({busy.kind}, {busy.status})" if busy else "another job"
        raise JobBusy(f"one training job at a time: {where} is not finished yet") from None
    LogLine.objects.create(job=job, message=f"queued by {getattr(user, 'username', None) or 'the scheduler'}")
    enqueue(job, resumed=False)
    return job


def enqueue(job: TrainingJob, resumed: bool) -> None:
    from webapp.jobs.tasks import run_job

    try:
        run_job.apply_async(args=[job.pk], kwargs={"resumed": resumed})
    except Exception as exc:  # noqa: BLE001 - the broker is down: the job must not hold the slot forever
        job.mark_failed(f"could not reach the task queue: {type(exc).__name__}: {exc}")
        raise JobError(f"could not enqueue job #{job.pk}: {exc}") from exc


def cancel_job(job: TrainingJob) -> TrainingJob:
    try:
        job.request_cancel()
    except InvalidTransition as exc:
        raise JobError(str(exc)) from None
    LogLine.objects.create(job=job, message="cancel requested")
    return job


# --- In the worker ---------------------------------------------------------------------------

def run_job(job_id: int, resumed: bool = False) -> str:
    """The body of the Celery task: run the job once; returns what happened (for the task result)."""
    job = TrainingJob.objects.filter(pk=job_id).first()
    if job is None:
        return "missing"
    me = worker_identity()
    if job.status == TrainingJob.Status.RUNNING:
        # Delivered again: either its worker died (acks_late redelivery), or someone alive has it.
        outcome = recover_or_skip(job, take_over_as=me)
        if outcome != "take over":
            return outcome
        resumed = True
    elif job.status == TrainingJob.Status.QUEUED:
        try:
            job.mark_running(me)
        except InvalidTransition:
            return "skipped: started or cancelled meanwhile"
    else:
        return f"skipped: already {job.status}"
    return execute(job, resumed=resumed or job.attempts > 1)


def execute(job: TrainingJob, resumed: bool) -> str:
    try:
        kind = get_kind(job.kind)
    except UnknownJobKind as exc:
        job.mark_failed(str(exc.args[0]))
        return "failed"
    handle = DatabaseJobHandle(job, resumed=resumed)
    if resumed:
        handle.log(f"resumed after its worker died (attempt {job.attempts})")
    handle.log(f"running on {job.worker}")
    with Heartbeat(job.pk, job.worker):
        try:
            result = kind.run(dict(job.params), handle)
        except Exception as exc:  # noqa: BLE001 - any failure becomes the job's visible reason
            handle.flush(force=True)
            if handle.cancelled:
                return _finish(job, "cancel", handle, f"cancelled: stopped at {type(exc).__name__}: {exc}")
            logger.exception("job #%s failed", job.pk)
            if isinstance(exc, FieldError):  # the reason names the field; the page links what fixes it
                return _finish(job, "fail", handle, str(exc), details=failure_details(job, exc))
            return _finish(job, "fail", handle, f"{type(exc).__name__}: {exc}")
    handle.flush(force=True)
    if handle.cancelled:
        return _finish(job, "cancel", handle, "cancelled by an admin")
    return _finish(job, "succeed", handle, result if isinstance(result, dict) else {"result": result})


def failure_details(job: TrainingJob, exc: FieldError) -> dict:
    """The field at fault and the page that fixes it; a fix within the start page (#upload) gets its URL."""
    from django.urls import reverse

    details = {"failed_field": exc.field}
    if exc.fix:
        url, label = exc.fix
        if url.startswith("#"):
            url = reverse("jobs:start-kind", args=[job.kind]) + url
        details.update(fix_url=url, fix_label=label)
    return details


def _finish(job: TrainingJob, how: str, handle: DatabaseJobHandle, detail, details: dict | None = None) -> str:
    try:
        if how == "succeed":
            job.mark_succeeded(detail)
            handle.log("succeeded")
        elif how == "cancel":
            job.mark_cancelled(detail)
            handle.log(detail)
        else:
            job.mark_failed(detail, details)
            handle.log(f"failed: {detail}")
    except InvalidTransition as exc:  # the reaper decided first (e.g. our heartbeat went stale)
        handle.log(f"finished as {how} but {exc}")
    handle.flush(force=True)
    job.refresh_from_db()
    return job.status


# --- Recovery --------------------------------------------------------------------------------

def heartbeat_is_stale(job: TrainingJob, now=None) -> bool:
    now = now or timezone.now()
    return job.heartbeat_at is None or now - job.heartbeat_at > stale_after()


def recover_or_skip(job: TrainingJob, take_over_as: str | None = None) -> str:
    """For a job marked running: leave it when its worker is alive; else resume it or fail it.

    With `take_over_as` (a redelivered task) a resumable job continues in this worker ("take
    over"); without (the reaper) it is queued again for any worker ("requeued")."""
    if not heartbeat_is_stale(job):
        return "skipped: its worker is alive"
    reason = f"worker died: {job.worker or 'unknown worker'} sent no heartbeat since {job.heartbeat_at:%Y-%m-%d %H:%M:%S} UTC" \
        if job.heartbeat_at else f"worker died: {job.worker or 'unknown worker'} never sent a heartbeat"
    kind = _kind_or_none(job.kind)
    try:
        if job.cancel_requested:
            job.mark_cancelled(f"cancelled; {reason}")
            return "cancelled"
        if kind is None or not kind.resumable:
            job.mark_failed(f"{reason} (this kind of job cannot resume)")
            LogLine.objects.create(job=job, message=f"failed: {reason}")
            return "failed"
        if job.attempts >= MAX_ATTEMPTS:
            job.mark_failed(f"{reason}; gave up after {job.attempts} attempts")
            LogLine.objects.create(job=job, message=f"failed: {reason}; gave up after {job.attempts} attempts")
            return "failed"
        LogLine.objects.create(job=job, message=f"{reason}; resuming")
        if take_over_as:
            job.take_over(take_over_as)
            return "take over"
        job.requeue(reason)
    except InvalidTransition:
        return "skipped: changed meanwhile"
    enqueue(job, resumed=True)
    return "requeued"


def _kind_or_none(name: str) -> JobKind | None:
    try:
        return get_kind(name)
    except UnknownJobKind:
        return None


def reap_stale_jobs() -> dict[int, str]:
    """Run by celery beat: every running job whose heartbeat is stale, resumed or failed."""
    outcomes = {}
    threshold = timezone.now() - stale_after()
    for job in TrainingJob.objects.filter(status=TrainingJob.Status.RUNNING, heartbeat_at__lt=threshold):
        outcomes[job.pk] = recover_or_skip(job)
    for job in TrainingJob.objects.filter(status=TrainingJob.Status.RUNNING, heartbeat_at__isnull=True):
        outcomes[job.pk] = recover_or_skip(job)
    if outcomes:
        logger.warning("reaper: %s", outcomes)
    return outcomes


def start_periodic_job(kind: str, params: dict | None = None) -> TrainingJob | None:
    """A beat-scheduled round: start `kind` unless a job is already queued or running (then skip)."""
    busy = active_job()
    if busy is not None:
        logger.info("periodic %s skipped: job #%s (%s) is %s", kind, busy.pk, busy.kind, busy.status)
        LogLine.objects.create(job=busy, message=f"scheduler: periodic {kind} skipped while this job is {busy.status}")
        return None
    try:
        return start_job(kind, params or {}, user=None)
    except JobBusy as exc:  # lost the race to another start: the same outcome as a skip
        logger.info("periodic %s skipped: %s", kind, exc)
        return None
