from django.contrib.auth.views import redirect_to_login
from django.contrib.staticfiles import finders
from django.http import FileResponse, Http404, JsonResponse
from django.shortcuts import redirect, render
from django.views.decorators.http import require_GET

from webapp.core.health import check_all, recent_health
from webapp.core.roles import ROLE_TITLES, landing_url_name


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


@require_GET
def landing(request):
    """Where sign-in sends a user with no `next`: their role's first page."""
    if not request.user.is_authenticated:
        return redirect_to_login(request.get_full_path())
    return redirect(landing_url_name(request.user))


FAVICON = "favicon.ico"


@require_GET
def favicon(request):
    """/favicon.ico, which browsers ask for whatever the page links: the icon under static/."""
    path = finders.find(FAVICON)
    if path is None:
        raise Http404("no favicon")
    response = FileResponse(open(path, "rb"), content_type="image/x-icon")
    response["Cache-Control"] = "public, max-age=86400"
    return response


def permission_denied(request, exception=None):
    """The 403 page: which roles may open the page, and a way back to the user's own first page."""
    roles = getattr(exception, "roles", ())
    context = {"roles": [ROLE_TITLES.get(role, role) for role in roles], "reason": str(exception or "")}
    return render(request, "403.html", context, status=403)
