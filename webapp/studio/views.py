"""Thin views: check the user, validate, call services, render (pages) or answer JSON (API).

The JSON API uses the session (sign in at /accounts/login/) and Django's CSRF check: a POST
sends the csrftoken cookie's value in an ``X-CSRFToken`` header."""
import json
import time
from functools import wraps

from django.contrib.auth import login
from django.contrib.auth.views import redirect_to_login
from django.core.paginator import Paginator
from django.http import Http404, JsonResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from webapp.core.roles import ADMIN, ANNOTATOR, WRITER, RoleRequired, create_user_with_role, may_write
from webapp.core.security import client_ip
from webapp.core.streaming import event_stream_response
from webapp.core.accounts import SignUpForm
from webapp.studio import ranking, services
from webapp.studio.forms import FeedbackForm, RequestForm
from webapp.studio.models import Candidate, GenerationRequest

STREAM_POLL_SECONDS = 0.1
# Until a worker publishes the request's state (it waits in the queue), that state is in the database only:
# read it there at most this often, so streams of queued requests don't load the database 10 times a second each.
STREAM_DATABASE_POLL_SECONDS = 1.0
STREAM_MAX_SECONDS = 300


def writer_required(view):
    @wraps(view)
    def wrapper(request, *args, **kwargs):
        if not request.user.is_authenticated:
            return redirect_to_login(request.get_full_path())
        if not may_write(request.user):
            raise RoleRequired((WRITER, ANNOTATOR, ADMIN), "Your account has no writer role.")
        return view(request, *args, **kwargs)
    return wrapper


def api_writer_required(view):
    @wraps(view)
    def wrapper(request, *args, **kwargs):
        if not request.user.is_authenticated:
            return JsonResponse({"error": "sign in first (session authentication)"}, status=401)
        if not may_write(request.user):
            return JsonResponse({"error": "your account has no writer role"}, status=403)
        return view(request, *args, **kwargs)
    return wrapper


def own_request(request, pk) -> GenerationRequest:
    return get_object_or_404(GenerationRequest, pk=pk, user=request.user)


def _cards_context(request, req: GenerationRequest) -> dict:
    candidates = ranking.in_card_order(req.status == GenerationRequest.Status.DONE,
                                       list(req.candidates.select_related("greeting")))  # best first once judged
    feedback = services.feedback_for(request.user, candidates)
    for c in candidates:
        c.my = feedback.get(c.greeting_id, {})
    return {"req": req, "candidates": candidates}


# --- Pages.
@require_http_methods(["GET", "POST"])
@writer_required
def write(request):
    problem = services.model_status()
    # a GET may carry the fields of an earlier request to correct (the card's 改 link)
    initial = {name: request.GET[name] for name in services.REQUEST_FIELDS if request.GET.get(name)}
    form = RequestForm(request.POST if request.method == "POST" else None, initial=initial, limit=services.query_limit())
    error, status = "", 200
    if request.method == "POST" and form.is_valid():
        try:
            req = services.create_request(user=request.user, ip=client_ip(request), fields=form.cleaned_data)
        except services.StudioError as exc:
            error, status = str(exc), exc.status
        else:
            return redirect("studio:request", pk=req.pk)
    elif request.method == "POST":
        status = 400
    recent = GenerationRequest.objects.filter(user=request.user)[:5]
    return render(request, "studio/write.html", {"form": form, "problem": problem, "error": error, "recent": recent},
                  status=status)


@require_GET
@writer_required
def request_page(request, pk):
    req = own_request(request, pk)
    return render(request, "studio/request.html", {**_cards_context(request, req), "form": RequestForm(initial={
        name: getattr(req, name) for name in services.REQUEST_FIELDS}, limit=services.query_limit())})


@require_GET
@writer_required
def request_cards(request, pk):
    req = own_request(request, pk)
    return render(request, "studio/_cards.html", _cards_context(request, req))


@require_POST
@writer_required
def regenerate(request, pk):
    """Write the request again as a new one (the old stays in the history). With htmx the new
    request's cards replace the old ones in place and the address moves to it; without, a redirect."""
    req = own_request(request, pk)
    try:
        new = services.regenerate(req, user=request.user, ip=client_ip(request))
    except services.StudioError as exc:
        if request.htmx:
            return render(request, "studio/_cards.html", {**_cards_context(request, req), "cards_error": str(exc)},
                          status=exc.status)
        return render(request, "studio/request.html", {**_cards_context(request, req), "error": str(exc)},
                      status=exc.status)
    if request.htmx:
        response = render(request, "studio/_cards.html", _cards_context(request, new))
        response["HX-Push-Url"] = reverse("studio:request", args=[new.pk])
        return response
    return redirect("studio:request", pk=new.pk)


@require_POST
@writer_required
def regenerate_candidate(request, pk):
    """Rewrite one candidate in place (the request's other candidates stay)."""
    candidate = get_object_or_404(Candidate.objects.select_related("request"), pk=pk, request__user=request.user)
    req, error, status = candidate.request, "", 200
    try:
        req = services.regenerate_candidate(req, candidate.index, user=request.user, ip=client_ip(request))
    except services.StudioError as exc:
        error, status = str(exc), exc.status
    if request.htmx:  # the cards section comes back queued and the page streams it again
        return render(request, "studio/_cards.html", {**_cards_context(request, req), "cards_error": error},
                      status=status)
    if error:
        return render(request, "studio/request.html", {**_cards_context(request, req), "error": error}, status=status)
    return redirect("studio:request", pk=req.pk)


