"""One RLAIF round: what it gathered, what it trained, and what the gate decided."""
from django.db import models
from django.db.models import Q


class RlaifRound(models.Model):
    class Status(models.TextChoices):
        RUNNING = "running"
        DONE = "done"  # finished; the gate may still have refused the candidate
        FAILED = "failed"
        CANCELLED = "cancelled"

    job_id = models.BigIntegerField(null=True, blank=True, help_text="The training job that ran it, if any.")
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.RUNNING, db_index=True)
    since = models.DateTimeField(null=True, blank=True, help_text="Requests and labels after this went into the round.")
    started_at = models.DateTimeField(auto_now_add=True, db_index=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    prompts_gathered = models.PositiveIntegerField(default=0)
    labels_gathered = models.PositiveIntegerField(default=0)
    active_before = models.CharField(max_length=100, blank=True, default="")
    candidate = models.CharField(max_length=100, blank=True, default="")
    promoted = models.BooleanField(default=False)
    decision = models.JSONField(default=dict, blank=True)
    report = models.JSONField(default=dict, blank=True)
    reason = models.TextField(blank=True, default="", help_text="Why it failed or was cancelled.")

    class Meta:
        ordering = ["-started_at", "-id"]
        constraints = [
            models.CheckConstraint(condition=Q(status__in=["running", "done", "failed", "cancelled"]),
                                   name="rlaif_round_status_valid"),
            models.CheckConstraint(condition=Q(promoted=False) | Q(status="done"), name="rlaif_round_promoted_only_done"),
        ]

    def __str__(self):
        return f"round #{self.pk} [{self.status}] {self.candidate or ''}"
