from pathlib import Path

from django.db import models
from django.db.models import Q


class Checkpoint(models.Model):
    """A trained generator, stored as a Hugging Face folder on disk.

    At most one checkpoint is active (a partial unique constraint); promotion swaps the
    active one inside a transaction (see services.promote_checkpoint). Research models of
    other families (MARL policies) share the registry for their files and metrics, but only a
    generator can ever be active (a check constraint)."""

    class Family(models.TextChoices):
        GENERATOR = "generator"
        MARL = "marl"

    class Status(models.TextChoices):
        CANDIDATE = "candidate"
        ACTIVE = "active"
        RETIRED = "retired"

    name = models.CharField(max_length=100, unique=True)
    run_name = models.CharField(max_length=100)
    path = models.CharField(max_length=500)
    preset = models.CharField(max_length=40)
    model_config = models.JSONField(default=dict)
    data = models.JSONField(default=dict, help_text="Training data: paths, hashes, counts.")
    metrics = models.JSONField(default=dict)
    status = models.CharField(max_length=20, choices=Status.choices, default=Status.CANDIDATE)
    family = models.CharField(max_length=20, choices=Family.choices, default=Family.GENERATOR, db_index=True)
    created_at = models.DateTimeField(auto_now_add=True)
    promoted_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]
        constraints = [
            models.UniqueConstraint(fields=["status"], condition=Q(status="active"), name="one_active_checkpoint"),
            models.CheckConstraint(condition=~Q(status="active") | Q(family="generator"),
                                   name="only_generators_are_active"),
        ]

    def __str__(self):
        return f"{self.name} [{self.status}]"

    def missing_files(self) -> str:
        """Empty when the folder holds what loading needs; else what is missing."""
        folder = Path(self.path)
        if not folder.is_dir():
            return f"folder {folder} is missing"
        for required in ("config.json", "model.safetensors"):
            if not (folder / required).is_file():
                return f"{required} is missing in {folder}"
        return ""
