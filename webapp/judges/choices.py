"""The judge dropdown of job forms (a RegistryChoiceField over the judge versions)."""
from __future__ import annotations

from webapp.jobs.choices import RegistryChoiceField
from webapp.judges.models import JudgeVersion


class JudgeChoiceField(RegistryChoiceField):
    what = ("评审", "judge")

    @property
    def fix(self):
        from django.urls import reverse

        return (reverse("judges:list"), "评审页面 Judges page")

    def rows(self):
        return JudgeVersion.objects.order_by("-created_at", "-pk")

    def row_label(self, row) -> str:
        return f"{row.name} · {row.kind}{' · active' if row.is_active else ''}"

    def active(self):
        return self.rows().filter(is_active=True).first()
