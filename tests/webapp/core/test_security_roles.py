"""Roles on every view and CSRF on every POST, checked against the full URL configuration.

Every URL pattern Django knows must appear in ACCESS below (the admin site's patterns are covered
as a whole by the admin rule); a new page without a row fails `test_every_url_pattern_is_in_the_table`
with its route, so whoever adds a page decides who may open it.
"""
import re
import uuid

import pytest
from django.contrib import admin
from django.contrib.auth import get_user_model
from django.test import Client
from django.urls import URLResolver, get_resolver, reverse

from webapp.core.roles import ADMIN, ANNOTATOR, WRITER, create_user_with_role

ROLES = ("anon", WRITER, ANNOTATOR, ADMIN)

# Outcomes: "in" = the role check let the request through (any answer but 401/403/login redirect/500;
# a 404 for a made-up id counts, it comes after the check), "login" = redirect to a sign-in page,
# "401"/"403" = refused. Rows: route -> (method used, {role: outcome}).
EVERYONE = dict.fromkeys(ROLES, "in")
SIGNED_IN = {"anon": "login", WRITER: "in", ANNOTATOR: "in", ADMIN: "in"}
ANNOTATORS = {"anon": "login", WRITER: "403", ANNOTATOR: "in", ADMIN: "in"}
ADMINS = {"anon": "login", WRITER: "403", ANNOTATOR: "403", ADMIN: "in"}
WRITERS = {"anon": "login", WRITER: "in", ANNOTATOR: "in", ADMIN: "in"}  # may_write: every role may write
WRITERS_JSON = {"anon": "401", WRITER: "in", ANNOTATOR: "in", ADMIN: "in"}
API_KEY_ONLY = dict.fromkeys(ROLES, "401")  # /v1/ ignores the session cookie: a bearer key or nothing

ACCESS = {
    "": ("GET", EVERYONE),
    "status/parts/": ("GET", EVERYONE),
    "healthz": ("GET", EVERYONE),
    "home/": ("GET", SIGNED_IN),  # each role's landing page (a redirect)
    "favicon.ico": ("GET", EVERYONE),
    "accounts/login/": ("GET", EVERYONE),
    "accounts/logout/": ("POST", EVERYONE),
    "accounts/password_change/": ("GET", SIGNED_IN),
    "accounts/password_change/done/": ("GET", SIGNED_IN),
    "accounts/password_reset/": ("GET", EVERYONE),
    "accounts/password_reset/done/": ("GET", EVERYONE),
    "accounts/reset/<uidb64>/<token>/": ("GET", EVERYONE),
    "accounts/reset/done/": ("GET", EVERYONE),
    "annotate/": ("GET", ANNOTATORS),
    "annotate/batch/<int:batch_id>/": ("GET", ANNOTATORS),
    "annotate/batch/<int:batch_id>/undo/": ("POST", ANNOTATORS),
    # someone else's (here: no) assignment is refused 403 after the role check: "not assigned to you"
    "annotate/assignment/<int:assignment_id>/submit/": ("POST", {**ANNOTATORS, ANNOTATOR: "403", ADMIN: "403"}),
    "annotate/assignment/<int:assignment_id>/skip/": ("POST", ANNOTATORS),
    "annotate/batches/new/": ("GET", ADMINS),
    "annotate/guidelines/": ("GET", ADMINS),
    "annotate/batch/<int:batch_id>/guidelines/": ("GET", ADMINS),
    "annotate/review/": ("GET", ADMINS),
    "annotate/review/<int:item_id>/settle/": ("POST", ADMINS),
    "annotate/alignment/": ("GET", ADMINS),
    "annotate/batch/<int:batch_id>/export.jsonl": ("GET", ADMINS),
    "annotate/export/preferences.json": ("GET", ADMINS),
    "annotate/import/": ("GET", ADMINS),
    "annotate/batches/from-checkpoint/": ("GET", ADMINS),
    "annotate/builds/<int:build_id>/": ("GET", ADMINS),
    "annotate/preferences/record/": ("POST", ADMINS),
    "write/": ("GET", WRITERS),
    "write/signup/": ("GET", EVERYONE),
    "write/history/": ("GET", WRITERS),
    "write/r/<int:pk>/": ("GET", WRITERS),
    "write/r/<int:pk>/cards/": ("GET", WRITERS),
    "write/r/<int:pk>/regenerate/": ("POST", WRITERS),
    "write/c/<int:pk>/feedback/": ("POST", WRITERS),
    "write/c/<int:pk>/regenerate/": ("POST", WRITERS),
    "write/s/<str:token>/": ("GET", EVERYONE),  # share links are public by design (an unguessable token)
    "write/api/requests": ("POST", WRITERS_JSON),
    "write/api/requests/<int:pk>": ("GET", WRITERS_JSON),
    "write/api/requests/<int:pk>/stream": ("GET", WRITERS_JSON),
    "write/api/requests/<int:pk>/candidates/<int:index>/regenerate": ("POST", WRITERS_JSON),
    "train/": ("GET", ADMINS),
    "train/start/": ("GET", ADMINS),
    "train/start/<slug:kind>/": ("GET", ADMINS),
    "train/start/<slug:kind>/upload/": ("POST", ADMINS),
    "train/judges/": ("GET", ADMINS),
    "train/judges/<int:pk>/activate/": ("POST", ADMINS),
    "train/jobs/<int:pk>/": ("GET", ADMINS),
    "train/jobs/<int:pk>/live/": ("GET", ADMINS),
    "train/jobs/<int:pk>/cancel/": ("POST", ADMINS),
    "train/checkpoints/": ("GET", ADMINS),
    "train/checkpoints/<int:pk>/promote/": ("POST", ADMINS),
    "train/checkpoints/rollback/": ("POST", ADMINS),
    "train/checkpoints/compare/": ("GET", ADMINS),
    "train/checkpoints/compare/annotate/": ("POST", ADMINS),
    "v1/chat/completions": ("POST", API_KEY_ONLY),
    "v1/completions": ("POST", API_KEY_ONLY),
    "v1/models": ("GET", API_KEY_ONLY),
    "v1/engine": ("GET", API_KEY_ONLY),
}
ADMIN_PREFIX = "admin/"
ADMIN_SITE = {"anon": "login", WRITER: "login", ANNOTATOR: "login", ADMIN: "in"}  # staff only, via admin login

