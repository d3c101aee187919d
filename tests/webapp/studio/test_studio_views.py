"""Studio pages and JSON API: validation, escaping, ownership, CSRF, roles, rate limits."""
import json

import pytest
from django.contrib.auth import get_user_model
from django.core.cache import cache
from django.test import Client

from tests.studio_helpers import enqueued, local_cache, use_fake_backend, writer  # noqa: F401 (fixtures)
from webapp.core.roles import WRITER, create_user_with_role
from webapp.corpus.models import Label
from webapp.studio import services
from webapp.studio.models import GenerationRequest
from webapp.studio.tasks import run_request

XSS = '<script>alert("x")</script>'


@pytest.fixture
def client_for():
    def make(user, **kwargs):
        client = Client(**kwargs)
        client.force_login(user)
        return client
    return make


def api_post(client, body, **extra):
    return client.post("/write/api/requests", data=json.dumps(body), content_type="application/json", **extra)


def test_anonymous_is_sent_to_sign_in_and_api_says_401(db):
    assert Client().get("/write/").status_code == 302
    assert Client().get("/write/history/").url.startswith("/accounts/login/")
    assert api_post(Client(), {"query": "x"}).status_code == 401


def test_user_without_a_role_is_refused(db, client_for):
    nobody = get_user_model().objects.create_user("nobody", password="pw-nobody-123")
    assert client_for(nobody).get("/write/").status_code == 403


def test_write_page_creates_a_request_and_enqueues_it(writer, client_for, monkeypatch, enqueued,
                                                     django_capture_on_commit_callbacks):
    use_fake_backend(monkeypatch, ["生日快乐"])
    client = client_for(writer)
    assert "生成 Generate" in client.get("/write/").content.decode()
    with django_capture_on_commit_callbacks(execute=True):
        response = client.post("/write/", {"query": "给妈妈的生日祝福", "tone": "温馨", "n": "2"})
    req = GenerationRequest.objects.get()
    assert response.status_code == 302 and response.url == f"/write/r/{req.pk}/"
    assert enqueued == [req.pk] and req.n == 2 and req.candidates.count() == 2
    page = client.get(response.url).content.decode()
    assert "排队中" in page and 'id="card-1"' in page


@pytest.mark.parametrize("query, message", [("", "cannot be empty"), ("祝" * 501, "500"),
                                            ("生日\x07快乐", "Control characters")])
def test_bad_requests_are_refused_on_the_page_and_the_api(writer, client_for, monkeypatch, enqueued, query, message):
    use_fake_backend(monkeypatch, ["x"])
    client = client_for(writer)
    response = client.post("/write/", {"query": query})
    assert response.status_code == 400 and message in response.content.decode()
    response = api_post(client, {"query": query})
    assert response.status_code == 400 and "query" in response.json()["errors"]
    response = api_post(client, {"query": "ok", "tone": "x\x00"})
    assert response.status_code == 400 and "tone" in response.json()["errors"]
    assert not GenerationRequest.objects.exists() and enqueued == []


def test_api_unknown_fields_and_wrong_types_are_named(writer, client_for, monkeypatch, enqueued,
                                                     django_capture_on_commit_callbacks):
    use_fake_backend(monkeypatch, ["x"])
    client = client_for(writer)
    response = api_post(client, {"query": "新年祝福", "temperature": 2, "bogus": 1})
    assert response.status_code == 400 and response.json()["unknown_fields"] == ["bogus", "temperature"]
    response = api_post(client, {"query": "新年祝福", "n": "3"})
    assert response.status_code == 400 and "n" in response.json()["errors"]
    response = api_post(client, {"query": "新年祝福", "n": 9})
    assert response.status_code == 400 and "n" in response.json()["errors"]
    response = client.post("/write/api/requests", data="{not json", content_type="application/json")
    assert response.status_code == 400
    with django_capture_on_commit_callbacks(execute=True):
        response = api_post(client, {"query": "新年祝福", "n": 2, "tone": "古风"})
    assert response.status_code == 201
    body = response.json()
    assert body["status"] == "queued" and len(body["candidates"]) == 2 and enqueued == [body["id"]]
    assert client.get(f"/write/api/requests/{body['id']}").json()["query"] == "新年祝福"


def test_model_not_ready_is_a_clear_page_state_and_a_503(writer, client_for, enqueued):
    client = client_for(writer)
    page = client.get("/write/")
    assert page.status_code == 200 and "模型尚未就绪" in page.content.decode()
    response = client.post("/write/", {"query": "生日祝福"})
    assert response.status_code == 503 and "not ready" in response.content.decode()
    assert api_post(client, {"query": "生日祝福"}).status_code == 503


