"""Judge versions and the principle sets they judge by. A judge's verdicts are corpus Labels
(source_kind=judge, source_name=the judge version's name), so every verdict names its judge."""
from django.core.exceptions import ValidationError
from django.db import models
from django.db.models import Q

MAX_RULES = 10  # the paper's judge keeps at most 10 rules


def validate_text_list(value, *, field: str, limit: int | None = None):
    if not isinstance(value, list) or not all(isinstance(item, str) and item.strip() for item in value):
        raise ValidationError({field: "must be a list of non-empty texts"})
    if limit is not None and len(value) > limit:
        raise ValidationError({field: f"at most {limit} rules, got {len(value)}"})


class PrincipleSet(models.Model):
    """A versioned set of principles: what the positive agent looks for, what the negative
    agent looks for, and the judge's rules (at most 10). Versions are never edited in place:
    a change is a new version, so old verdicts keep meaning what they meant."""

    name = models.CharField(max_length=100, default="default")
    version = models.PositiveIntegerField()
    strengths = models.JSONField(default=list)
    weaknesses = models.JSONField(default=list)
    rules = models.JSONField(default=list)
    note = models.TextField(blank=True, default="", help_text="Where this version came from.")
    parent = models.ForeignKey("self", null=True, blank=True, on_delete=models.SET_NULL, related_name="children")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["name", "-version"]
        constraints = [models.UniqueConstraint(fields=["name", "version"], name="judges_principles_unique_version")]

    def __str__(self):
        return f"{self.name} v{self.version}"

    def clean(self):
        validate_text_list(self.strengths, field="strengths")
        validate_text_list(self.weaknesses, field="weaknesses")
        validate_text_list(self.rules, field="rules", limit=MAX_RULES)

    def save(self, *args, **kwargs):
        self.clean()
        super().save(*args, **kwargs)


class JudgeVersion(models.Model):
    class Kind(models.TextChoices):
        LENGTH = "length"
        TFIDF = "tfidf"
        REWARD_MODEL = "reward_model"
        LLM = "llm"
        ENSEMBLE = "ensemble"
        PRINCIPLED = "principled"  # training.judges.principled: offline, one executor per principle

    name = models.CharField(max_length=100, unique=True)
    kind = models.CharField(max_length=20, choices=Kind.choices)
    path = models.CharField(max_length=500, blank=True, default="", help_text="Folder of its files, if any.")
    principle_set = models.ForeignKey(PrincipleSet, null=True, blank=True, on_delete=models.PROTECT)
    config = models.JSONField(default=dict, blank=True)
    metrics = models.JSONField(default=dict, blank=True)
    is_active = models.BooleanField(default=False)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created_at"]
        constraints = [
            models.UniqueConstraint(fields=["is_active"], condition=Q(is_active=True), name="judges_one_active_judge"),
        ]

    def __str__(self):
        return f"{self.name} ({self.kind})"
