"""A writer's generation request and its candidate greetings.

A request owns its candidates: ``reset_candidates`` puts exactly ``n`` empty ones in place (a
redelivered task starts clean), and status changes go through ``mark_*`` so the timestamps and
the failure reason stay consistent.

Rewriting one candidate of a finished request sends the request back through queued and
running with ``rewrite_index`` set: the worker then writes only that candidate and the others
stay as they were (``begin_rewrite``; ``mark_done`` clears it)."""
import secrets

from django.conf import settings
from django.db import models
from django.db.models import Q
from django.utils import timezone

from generation.greeting import slot_chips, slots_from_record
from webapp.corpus.models import QUERY_MAX_LENGTH, Greeting

N_MIN, N_MAX, N_DEFAULT = 1, 5, 3


def new_share_token() -> str:
    return secrets.token_urlsafe(16)


class Tone(models.TextChoices):
    WARM = "温馨", "温馨"
    HUMOROUS = "幽默", "幽默"
    CLASSICAL = "古风", "古风"
    FORMAL = "正式", "正式"
    LITERARY = "文艺", "文艺"
    ROMANTIC = "浪漫", "浪漫"
    UPLIFTING = "励志", "励志"
    CUTE = "可爱", "可爱"


class Length(models.TextChoices):
    SHORT = "短", "短"
    MEDIUM = "中", "中"
    LONG = "长", "长"


class GenerationRequest(models.Model):
    class Status(models.TextChoices):
        QUEUED = "queued", "排队中 queued"
        RUNNING = "running", "生成中 running"
        DONE = "done", "完成 done"
        FAILED = "failed", "失败 failed"

    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="generation_requests")
    query = models.CharField(max_length=QUERY_MAX_LENGTH)
    occasion = models.CharField(max_length=100, blank=True, default="")
    recipient = models.CharField(max_length=100, blank=True, default="")
    tone = models.CharField(max_length=4, choices=Tone.choices, blank=True, default="")
    length = models.CharField(max_length=2, choices=Length.choices, blank=True, default="")
    details = models.CharField(max_length=300, blank=True, default="")
    avoid = models.CharField(max_length=300, blank=True, default="")
    n = models.PositiveSmallIntegerField(default=N_DEFAULT)
    prompt_query = models.TextField(blank=True, default="", help_text="What the model was asked (services.prompt_query).")
    slots = models.JSONField(default=dict, blank=True,
                             help_text="The request slots the candidates were written for (services.request_slots).")
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.QUEUED, db_index=True)
    reason = models.TextField(blank=True, default="", help_text="Why it failed.")
    checkpoint_name = models.CharField(max_length=100, blank=True, default="")
    attempts = models.PositiveIntegerField(default=0)
    rewrite_index = models.PositiveSmallIntegerField(
        null=True, blank=True, help_text="The one candidate being rewritten; empty when all are written.")
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        constraints = [
            models.CheckConstraint(condition=Q(n__gte=N_MIN) & Q(n__lte=N_MAX), name="studio_request_n_range"),
            models.CheckConstraint(condition=Q(status__in=["queued", "running", "done", "failed"]),
                                   name="studio_request_status_valid"),
            models.CheckConstraint(condition=~Q(status="failed") | ~Q(reason=""),
                                   name="studio_request_failed_has_reason"),
            models.CheckConstraint(condition=Q(rewrite_index__isnull=True) | Q(rewrite_index__lt=models.F("n")),
                                   name="studio_request_rewrite_index_in_range"),
        ]

    def __str__(self):
        return f"#{self.pk} {self.query[:40]} [{self.status}]"

    @property
    def is_finished(self) -> bool:
        return self.status in (self.Status.DONE, self.Status.FAILED)

    @property
    def slot_chips(self) -> list[str]:
        """What the candidates were written for, as the card shows it (元宵 · 老板 · 12字)."""
        return slot_chips(slots_from_record(self.slots)) if self.slots else []

    @property
    def correction_fields(self) -> dict:
        """The form's fields filled with what was read, for a writer correcting a slot."""
        slots = self.slots or {}
        return {"query": self.query, "occasion": slots.get("occasion") or "", "recipient": slots.get("addressee") or "",
                "tone": self.tone, "length": self.length, "details": self.details, "avoid": self.avoid}

    def reset_candidates(self) -> None:
        """Exactly n empty candidates 0..n-1 (share tokens kept for indexes that existed)."""
        self.candidates.filter(index__gte=self.n).delete()
        for index in range(self.n):
            Candidate.objects.update_or_create(
                request=self, index=index,
                defaults={"text": "", "finished": False, "finish_reason": "", "checks": {}, "greeting": None},
            )

    def reset_candidate(self, index: int) -> "Candidate":
        """Candidate `index` emptied for a rewrite, with a new share token: a link shared
        before the rewrite stops working rather than showing a different greeting."""
        candidate = self.candidates.get(index=index)
        candidate.text, candidate.finished, candidate.finish_reason, candidate.greeting = "", False, "", None
        candidate.checks = {}
        candidate.share_token = new_share_token()
        candidate.save(update_fields=["text", "finished", "finish_reason", "checks", "greeting", "share_token"])
        return candidate

    def begin_rewrite(self, index: int) -> None:
        self.status, self.reason, self.rewrite_index, self.finished_at = self.Status.QUEUED, "", index, None
        self.save(update_fields=["status", "reason", "rewrite_index", "finished_at"])

    def mark_running(self, checkpoint_name: str = "") -> None:
        self.status, self.reason, self.finished_at = self.Status.RUNNING, "", None
        self.started_at = timezone.now()
        self.checkpoint_name = checkpoint_name or self.checkpoint_name
        self.attempts += 1
        self.save(update_fields=["status", "reason", "started_at", "finished_at", "checkpoint_name", "attempts"])

    def mark_done(self, note: str = "") -> None:
        """`note`: why a rewritten candidate stayed empty (the request is still usable)."""
        self.status, self.reason, self.finished_at = self.Status.DONE, note[:2000], timezone.now()
        self.rewrite_index = None
        self.save(update_fields=["status", "reason", "finished_at", "rewrite_index"])

    def mark_failed(self, reason: str) -> None:
        self.status, self.reason, self.finished_at = self.Status.FAILED, (reason or "unknown error")[:2000], timezone.now()
        self.rewrite_index = None
        self.save(update_fields=["status", "reason", "finished_at", "rewrite_index"])


class Candidate(models.Model):
    """One of a request's n greetings; ``greeting`` is its corpus row once the request is done."""

    request = models.ForeignKey(GenerationRequest, on_delete=models.CASCADE, related_name="candidates")
    index = models.PositiveSmallIntegerField()
    text = models.TextField(blank=True, default="")
    finished = models.BooleanField(default=False)
    finish_reason = models.CharField(max_length=20, blank=True, default="")
    checks = models.JSONField(default=dict, blank=True,
                              help_text="What each serve-time guard said, and how many texts were sampled for it.")
    greeting = models.ForeignKey(Greeting, null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    share_token = models.CharField(max_length=32, unique=True, default=new_share_token, editable=False)

    class Meta:
        ordering = ["request", "index"]
        constraints = [models.UniqueConstraint(fields=["request", "index"], name="studio_candidate_one_per_index")]

    def __str__(self):
        return f"#{self.request_id}.{self.index}: {self.text[:40]}"