@require_POST
@writer_required
def feedback(request, pk):
    candidate = get_object_or_404(Candidate.objects.select_related("request", "greeting"), pk=pk,
                                  request__user=request.user)
    form = FeedbackForm(request.POST)
    error, status = "", 200
    if not form.is_valid():
        error, status = "unknown action", 400
    else:
        try:
            services.record_feedback(candidate, request.user, form.cleaned_data["action"])
        except services.StudioError as exc:
            error, status = str(exc), exc.status
    candidate.my = services.feedback_for(request.user, [candidate]).get(candidate.greeting_id, {})
    if request.htmx:
        return render(request, "studio/_card.html", {"c": candidate, "req": candidate.request, "error": error},
                      status=status)
    return redirect("studio:request", pk=candidate.request_id)


@require_GET
@writer_required
def history(request):
    page = Paginator(GenerationRequest.objects.filter(user=request.user).prefetch_related("candidates"), 20)
    return render(request, "studio/history.html", {"page": page.get_page(request.GET.get("page"))})


@require_GET
def share(request, token):
    candidate = get_object_or_404(Candidate.objects.select_related("request"), share_token=token)
    if candidate.request.status != GenerationRequest.Status.DONE or not candidate.text:
        raise Http404("not shareable")
    return render(request, "studio/share.html", {"c": candidate})


@require_http_methods(["GET", "POST"])
def signup(request):
    if request.user.is_authenticated:
        return redirect("studio:write")
    form = SignUpForm(request.POST if request.method == "POST" else None)
    if request.method == "POST" and form.is_valid():
        user, _ = create_user_with_role(form.cleaned_data["username"], WRITER, form.cleaned_data["password1"])
        login(request, user, backend="django.contrib.auth.backends.ModelBackend")
        return redirect("studio:write")
    return render(request, "studio/signup.html", {"form": form}, status=400 if request.method == "POST" else 200)


# --- JSON API.
def _json_request(req: GenerationRequest) -> dict:
    return {**services.progress(req), "query": req.query, "created_at": req.created_at.isoformat()}


@require_POST
@api_writer_required
def api_create(request):
    try:
        body = json.loads(request.body.decode("utf-8") or "null")
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        return JsonResponse({"error": f"the body is not JSON: {exc}"}, status=400)
    if not isinstance(body, dict):
        return JsonResponse({"error": "the body must be a JSON object"}, status=400)
    unknown = sorted(set(body) - set(services.REQUEST_FIELDS))
    if unknown:
        return JsonResponse({"error": f"unknown fields: {', '.join(unknown)}", "unknown_fields": unknown}, status=400)
    wrong = [k for k, v in body.items() if v is not None and (
        not isinstance(v, int) or isinstance(v, bool) if k == "n" else not isinstance(v, str))]
    if wrong:
        return JsonResponse({"error": f"wrong type for: {', '.join(wrong)}",
                             "errors": {k: ["wrong type"] for k in wrong}}, status=400)
    form = RequestForm({k: v for k, v in body.items() if v is not None}, limit=services.query_limit())
    if not form.is_valid():
        return JsonResponse({"error": "invalid request", "errors": form.errors.get_json_data()}, status=400)
    try:
        req = services.create_request(user=request.user, ip=client_ip(request), fields=form.cleaned_data)
    except services.StudioError as exc:
        return JsonResponse({"error": str(exc)}, status=exc.status)
    return JsonResponse(_json_request(req), status=201)


@require_POST
@api_writer_required
def api_regenerate_candidate(request, pk, index):
    """202 with the request's state (queued again, candidate `index` empty); 404 for a request
    that is not yours or a candidate it does not have, 409 while it is still being written."""
    req = GenerationRequest.objects.filter(pk=pk, user=request.user).first()
    if req is None:
        return JsonResponse({"error": f"no request {pk} of yours"}, status=404)
    try:
        req = services.regenerate_candidate(req, index, user=request.user, ip=client_ip(request))
    except services.StudioError as exc:
        return JsonResponse({"error": str(exc)}, status=exc.status)
    return JsonResponse(_json_request(req), status=202)


@require_GET
@api_writer_required
def api_detail(request, pk):
    return JsonResponse(_json_request(own_request(request, pk)))


def _events(req: GenerationRequest):
    """Server-sent events: `progress` whenever the state changes, then `end` once finished."""
    last = None
    deadline = time.monotonic() + STREAM_MAX_SECONDS
    idle = 0.0
    next_database_read = 0.0
    yield "retry: 2000\n\n"
    while time.monotonic() < deadline:
        state = services.cached_progress(req)
        if state is None and time.monotonic() >= next_database_read:
            state = services.progress(req)
            next_database_read = time.monotonic() + STREAM_DATABASE_POLL_SECONDS
        elif state is None:
            state = last
        if state != last:
            last = state
            yield f"event: progress\ndata: {json.dumps(state, ensure_ascii=False)}\n\n"
            idle = 0.0
        elif idle >= 10:
            yield ": keep-alive\n\n"
            idle = 0.0
        if state["status"] in ("done", "failed"):
            yield f"event: end\ndata: {json.dumps({'status': state['status']})}\n\n"
            return
        time.sleep(STREAM_POLL_SECONDS)
        idle += STREAM_POLL_SECONDS
    yield "event: timeout\ndata: {}\n\n"


@require_GET
@api_writer_required
def api_stream(request, pk):
    req = own_request(request, pk)
    return event_stream_response(request, _events(req))
