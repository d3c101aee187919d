"""Rewriting one candidate of a finished request: the service, the task, the page and the JSON API."""
import json

import pytest
from django.core.cache import cache
from django.test import Client

from tests.studio_helpers import enqueued, local_cache, use_fake_backend, writer  # noqa: F401 (fixtures)
from webapp.core.roles import WRITER, create_user_with_role
from webapp.corpus.models import Greeting
from webapp.studio import services
from webapp.studio.models import GenerationRequest
from webapp.studio.tasks import run_request


def finished_request(user, monkeypatch, texts=("妈妈生日快乐！", "愿您健康长寿。", "岁岁平安。")):
    use_fake_backend(monkeypatch, list(texts))
    req = GenerationRequest.objects.create(user=user, query="给妈妈的生日祝福", prompt_query="给妈妈的生日祝福", n=3)
    req.reset_candidates()
    assert run_request.run(req.pk) == "done"
    req.refresh_from_db()
    return req


def signed_in(user, **kwargs):
    client = Client(**kwargs)
    client.force_login(user)
    return client


def test_rewrite_changes_only_that_candidate_and_keeps_the_others(writer, monkeypatch, enqueued,
                                                                  django_capture_on_commit_callbacks):
    req = finished_request(writer, monkeypatch)
    before = {c.index: (c.text, c.greeting_id, c.share_token) for c in req.candidates.all()}
    with django_capture_on_commit_callbacks(execute=True):
        services.regenerate_candidate(req, 1, user=writer, ip="1.2.3.4")
    assert enqueued == [req.pk]
    req.refresh_from_db()
    assert req.status == "queued" and req.rewrite_index == 1
    state = services.progress(req)  # the stream must not keep showing the finished state
    assert state["status"] == "queued" and state["rewrite_index"] == 1
    assert [c["text"] for c in state["candidates"]] == [before[0][0], "", before[2][0]]

    backend = use_fake_backend(monkeypatch, ["新写的一条：福寿安康！"])
    assert run_request.run(req.pk) == "done"
    req.refresh_from_db()
    assert req.status == "done" and req.rewrite_index is None and req.attempts == 2
    assert backend.queries == ["给妈妈的生日祝福"]
    after = {c.index: c for c in req.candidates.all()}
    assert after[1].text == "新写的一条：福寿安康！" and after[1].finished
    assert after[1].greeting.text == after[1].text and after[1].share_token != before[1][2]
    for index in (0, 2):
        assert (after[index].text, after[index].greeting_id, after[index].share_token) == before[index]
    assert Greeting.objects.filter(pk=before[1][1]).exists()  # the old text stays in the corpus
    assert run_request.run(req.pk) == "already done"


def test_refusals_name_the_reason(writer, monkeypatch, enqueued, settings):
    req = finished_request(writer, monkeypatch)
    with pytest.raises(services.NotFound, match="candidates are 0 to 2"):
        services.regenerate_candidate(req, 3, user=writer, ip="ip")
    services.regenerate_candidate(req, 0, user=writer, ip="ip")
    with pytest.raises(services.Conflict):  # still being rewritten
        services.regenerate_candidate(req, 2, user=writer, ip="ip")
    run_request.run(req.pk)
    settings.STUDIO_RATE_LIMITS = {"user": 1, "ip": 100, "window": 60}
    cache.clear()
    services.regenerate_candidate(req, 2, user=writer, ip="ip")
    run_request.run(req.pk)
    with pytest.raises(services.RateLimited):
        services.regenerate_candidate(req, 2, user=writer, ip="ip")
    assert GenerationRequest.objects.get().status == "done"


def test_a_failed_rewrite_leaves_the_request_usable_with_a_note(writer, monkeypatch, enqueued):
    req = finished_request(writer, monkeypatch)
    kept = req.candidates.get(index=0).text
    services.regenerate_candidate(req, 2, user=writer, ip="ip")
    use_fake_backend(monkeypatch, ["半"], error=RuntimeError("engine exploded"))
    assert run_request.run(req.pk) == "failed"
    req.refresh_from_db()
    assert req.status == "done" and "engine exploded" in req.reason and "candidate 3" in req.reason
    assert req.candidates.get(index=2).text == "" and req.candidates.get(index=0).text == kept
    use_fake_backend(monkeypatch, ["再来一次"])
    services.regenerate_candidate(req, 2, user=writer, ip="ip")  # and it can be tried again
    assert run_request.run(req.pk) == "done"
    req.refresh_from_db()
    assert req.reason == "" and req.candidates.get(index=2).text == "再来一次"