SAMPLE_ARGS = {"int": "987654", "str": "no-such-token", "slug": "no-such-slug", "path": "no/such/path",
               "uuid": str(uuid.UUID(int=1))}


def all_routes(patterns=None, prefix=""):
    """(route, URLPattern) for every leaf pattern, routes joined from every include()."""
    for pattern in get_resolver().url_patterns if patterns is None else patterns:
        if isinstance(pattern, URLResolver):
            yield from all_routes(pattern.url_patterns, prefix + str(pattern.pattern))
        else:
            yield prefix + str(pattern.pattern), pattern


def concrete_url(route: str) -> str:
    """A URL for `route` with made-up ids (objects that do not exist: the role check comes first)."""
    def sample(match):
        converter, _, _name = match.group(1).rpartition(":")
        return SAMPLE_ARGS[converter or "str"]
    return "/" + re.sub(r"<([^>]+)>", sample, route)


def outcome(response) -> str:
    location = response.get("Location", "")
    if response.status_code in (301, 302) and ("/accounts/login/" in location or "/admin/login/" in location):
        return "login"
    if response.status_code in (401, 403, 500):
        return str(response.status_code)
    return "in"


@pytest.fixture
def fast_passwords(settings):
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


@pytest.fixture
def clients(db, fast_passwords):
    """One test client per role: anonymous, writer, annotator, admin."""
    result = {"anon": Client()}
    for role in (WRITER, ANNOTATOR, ADMIN):
        user, _ = create_user_with_role(f"user-{role}", role)
        client = Client()
        client.force_login(user)
        result[role] = client
    return result


def test_every_url_pattern_is_in_the_table():
    routes = {route for route, _ in all_routes()}
    missing = sorted(r for r in routes if r not in ACCESS and not r.startswith(ADMIN_PREFIX))
    assert not missing, ("URL patterns without a row in tests/webapp/core/test_security_roles.py ACCESS (decide who may open "
                         f"them): {missing}")
    stale = sorted(set(ACCESS) - routes)
    assert not stale, f"rows in ACCESS for routes that no longer exist: {stale}"


def test_roles_on_every_view(clients):
    wrong = []
    for route, (method, expected) in ACCESS.items():
        url = concrete_url(route)
        for role in ROLES:
            client = clients[role]
            response = client.get(url) if method == "GET" else client.post(url)
            got = outcome(response)
            if got != expected[role]:
                wrong.append(f"{method} {url} as {role}: expected {expected[role]}, got {got} ({response.status_code})")
            if method == "POST" and route == "accounts/logout/" and role != "anon":
                client.force_login(get_user_model().objects.get(username=f"user-{role}"))  # signed out: back in
    assert not wrong, "\n".join(wrong)


def admin_urls() -> list[str]:
    """The index, each app index, and every registered model's changelist, add, change, history and delete pages."""
    urls = [reverse("admin:index")]
    for model in admin.site._registry:
        meta = model._meta
        urls.append(reverse("admin:app_list", args=[meta.app_label]))
        urls.append(reverse(f"admin:{meta.app_label}_{meta.model_name}_changelist"))
        urls.append(reverse(f"admin:{meta.app_label}_{meta.model_name}_add"))
        for page in ("change", "history", "delete"):
            urls.append(reverse(f"admin:{meta.app_label}_{meta.model_name}_{page}", args=["987654"]))
    return sorted(set(urls))