def test_html_in_every_field_is_escaped_on_every_page(writer, client_for, monkeypatch, enqueued):
    use_fake_backend(monkeypatch, [XSS + "祝福"])
    client = client_for(writer)
    refused = client.post("/write/", {"query": "祝福", "occasion": XSS, "recipient": XSS, "n": 1})
    html = refused.content.decode()  # slot fields take known values only; the refusal quotes the input, escaped
    assert refused.status_code == 400 and "<script>alert" not in html and "&lt;script&gt;alert" in html
    assert "无法识别" in html and not GenerationRequest.objects.exists()
    fields = {name: XSS for name in ("query", "details", "avoid")}
    response = client.post("/write/", {**fields, "occasion": "生日", "recipient": "妈妈", "tone": "古风", "length": "短",
                                       "n": 1})
    req = GenerationRequest.objects.get()
    run_request.run(req.pk)
    candidate = req.candidates.get()
    assert candidate.text.startswith(XSS)
    pages = ["/write/", response.url, f"/write/r/{req.pk}/cards/", "/write/history/",
             f"/write/s/{candidate.share_token}/"]
    for url in pages:
        html = (Client() if "/s/" in url else client).get(url).content.decode()
        assert "<script>alert" not in html, url
        assert "&lt;script&gt;alert" in html, url
    failed = GenerationRequest.objects.create(user=writer, query="q", status="failed", reason=XSS)
    html = client.get(f"/write/r/{failed.pk}/").content.decode()
    assert "<script>alert" not in html and "&lt;script&gt;" in html


def test_other_users_and_missing_requests_are_404(writer, client_for, monkeypatch, enqueued):
    use_fake_backend(monkeypatch, ["祝福"])
    other, _ = create_user_with_role("other", WRITER, "pw-other-1234")
    req = GenerationRequest.objects.create(user=other, query="q", n=1)
    req.reset_candidates()
    run_request.run(req.pk)
    candidate = req.candidates.get()
    client = client_for(writer)
    for url in (f"/write/r/{req.pk}/", f"/write/r/{req.pk}/cards/", f"/write/api/requests/{req.pk}",
                f"/write/api/requests/{req.pk}/stream", "/write/r/99999/", "/write/api/requests/99999",
                "/write/s/no-such-token/"):
        assert client.get(url).status_code == 404, url
    assert client.post(f"/write/c/{candidate.pk}/feedback/", {"action": "up"}).status_code == 404
    assert client.post(f"/write/r/{req.pk}/regenerate/").status_code == 404
    assert not Label.objects.exists()


def test_csrf_is_enforced_on_every_post(writer, client_for, monkeypatch, enqueued):
    use_fake_backend(monkeypatch, ["祝福"])
    req = GenerationRequest.objects.create(user=writer, query="q", n=1)
    req.reset_candidates()
    run_request.run(req.pk)
    client = client_for(writer, enforce_csrf_checks=True)
    assert client.post("/write/", {"query": "生日祝福"}).status_code == 403
    assert api_post(client, {"query": "生日祝福"}).status_code == 403
    assert client.post(f"/write/c/{req.candidates.get().pk}/feedback/", {"action": "up"}).status_code == 403
    assert client.post(f"/write/r/{req.pk}/regenerate/").status_code == 403
    assert Client(enforce_csrf_checks=True).post("/write/signup/", {"username": "u"}).status_code == 403
    assert GenerationRequest.objects.count() == 1 and not Label.objects.exists()
    # with the token, the API accepts the same POST
    client.get("/write/")
    token = client.cookies["csrftoken"].value
    assert api_post(client, {"query": "生日祝福"}, HTTP_X_CSRFTOKEN=token).status_code == 201


def test_feedback_buttons_store_click_labels(writer, client_for, monkeypatch, enqueued):
    use_fake_backend(monkeypatch, ["岁岁平安"])
    req = GenerationRequest.objects.create(user=writer, query="q", n=1)
    req.reset_candidates()
    run_request.run(req.pk)
    candidate = req.candidates.get()
    client = client_for(writer)
    response = client.post(f"/write/c/{candidate.pk}/feedback/", {"action": "up"}, HTTP_HX_REQUEST="true")
    assert response.status_code == 200 and 'aria-pressed="true"' in response.content.decode()
    assert client.post(f"/write/c/{candidate.pk}/feedback/", {"action": "nope"}).status_code == 302
    label = Label.objects.get()
    assert (label.value, label.source_kind, label.source_name) == ("good", "click", f"user:{writer.pk}:thumb")