def test_page_button_owner_check_csrf_and_htmx_swap(writer, monkeypatch, enqueued):
    req = finished_request(writer, monkeypatch)
    candidate = req.candidates.get(index=1)
    url = f"/write/c/{candidate.pk}/regenerate/"
    client = signed_in(writer)
    assert f'action="{url}"' in client.get(f"/write/r/{req.pk}/").content.decode()

    other, _ = create_user_with_role("other", WRITER, "pw-other-1234")
    assert signed_in(other).post(url).status_code == 404
    assert client.post("/write/c/987654/regenerate/").status_code == 404
    assert client.get(url).status_code == 405
    assert signed_in(writer, enforce_csrf_checks=True).post(url).status_code == 403
    assert GenerationRequest.objects.get().status == "done"

    response = client.post(url, HTTP_HX_REQUEST="true")
    html = response.content.decode()
    assert response.status_code == 200 and 'data-status="queued"' in html and 'hx-trigger="every' in html
    assert req.candidates.get(index=0).text in html
    again = client.post(url, HTTP_HX_REQUEST="true")  # a second click while it is written
    assert again.status_code == 409 and again.content.decode().count("Only a finished request") == 1
    run_request.run(req.pk)
    assert client.post(url).status_code == 302  # without htmx: back to the request page


def test_json_api_rewrites_one_candidate(writer, monkeypatch, enqueued):
    req = finished_request(writer, monkeypatch)
    client = signed_in(writer)
    base = f"/write/api/requests/{req.pk}/candidates"
    response = client.post(f"{base}/2/regenerate")
    body = response.json()
    assert response.status_code == 202 and body["status"] == "queued" and body["rewrite_index"] == 2
    assert body["candidates"][2]["text"] == "" and body["candidates"][0]["text"] == "妈妈生日快乐！"
    assert client.post(f"{base}/0/regenerate").status_code == 409
    run_request.run(req.pk)
    bad = client.post(f"{base}/7/regenerate")
    assert bad.status_code == 404 and "no candidate 7" in bad.json()["error"]
    assert client.post("/write/api/requests/987654/candidates/0/regenerate").status_code == 404
    other, _ = create_user_with_role("other", WRITER, "pw-other-1234")
    assert signed_in(other).post(f"{base}/0/regenerate").status_code == 404
    assert Client().post(f"{base}/0/regenerate").status_code == 401
    assert json.loads(client.get(f"/write/api/requests/{req.pk}").content)["status"] == "done"


def test_model_not_ready_refuses_a_rewrite_with_503_and_keeps_the_text(writer, monkeypatch, enqueued):
    req = finished_request(writer, monkeypatch)
    monkeypatch.setattr(services, "model_status", lambda: "模型尚未就绪 The model is not ready: no checkpoint")
    candidate = req.candidates.get(index=0)
    client = signed_in(writer)
    page = client.post(f"/write/c/{candidate.pk}/regenerate/", HTTP_HX_REQUEST="true")
    assert page.status_code == 503 and 'id="cards-error"' in page.content.decode()
    api = client.post(f"/write/api/requests/{req.pk}/candidates/0/regenerate")
    assert api.status_code == 503 and "not ready" in api.json()["error"]
    candidate.refresh_from_db()
    assert candidate.text == "妈妈生日快乐！" and enqueued == [] and GenerationRequest.objects.get().status == "done"


def test_a_rewrite_never_returns_a_text_already_on_the_page(writer, monkeypatch, enqueued):
    """The model first writes another card's text again: the guards send it back, the next one is kept."""
    req = finished_request(writer, monkeypatch)
    services.regenerate_candidate(req, 1, user=writer, ip="1.2.3.4")
    backend = use_fake_backend(monkeypatch, ["妈妈生日快乐！"])
    drafts = iter(["妈妈生日快乐！", "岁岁平安。", "妈妈，生日快乐，天天开心！"])
    real_stream = type(backend).stream

    def next_text_each_round(self, prompt, params):
        self.texts = [next(drafts)]
        yield from real_stream(self, prompt, params)

    monkeypatch.setattr(type(backend), "stream", next_text_each_round)
    assert run_request.run(req.pk) == "done"
    rewritten = req.candidates.get(index=1)
    assert rewritten.text == "妈妈，生日快乐，天天开心！"
    assert rewritten.checks["attempts"] == 3 and rewritten.checks["failed"] == []
