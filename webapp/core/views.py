from django.http import JsonResponse
from django.shortcuts import render
from django.views.decorators.http import require_GET

from webapp.core.health import check_all, recent_health


@require_GET
def status_page(request):
    return render(request, "core/status.html", {"parts": recent_health()})


@require_GET
def status_parts(request):
    """The parts list alone, polled by htmx so the page stays live."""
    return render(request, "core/_status_parts.html", {"parts": recent_health()})


@require_GET
def healthz(request):
    parts = check_all()
    healthy = all(part.ok for part in parts)
    body = {"ok": healthy, "parts": {part.name: {"ok": part.ok, "detail": part.detail} for part in parts}}
    return JsonResponse(body, status=200 if healthy else 503, json_dumps_params={"ensure_ascii": False})