def test_the_admin_site_is_staff_only(clients):
    urls = admin_urls()
    assert len(urls) > 20
    wrong = []
    # the admin renders the index, app indexes, changelists and add forms; the other roles try every URL
    rendered_for_admin = {u for u in urls if u.endswith(("/add/", "/admin/")) or u.count("/") <= 4}
    for url in urls:
        for role in ROLES:
            if role == ADMIN and url not in rendered_for_admin:
                continue  # admin page rendering is slow; the other roles must be sent to the login on every URL
            response = clients[role].get(url)
            if outcome(response) != ADMIN_SITE[role] or response.status_code >= 500:
                wrong.append(f"GET {url} as {role}: expected {ADMIN_SITE[role]}, got {response.status_code}")
    assert not wrong, "\n".join(wrong)


def test_a_writer_cannot_open_another_writers_request(clients):
    from webapp.studio.models import GenerationRequest

    owner, _ = create_user_with_role("owner", WRITER)
    req = GenerationRequest.objects.create(user=owner, query="七十生日祝福语")
    own = Client()
    own.force_login(owner)
    assert own.get(f"/write/r/{req.pk}/").status_code == 200
    assert own.get(f"/write/api/requests/{req.pk}").status_code == 200
    for url in (f"/write/r/{req.pk}/", f"/write/r/{req.pk}/cards/", f"/write/api/requests/{req.pk}"):
        assert clients[WRITER].get(url).status_code == 404, url
    assert clients[WRITER].post(f"/write/r/{req.pk}/regenerate/").status_code == 404


def test_a_user_without_any_role_gets_no_page(db, fast_passwords):
    loner = get_user_model().objects.create_user("loner", password="x")
    client = Client()
    client.force_login(loner)
    assert client.get("/write/").status_code == 403
    assert client.get("/annotate/").status_code == 403
    assert client.post("/write/api/requests", "{}", content_type="application/json").status_code == 403


# --- CSRF: every route refuses a POST without a token (Django's check runs before any view);
# the /v1/ API is exempt by design and authenticates by bearer key only.

def is_csrf_failure(response) -> bool:
    return response.status_code == 403 and b"CSRF" in response.content


def test_every_post_without_a_csrf_token_is_refused(clients):
    client = Client(enforce_csrf_checks=True)
    client.force_login(get_user_model().objects.get(username=f"user-{ADMIN}"))
    routes = sorted(route for route, _ in all_routes())
    checked, wrong = 0, []
    for route in routes:
        url = concrete_url(route)
        if route.startswith("v1/"):
            continue
        response = client.post(url, {"username": "user-admin", "password": "x"})
        checked += 1
        if not is_csrf_failure(response):
            wrong.append(f"POST {url} without a CSRF token: {response.status_code}")
    for url in admin_urls():
        response = client.post(url, {})
        checked += 1
        if not is_csrf_failure(response):
            wrong.append(f"POST {url} without a CSRF token: {response.status_code}")
    assert checked > 60 and not wrong, "\n".join(wrong)


def test_a_post_with_the_csrf_token_passes_the_check(clients):
    """The control for the test above: the same client with the cookie's token in the header gets past CSRF."""
    client = Client(enforce_csrf_checks=True)
    client.force_login(get_user_model().objects.get(username=f"user-{WRITER}"))
    client.get("/write/")  # sets the csrftoken cookie
    token = client.cookies["csrftoken"].value
    form = client.post("/write/", {"query": ""}, headers={"X-CSRFToken": token})
    assert form.status_code == 400 and not is_csrf_failure(form)  # the form's own error, not CSRF's
    api = client.post("/write/api/requests", "[]", content_type="application/json", headers={"X-CSRFToken": token})
    assert api.status_code == 400 and "JSON object" in api.json()["error"]


def test_the_openai_api_refuses_cookie_only_auth_and_takes_a_bearer_key(clients):
    from webapp.api.keys import create_api_key

    writer = get_user_model().objects.get(username=f"user-{WRITER}")
    for url in ("/v1/chat/completions", "/v1/completions"):
        response = clients[ADMIN].post(url, '{"model": "zhufu", "prompt": "生日"}', content_type="application/json")
        assert response.status_code == 401 and response.json()["error"]["code"] == "invalid_api_key"
    _, secret = create_api_key(writer)
    keyed = Client(enforce_csrf_checks=True)  # no cookie, no CSRF token: a key is enough
    assert keyed.get("/v1/models", headers={"Authorization": f"Bearer {secret}"}).status_code == 200
    refused = keyed.get("/v1/engine", headers={"Authorization": f"Bearer {secret}"})
    assert refused.status_code == 403  # engine statistics: staff keys only
    assert keyed.get("/v1/models", headers={"Authorization": f"Bearer {secret}x"}).status_code == 401