def test_event_stream_sends_progress_then_end(writer, client_for, monkeypatch, enqueued):
    use_fake_backend(monkeypatch, ["平安喜乐"])
    req = GenerationRequest.objects.create(user=writer, query="q", n=1)
    req.reset_candidates()
    run_request.run(req.pk)
    response = client_for(writer).get(f"/write/api/requests/{req.pk}/stream")
    assert response["Content-Type"].startswith("text/event-stream")
    body = b"".join(response.streaming_content).decode()
    assert "event: progress" in body and "平安喜乐" in body and body.rstrip().endswith('data: {"status": "done"}')


def test_event_stream_reads_a_queued_request_from_the_database_about_once_a_second(writer, monkeypatch):
    """Until a worker publishes state to the cache, the stream's state is in the database: read it there at
    most every STREAM_DATABASE_POLL_SECONDS (not every 0.1 s tick), and still see a change made there."""
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    from webapp.studio import views

    monkeypatch.setattr(views, "STREAM_MAX_SECONDS", 1.2)
    req = GenerationRequest.objects.create(user=writer, query="q", n=1)
    req.reset_candidates()
    with CaptureQueriesContext(connection) as queries:
        body = "".join(views._events(req))
    reads = sum('FROM "studio_generationrequest"' in q["sql"] for q in queries.captured_queries)
    assert 1 <= reads <= 2, queries.captured_queries  # 0 s and 1 s, where every tick would have been ~12
    assert '"status": "queued"' in body and "event: timeout" in body

    GenerationRequest.objects.filter(pk=req.pk).update(status="failed", reason="boom")  # nothing in the cache
    body = "".join(views._events(req))
    assert '"reason": "boom"' in body and body.rstrip().endswith('data: {"status": "failed"}')


def test_rate_limits_answer_429_on_the_api_and_a_message_on_the_page(writer, client_for, monkeypatch, enqueued,
                                                                     settings):
    use_fake_backend(monkeypatch, ["x"])
    settings.STUDIO_RATE_LIMITS = {"user": 2, "ip": 3, "window": 60}
    client = client_for(writer)
    assert api_post(client, {"query": "一"}).status_code == 201
    assert api_post(client, {"query": "二"}).status_code == 201
    response = api_post(client, {"query": "三"})
    assert response.status_code == 429 and "Too many requests" in response.json()["error"]
    page = client.post("/write/", {"query": "四"})
    assert page.status_code == 429 and "请求太频繁" in page.content.decode()
    # per address: another account from the same address is stopped at the address's limit
    other, _ = create_user_with_role("other", WRITER, "pw-other-1234")
    assert api_post(client_for(other), {"query": "五"}).status_code == 429
    assert GenerationRequest.objects.count() == 2


def test_signup_creates_a_signed_in_writer(db):
    client = Client()
    response = client.post("/write/signup/", {"username": "newbie", "password1": "a-long-pass-9981",
                                              "password2": "a-long-pass-9981"})
    assert response.status_code == 302 and response.url == "/write/"
    user = get_user_model().objects.get(username="newbie")
    assert user.groups.filter(name=WRITER).exists() and not user.is_staff
    assert client.get("/write/").status_code == 200
    bad = Client().post("/write/signup/", {"username": "x", "password1": "a", "password2": "b"})
    assert bad.status_code == 400


def test_a_writer_page_reads_the_users_roles_once(writer, client_for):
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    client = client_for(writer)
    with CaptureQueriesContext(connection) as queries:
        assert client.get("/write/history/").status_code == 200  # the view's check and the nav's both ask
    assert sum('"auth_group"' in q["sql"] for q in queries.captured_queries) == 1


def test_the_request_limit_follows_the_models_context_and_a_longer_request_is_refused(writer, client_for,
                                                                                         enqueued):
    from webapp.checkpoints.models import Checkpoint

    Checkpoint.objects.create(name="ctx256", run_name="r", path="/nowhere", preset="small", status="active",
                              model_config={"max_position_embeddings": 256})
    client = client_for(writer)
    page = client.get("/write/").content.decode()
    assert 'maxlength="128"' in page and 'data-limit="128"' in page and "/ 128 字" in page
    response = client.post("/write/api/requests", data=json.dumps({"query": "祝" * 129}),
                           content_type="application/json")
    assert response.status_code == 400
    message = response.json()["errors"]["query"][0]["message"]
    assert "最多 128 个字" in message and "256" in message and "129" in message
    assert not GenerationRequest.objects.exists()
