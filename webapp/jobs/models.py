"""Training jobs, their metric points and log lines.

Invariants the table keeps itself:
* one training job at a time: a queued or running job holds the unique `slot` value "train"
  (NULL once finished), so a second concurrent start fails inside the database, whatever
  the interleaving;
* progress stays within 0..1;
* transitions are conditional UPDATEs (`_transition`): a finished job never runs again, and
  the worker and the reaper cannot both win the same transition.
"""
from django.conf import settings
from django.db import models
from django.db.models import Q
from django.utils import timezone

TRAIN_SLOT = "train"


class InvalidTransition(Exception):
    """The job is not in a state the requested transition starts from."""


class TrainingJob(models.Model):
    class Status(models.TextChoices):
        QUEUED = "queued"
        RUNNING = "running"
        SUCCEEDED = "succeeded"
        FAILED = "failed"
        CANCELLED = "cancelled"

    ACTIVE = (Status.QUEUED, Status.RUNNING)
    FINISHED = (Status.SUCCEEDED, Status.FAILED, Status.CANCELLED)

    kind = models.CharField(max_length=60)
    params = models.JSONField(default=dict, blank=True)
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.QUEUED, db_index=True)
    slot = models.CharField(max_length=20, null=True, blank=True, unique=True, editable=False,
                            help_text="'train' while queued or running: the one-job-at-a-time lock.")
    stage = models.CharField(max_length=100, blank=True, default="")
    progress = models.FloatField(default=0.0)
    eta_seconds = models.FloatField(null=True, blank=True)
    result = models.JSONField(default=dict, blank=True)
    error = models.TextField(blank=True, default="", help_text="Why the job failed or was cancelled.")
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL)
    created_at = models.DateTimeField(auto_now_add=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    worker = models.CharField(max_length=200, blank=True, default="", help_text="hostname:pid of the runner.")
    heartbeat_at = models.DateTimeField(null=True, blank=True)
    attempts = models.PositiveSmallIntegerField(default=0)
    cancel_requested = models.BooleanField(default=False)

    class Meta:
        ordering = ["-created_at", "-id"]
        constraints = [
            models.CheckConstraint(condition=Q(progress__gte=0) & Q(progress__lte=1), name="jobs_progress_0_1"),
            models.CheckConstraint(
                # slot IS NOT NULL spelled out: a CHECK whose result is NULL would pass
                condition=(Q(status__in=["queued", "running"]) & Q(slot__isnull=False) & Q(slot=TRAIN_SLOT))
                | (Q(status__in=["succeeded", "failed", "cancelled"]) & Q(slot__isnull=True)),
                name="jobs_slot_held_while_active",
            ),
        ]

    def __str__(self):
        return f"#{self.pk} {self.kind} [{self.status}]"

    @property
    def is_finished(self) -> bool:
        return self.status in self.FINISHED

    @property
    def percent(self) -> int:
        return int(round(self.progress * 100))

    # --- Transitions: each one a single conditional UPDATE, then the instance is refreshed.
    def _transition(self, allowed_from, **fields) -> None:
        updated = TrainingJob.objects.filter(pk=self.pk, status__in=list(allowed_from)).update(**fields)
        if not updated:
            current = TrainingJob.objects.filter(pk=self.pk).values_list("status", flat=True).first()
            raise InvalidTransition(f"job #{self.pk} is {current}; cannot become {fields.get('status', '?')}")
        self.refresh_from_db()

    def mark_running(self, worker: str) -> None:
        """queued -> running (a fresh start, or a resume the reaper or a redelivery queued)."""
        now = timezone.now()
        self._transition([self.Status.QUEUED], status=self.Status.RUNNING, worker=worker, heartbeat_at=now,
                         started_at=self.started_at or now, attempts=models.F("attempts") + 1)

    def take_over(self, worker: str) -> None:
        """running (its worker died) -> running here; only when the heartbeat is still the stale one we saw."""
        now = timezone.now()
        updated = TrainingJob.objects.filter(pk=self.pk, status=self.Status.RUNNING,
                                             heartbeat_at=self.heartbeat_at).update(
            worker=worker, heartbeat_at=now, attempts=models.F("attempts") + 1)
        if not updated:
            raise InvalidTransition(f"job #{self.pk} was taken over by another worker meanwhile")
        self.refresh_from_db()

    def requeue(self, reason: str) -> None:
        """running (worker died) -> queued, to be resumed."""
        self._transition([self.Status.RUNNING], status=self.Status.QUEUED, worker="", stage=f"requeued: {reason}"[:100])

    def mark_succeeded(self, result: dict) -> None:
        self._finish(self.Status.SUCCEEDED, result=result, progress=1.0, eta_seconds=0.0)

    def mark_failed(self, reason: str, details: dict | None = None) -> None:
        """details: what the job page shows beside the reason (the field at fault and the page that fixes it)."""
        self._finish(self.Status.FAILED, error=reason, **({"result": details} if details else {}))

    def mark_cancelled(self, reason: str = "cancelled by an admin") -> None:
        self._finish(self.Status.CANCELLED, error=reason)

    def _finish(self, status: str, **fields) -> None:
        self._transition(self.ACTIVE, status=status, slot=None, finished_at=timezone.now(), **fields)

    def request_cancel(self) -> None:
        """A queued job is cancelled at once; a running one is asked to stop (the runner sees the flag)."""
        if self.status == self.Status.QUEUED:
            try:
                self.mark_cancelled()
                return
            except InvalidTransition:
                self.refresh_from_db()  # it started meanwhile: ask the runner instead
        if self.status != self.Status.RUNNING:
            raise InvalidTransition(f"job #{self.pk} is {self.status}; there is nothing to cancel")
        TrainingJob.objects.filter(pk=self.pk).update(cancel_requested=True)
        self.refresh_from_db()


class MetricPoint(models.Model):
    job = models.ForeignKey(TrainingJob, on_delete=models.CASCADE, related_name="metric_points")
    name = models.CharField(max_length=80)
    step = models.IntegerField()
    value = models.FloatField()

    class Meta:
        ordering = ["job", "name", "step", "id"]
        indexes = [models.Index(fields=["job", "name", "step"], name="jobs_metric_job_name_step")]


class LogLine(models.Model):
    job = models.ForeignKey(TrainingJob, on_delete=models.CASCADE, related_name="log_lines")
    created_at = models.DateTimeField(default=timezone.now)
    message = models.TextField()

    class Meta:
        ordering = ["job", "id"]
