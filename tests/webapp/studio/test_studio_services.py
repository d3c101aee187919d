"""Studio services and the generation task, run directly with a fake backend."""
import pytest
from django.core.cache import cache

from tests.studio_helpers import LOCMEM, use_fake_backend
from webapp.core.roles import WRITER, create_user_with_role
from webapp.corpus.models import Greeting, Label
from webapp.studio import services
from webapp.studio.models import Candidate, GenerationRequest
from webapp.studio.tasks import run_request


@pytest.fixture(autouse=True)
def local_cache(settings):
    settings.CACHES = LOCMEM
    cache.clear()


@pytest.fixture
def writer(db):
    return create_user_with_role("wen", WRITER, "pw-wen-12345")[0]


def make_request(user, n=3, **fields):
    query = fields.pop("query", "给妈妈的生日祝福")
    req = GenerationRequest.objects.create(user=user, n=n, query=query,
                                           prompt_query=services.prompt_query(query=query, **fields), **fields)
    req.reset_candidates()
    return req


def test_prompt_query_is_the_free_text_plus_one_clause_per_field():
    assert services.prompt_query(query="  给妈妈的生日祝福 ") == "给妈妈的生日祝福"
    assert services.prompt_query(query="给妈妈的生日祝福", tone="温馨", recipient="妈妈", length="短", avoid="提年龄") == (
        "给妈妈的生日祝福（对象：妈妈；风格：温馨；篇幅：短；避免：提年龄）")


def test_task_streams_then_stores_each_greeting_once_and_is_idempotent(writer, monkeypatch):
    backend = use_fake_backend(monkeypatch, ["妈妈生日快乐！", "愿您健康长寿。", "妈妈生日快乐！"])
    req = make_request(writer, tone="温馨")
    assert run_request.run(req.pk) == "done"
    req.refresh_from_db()
    assert req.status == "done" and req.checkpoint_name == "ckpt-test" and req.attempts == 1
    assert backend.queries == ["给妈妈的生日祝福（风格：温馨）"]
    texts = list(req.candidates.values_list("text", flat=True))
    assert texts == ["妈妈生日快乐！", "愿您健康长寿。", "妈妈生日快乐！"]
    greetings = Greeting.objects.filter(source="model")
    assert greetings.count() == 2 and set(greetings.values_list("checkpoint_name", flat=True)) == {"ckpt-test"}
    assert all(c.greeting_id for c in req.candidates.all())
    assert services.progress(req)["status"] == "done"

    assert run_request.run(req.pk) == "already done"  # a redelivered task does nothing
    req.refresh_from_db()
    assert req.attempts == 1 and Greeting.objects.count() == 2


def test_stored_and_shown_text_has_no_control_characters_or_broken_bytes(writer, monkeypatch):
    """An undertrained model can emit NUL (PostgreSQL refuses it) or byte-fallback tokens that never
    make a character (decoded as U+FFFD): neither reaches the page or the corpus."""
    use_fake_backend(monkeypatch, ["妈妈\x00生日\ufffd快乐！\n", "\ufffd\ufffd愿您\t健康。"])
    req = make_request(writer, n=2)
    assert run_request.run(req.pk) == "done"
    assert sorted(req.candidates.values_list("text", flat=True)) == ["妈妈生日快乐！", "愿您\t健康。"]
    assert not Greeting.objects.filter(text__contains="\ufffd").exists()


