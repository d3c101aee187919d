"""The writer's pages (issue 18): regenerate all in place, a failed request's way forward, the cut
mark, short Recent entries, and bilingual form errors on the page and the JSON API."""
import json
import re

import pytest
from django.test import Client

from tests.studio_helpers import enqueued, local_cache, use_fake_backend, writer  # noqa: F401 (fixtures)
from webapp.studio.models import GenerationRequest
from webapp.studio.tasks import run_request


@pytest.fixture
def client(writer):
    client = Client()
    client.force_login(writer)
    return client


def finished_request(writer, texts=("岁岁平安",), n=2, **fields) -> GenerationRequest:
    req = GenerationRequest.objects.create(user=writer, query=fields.pop("query", "给妈妈的生日祝福"), n=n, **fields)
    req.reset_candidates()
    run_request.run(req.pk)
    req.refresh_from_db()
    return req


def cards_html(html: str) -> str:
    return re.search(r'<section id="cards".*?</section>', html, re.S).group(0)


def test_regenerate_all_with_htmx_answers_the_new_requests_cards_in_place(writer, client, monkeypatch, enqueued,
                                                                           django_capture_on_commit_callbacks):
    use_fake_backend(monkeypatch, ["岁岁平安", "福寿安康"])
    old = finished_request(writer)
    page = client.get(f"/write/r/{old.pk}/").content.decode()
    button = re.search(r'<form[^>]*hx-post="/write/r/%d/regenerate/"[^>]*hx-target="#cards"[^>]*>' % old.pk,
                       cards_html(page))
    assert button and 'id="regenerate-all"' in cards_html(page)  # the button travels with the cards it redoes
    with django_capture_on_commit_callbacks(execute=True):
        response = client.post(f"/write/r/{old.pk}/regenerate/", HTTP_HX_REQUEST="true")
    new = GenerationRequest.objects.exclude(pk=old.pk).get()
    html = response.content.decode()
    assert response.status_code == 200 and html.lstrip().startswith("<section id=\"cards\"")
    assert "<html" not in html and f'data-cards-url="/write/r/{new.pk}/cards/"' in html
    assert response["HX-Push-Url"] == f"/write/r/{new.pk}/"
    assert enqueued == [new.pk] and new.query == old.query and new.n == old.n
    assert 'id="regenerate-all"' not in html  # queued: nothing to regenerate yet
    assert GenerationRequest.objects.filter(pk=old.pk, status="done").exists()  # the old stays in the history


def test_regenerate_all_without_javascript_still_redirects(writer, client, monkeypatch, enqueued):
    use_fake_backend(monkeypatch, ["岁岁平安"])
    old = finished_request(writer)
    response = client.post(f"/write/r/{old.pk}/regenerate/")
    new = GenerationRequest.objects.exclude(pk=old.pk).get()
    assert response.status_code == 302 and response.url == f"/write/r/{new.pk}/"


def test_a_refused_regenerate_with_htmx_shows_the_reason_on_the_old_cards(writer, client, monkeypatch, enqueued,
                                                                          settings):
    use_fake_backend(monkeypatch, ["岁岁平安"])
    old = finished_request(writer)
    settings.STUDIO_RATE_LIMITS = {"user": 0, "ip": 100, "window": 60}
    response = client.post(f"/write/r/{old.pk}/regenerate/", HTTP_HX_REQUEST="true")
    html = response.content.decode()
    assert response.status_code == 429 and 'id="cards-error"' in html and f"/write/r/{old.pk}/cards/" in html
    assert GenerationRequest.objects.count() == 1 and enqueued == []


def test_a_failed_request_stops_the_blinking_and_offers_try_again_with_the_reason(writer, client, monkeypatch,
                                                                                   enqueued):
    use_fake_backend(monkeypatch, ["岁岁平安"], error=RuntimeError("the model fell over"))
    req = finished_request(writer, n=3)
    assert req.status == "failed"
    html = cards_html(client.get(f"/write/r/{req.pk}/").content.decode())
    assert "writing" not in re.findall(r'<article class="([^"]*)"', html) and 'class="card writing' not in html
    assert 'id="regenerate-all"' not in html
    failed = re.search(r'id="request-failed".*?</div>', html, re.S).group(0)
    assert "the model fell over" in failed and 'id="try-again"' in failed
    assert f'hx-post="/write/r/{req.pk}/regenerate/"' in failed and 'id="edit-request"' in failed
    assert "query=" in re.search(r'id="edit-request" href="([^"]+)"', failed).group(1)


def test_cards_still_being_written_blink_and_offer_no_regenerate(writer, client, enqueued):
    req = GenerationRequest.objects.create(user=writer, query="生日祝福", n=2)
    req.reset_candidates()
    html = cards_html(client.get(f"/write/r/{req.pk}/").content.decode())
    assert html.count('class="card writing') == 2 and 'id="regenerate-all"' not in html
    assert 'id="try-again"' not in html


def test_a_candidate_cut_at_the_length_limit_is_marked_on_its_card(writer, client, monkeypatch, enqueued):
    use_fake_backend(monkeypatch, ["岁岁平安", "福寿安康"])
    req = finished_request(writer)
    cut = req.candidates.get(index=1)
    cut.finish_reason = "length"
    cut.save(update_fields=["finish_reason"])
    html = cards_html(client.get(f"/write/r/{req.pk}/").content.decode())
    cards = dict(re.findall(r'<article class="[^"]*" id="(card-\d)"(.*?)</article>', html, re.S))
    assert "已截断 cut at the length limit" in cards["card-1"]
    assert "已截断" not in cards["card-0"]


def test_the_recent_list_shortens_long_requests_and_keeps_the_full_text_in_the_title(writer, client, enqueued):
    long_query = "给妈妈的生日祝福，" + "她喜欢种花和做饭" * 20
    GenerationRequest.objects.create(user=writer, query=long_query, n=1)
    page = client.get("/write/").content.decode()
    recent = re.search(r'<ul class="recent">(.*?)</ul>', page, re.S).group(1)
    link = re.search(r'<a href="[^"]+" title="([^"]+)">([^<]+)</a>', recent)
    assert link.group(1) == long_query
    shown = link.group(2)
    assert len(shown) <= 40 and long_query.startswith(shown.rstrip(".…")[:30]) and shown.endswith(("…", "..."))


@pytest.mark.parametrize("field, value, message", [
    ("n", "50", "条数必须在 1 到 5 之间 n must be between 1 and 5"),
    ("n", "0", "条数必须在 1 到 5 之间 n must be between 1 and 5"),
    ("n", "three", "条数必须在 1 到 5 之间 n must be between 1 and 5"),
    ("details", "细" * 301, "Details may have at most 300 characters (it has 301)"),
    ("avoid", "避" * 301, "避免最多 300 个字"),
    ("tone", "阴森", "阴森 is not one of the tone choices"),
])
def test_form_errors_are_bilingual_on_the_page_and_the_api(writer, client, monkeypatch, enqueued,
                                                           field, value, message):
    use_fake_backend(monkeypatch, ["x"])
    response = client.post("/write/", {"query": "生日祝福", field: value})
    html = response.content.decode()
    assert response.status_code == 400 and message in html
    assert "确保" not in html  # Django's stock Chinese-only wording is gone
    body = {"query": "生日祝福", field: int(value) if value.isdigit() else value}
    if field == "n" and not value.isdigit():
        return  # the API refuses a non-integer n by type, before the form
    api = client.post("/write/api/requests", data=json.dumps(body), content_type="application/json")
    assert api.status_code == 400 and message in api.json()["errors"][field][0]["message"]
    assert not GenerationRequest.objects.exists()
