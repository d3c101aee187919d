"""The checkpoint dropdown of job forms (a RegistryChoiceField over the checkpoint registry)."""
from __future__ import annotations

from webapp.checkpoints.models import Checkpoint
from webapp.jobs.choices import RegistryChoiceField


class CheckpointChoiceField(RegistryChoiceField):
    what = ("检查点", "checkpoint")

    def __init__(self, *, family: str = "generator", **kwargs):
        self.family = family
        super().__init__(**kwargs)

    @property
    def fix(self):
        from django.urls import reverse

        return (reverse("checkpoints:list"), "检查点页面 Checkpoints page")

    def rows(self):
        return Checkpoint.objects.filter(family=self.family).order_by("-created_at", "-pk")

    def row_label(self, row) -> str:
        return f"{row.name} · {row.status} · {row.preset}"

    def active(self):
        return self.rows().filter(status="active").first()