def test_the_card_the_stored_candidate_the_corpus_greeting_and_the_api_answer_are_one_string(writer, monkeypatch):
    """Characters the final-text normalisation changes (a canonical singleton, a combining mark, a
    compatibility sign, NUL, a control, a lone surrogate, U+FFFD, CRLF) go through the real task,
    one character per streamed piece: the four copies of each candidate come out equal."""
    import json

    from django.test import Client

    from generation.greeting import final_text

    raw = ["；\u0374，k福s的：", "祝e\u0301\u212b\x00安\x07康\ud800\ufffd", " 平安\r\n喜乐 "]
    use_fake_backend(monkeypatch, raw)
    monkeypatch.setattr(services, "enqueue", lambda pk: None)
    client = Client()
    client.force_login(writer)
    created = client.post("/write/api/requests", data=json.dumps({"query": "给妈妈的生日祝福"}),
                          content_type="application/json")
    assert created.status_code == 201, created.content
    pk = created.json()["id"]
    assert run_request.run(pk) == "done"

    stream = b"".join(client.get(f"/write/api/requests/{pk}/stream").streaming_content).decode()
    progress = [json.loads(line[len("data: "):]) for line in stream.splitlines()
                if line.startswith("data: ") and '"candidates"' in line]
    streamed = [c["text"] for c in progress[-1]["candidates"]]
    candidates = list(GenerationRequest.objects.get(pk=pk).candidates.order_by("index").select_related("greeting"))
    stored = [c.text for c in candidates]
    corpus = [c.greeting.text for c in candidates]
    answered = [c["text"] for c in client.get(f"/write/api/requests/{pk}").json()["candidates"]]
    expected = [final_text(text) for text in raw]
    assert expected == ["；\u02b9，k福s的：", "祝\u00e9\u00c5安康", "平安\n喜乐"]
    assert streamed == stored == corpus == answered == expected


@pytest.mark.parametrize("length", ["", "短", "中", "长"])
def test_every_form_length_becomes_request_slots(length):
    slots = services.request_slots(query="给妈妈的生日祝福", recipient="妈妈", length=length)
    assert slots["occasion"] == "生日" and slots["addressee"] == "妈妈"
    assert (slots["length"] or {}).get("kind") == {"短": "short", "长": "long"}.get(length)


def test_half_done_request_restarts_its_candidates_cleanly(writer, monkeypatch):
    use_fake_backend(monkeypatch, ["新年快乐"])
    req = make_request(writer, n=2)
    req.mark_running("old")
    Candidate.objects.filter(request=req, index=0).update(text="半截的", finished=False)
    Candidate.objects.create(request=req, index=7, text="stray")
    assert run_request.run(req.pk) == "done"
    assert list(req.candidates.values_list("index", "text")) == [(0, "新年快乐"), (1, "新年快乐")]


def test_model_not_ready_fails_the_request_with_the_reason(writer):
    from webapp.checkpoints.serving import reset_backend

    reset_backend()
    req = make_request(writer)
    assert run_request.run(req.pk) == "failed"
    req.refresh_from_db()
    assert req.status == "failed" and "not ready" in req.reason
    assert run_request.run(987654) == "missing"


def test_backend_error_mid_stream_fails_with_reason(writer, monkeypatch):
    use_fake_backend(monkeypatch, ["祝福"], error=RuntimeError("engine exploded"))
    req = make_request(writer)
    assert run_request.run(req.pk) == "failed"
    req.refresh_from_db()
    assert "engine exploded" in req.reason and not Greeting.objects.exists()


def test_feedback_labels_are_clicks_named_by_user(writer, monkeypatch):
    use_fake_backend(monkeypatch, ["岁岁平安"])
    req = make_request(writer, n=1)
    run_request.run(req.pk)
    candidate = req.candidates.get()
    services.record_feedback(candidate, writer, "up")
    services.record_feedback(candidate, writer, "down")
    services.record_feedback(candidate, writer, "used")
    labels = {(l.source_name, l.value, l.source_kind) for l in Label.objects.all()}
    assert labels == {(f"user:{writer.pk}:thumb", "bad", "click"), (f"user:{writer.pk}:used", "good", "click")}
    with pytest.raises(services.StudioError):
        services.record_feedback(candidate, writer, "love")


def test_rate_limit_per_user(writer, settings):
    settings.STUDIO_RATE_LIMITS = {"user": 2, "ip": 100, "window": 60}
    services.check_rate_limit(writer, "1.2.3.4")
    services.check_rate_limit(writer, "1.2.3.4")
    with pytest.raises(services.RateLimited):
        services.check_rate_limit(writer, "1.2.3.4")
