"""The judges page (/train/judges/): every judge version, which one is active, activation, and
judging the rated greetings so the alignment page can compare the judge with people."""
from django.contrib import messages
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.http import require_GET, require_POST

from webapp.core.roles import admin_required
from webapp.judges import services
from webapp.judges.models import JudgeVersion


@require_GET
@admin_required
def judge_list(request):
    return render(request, "judges/list.html", {"judges": JudgeVersion.objects.select_related("principle_set"),
                                                "active": services.active_judge()})


@require_POST
@admin_required
def activate(request, pk):
    version = get_object_or_404(JudgeVersion, pk=pk)
    try:
        services.activate_judge(version)
    except services.JudgeServiceError as exc:
        messages.error(request, str(exc))
    else:
        messages.info(request, f"{version.name} 已启用 is now the active judge: jobs that leave the judge blank use it.")
    return redirect("judges:list")
