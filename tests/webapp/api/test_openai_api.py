"""The OpenAI-compatible API, driven by the official `openai` client against a real uvicorn server.

One server per module (starting it loads torch): a tiny checkpoint is trained and promoted and the
keys are made first, committed to the test database the server reads."""
import json
import sys
from io import StringIO
from types import SimpleNamespace

import openai
import pytest
import requests
import torch
from django.contrib.auth import get_user_model
from django.core.management import call_command
from django.test import override_settings

from tests.conftest import ManagedProcess, subprocess_env, wait_until
from tests.webapp.checkpoints.test_model_commands import GREETINGS
from webapp.api.models import ApiKey
from webapp.api.keys import create_api_key, revoke_api_key
from webapp.api.parsing import strip_prefix
from webapp.checkpoints.models import Checkpoint

# Runs the server; when the file `slow_flag` exists each engine step sleeps, so a stream is still
# running when the test hangs up (a tiny model otherwise finishes 40 tokens before the hang-up lands).
SERVER = """
import os, sys, time, torch, uvicorn
torch.set_num_threads(1)
from generation.engine import engine
flag, step = sys.argv[2], engine.Engine.step
def slow_step(self):
    if os.path.exists(flag):
        time.sleep(0.05)
    return step(self)
engine.Engine.step = slow_step
uvicorn.run("webapp.asgi:application", host="127.0.0.1", port=int(sys.argv[1]), log_level="warning")
"""

# The marker makes pytest-django create the test database; the tests themselves only talk HTTP.
pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("one_thread")]

SCHEMA = {"type": "object", "properties": {"greeting": {"type": "string", "maxLength": 12}}, "required": ["greeting"]}


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def server(django_db_setup, django_db_blocker, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("openai-api")
    corpus = tmp / "sft.json"
    corpus.write_text(json.dumps([{"instruction": q, "input": "", "output": r} for q, r in GREETINGS * 3],
                                 ensure_ascii=False))
    with django_db_blocker.unblock():
        torch.set_num_threads(1)
        with override_settings(RUNS_DIR=tmp / "runs"):
            call_command("train_model", preset="tiny", data=[str(corpus)], max_steps=3, stdout=StringIO())
        User = get_user_model()
        staff = User.objects.create_user("api-staff", is_staff=True)
        writer = User.objects.create_user("api-writer")
        _, secret = create_api_key(staff, name="tests")
        _, writer_secret = create_api_key(writer, name="writer")
        revoked, revoked_secret = create_api_key(writer, name="revoked")
        revoke_api_key(revoked)
        _, limited_secret = create_api_key(writer, name="limited", rate_limit_per_minute=2)
        port = free_port()
        slow_flag = tmp / "slow"
        env = subprocess_env(ENGINE_MAX_SLOTS="8", API_RATE_LIMIT_PER_MINUTE="10000", OMP_NUM_THREADS="1")
        process = ManagedProcess("uvicorn", [sys.executable, "-c", SERVER, str(port), str(slow_flag)], env, tmp)
        base = f"http://127.0.0.1:{port}"
        try:
            def up():
                if process.proc.poll() is not None:
                    raise AssertionError(f"uvicorn exited:\n{process.log_tail()}")
                try:
                    return requests.get(f"{base}/v1/models", headers={"Authorization": f"Bearer {secret}"},
                                        timeout=5).status_code == 200
                except requests.ConnectionError:
                    return False

            wait_until(up, timeout=90, interval=0.3, describe="uvicorn to answer")
            yield SimpleNamespace(base=base, key=secret, writer_key=writer_secret, revoked_key=revoked_secret,
                                  limited_key=limited_secret, model=Checkpoint.objects.get(status="active").name,
                                  slow_flag=slow_flag, process=process)
        finally:
            process.stop()
            ApiKey.objects.all().delete()
            User.objects.filter(username__startswith="api-").delete()
            Checkpoint.objects.all().delete()


@pytest.fixture
def client(server):
    # no retries: a 429 or 503 must surface, not be retried behind the test's back
    return openai.OpenAI(base_url=f"{server.base}/v1", api_key=server.key, max_retries=0, timeout=60)


def chat(client, text="七十生日祝福语", **kwargs):
    kwargs.setdefault("max_tokens", 16)
    return client.chat.completions.create(model="zhufu", messages=[{"role": "user", "content": text}], **kwargs)


def test_models_lists_the_active_checkpoint(client, server):
    assert [m.id for m in client.models.list().data] == [server.model]


def test_chat_completion_with_two_choices_and_usage(client, server):
    reply = chat(client, n=2, seed=1)
    assert [c.index for c in reply.choices] == [0, 1]
    assert all(c.message.role == "assistant" and c.finish_reason in {"stop", "length"} for c in reply.choices)
    assert any(c.message.content for c in reply.choices)
    assert reply.model == server.model and reply.object == "chat.completion"
    assert reply.usage.prompt_tokens > 0 and reply.usage.completion_tokens > 0
    assert reply.usage.total_tokens == reply.usage.prompt_tokens + reply.usage.completion_tokens


def test_the_active_checkpoint_name_is_accepted_and_others_are_not(client, server):
    reply = client.chat.completions.create(model=server.model, messages=[{"role": "user", "content": "生日"}],
                                           max_tokens=4)
    assert reply.model == server.model
    with pytest.raises(openai.NotFoundError) as caught:
        client.chat.completions.create(model="gpt-4o", messages=[{"role": "user", "content": "生日"}])
    assert caught.value.code == "model_not_found" and caught.value.param == "model"


def test_seed_reproduces_and_stream_chunks_add_up_to_the_text(client):
    first = [c.message.content for c in chat(client, n=2, seed=7, temperature=1.0).choices]
    assert [c.message.content for c in chat(client, n=2, seed=7, temperature=1.0).choices] == first
    assert [c.message.content for c in chat(client, n=2, seed=8, temperature=1.0).choices] != first

    texts, reasons, roles = ["", ""], [None, None], set()
    for chunk in chat(client, n=2, seed=7, temperature=1.0, stream=True):
        assert chunk.object == "chat.completion.chunk"
        for choice in chunk.choices:
            texts[choice.index] += choice.delta.content or ""
            roles.add(choice.delta.role)
            reasons[choice.index] = choice.finish_reason or reasons[choice.index]
    assert texts == first
    assert "assistant" in roles and all(r in {"stop", "length"} for r in reasons)


def test_stream_usage_chunk_when_asked(client):
    chunks = list(chat(client, seed=3, stream=True, stream_options={"include_usage": True}))
    assert chunks[-1].choices == [] and chunks[-1].usage.prompt_tokens > 0


def test_completions_endpoint_takes_the_query_with_or_without_the_papers_prefix(client):
    chat_text = chat(client, text="生日祝福", seed=5).choices[0].message.content
    plain = client.completions.create(model="zhufu", prompt="生日祝福", max_tokens=16, seed=5)
    prefixed = client.completions.create(model="zhufu", prompt="请只生成一条祝福语：生日祝福", max_tokens=16, seed=5)
    assert plain.object == "text_completion" and plain.usage.completion_tokens > 0
    assert plain.choices[0].text == prefixed.choices[0].text == chat_text
    streamed = "".join(c.choices[0].text for c in
                       client.completions.create(model="zhufu", prompt="生日祝福", max_tokens=16, seed=5, stream=True))
    assert streamed == chat_text
    assert strip_prefix("请只生成一条祝福语：  元旦") == "元旦"


def test_json_schema_response_format_parses_on_every_choice(client):
    reply = chat(client, n=3, seed=2, max_tokens=40,
                 response_format={"type": "json_schema", "json_schema": {"name": "greeting", "schema": SCHEMA}})
    for choice in reply.choices:
        assert set(json.loads(choice.message.content)) == {"greeting"}


def test_json_object_response_format_parses_on_both_endpoints(client):
    reply = chat(client, n=3, seed=4, max_tokens=30, temperature=1.0, response_format={"type": "json_object"})
    for choice in reply.choices:
        assert isinstance(json.loads(choice.message.content), dict)
    streamed = "".join(c.choices[0].text for c in client.completions.create(
        model="zhufu", prompt="生日祝福", max_tokens=20, seed=4, stream=True,
        extra_body={"response_format": {"type": "json_object"}}))  # the client has no such argument for completions
    assert isinstance(json.loads(streamed), dict)


@pytest.mark.parametrize("response_format", [
    {"type": "json_schema", "json_schema": {"name": "x", "schema": {"type": "array"}}},
    {"type": "json_schema", "json_schema": {"name": "x"}},
    {"type": "xml"},
])
def test_malformed_or_unsupported_response_format_is_a_400(client, response_format):
    with pytest.raises(openai.BadRequestError) as caught:
        chat(client, response_format=response_format)
    assert caught.value.param == "response_format"


def test_bad_and_revoked_keys_are_authentication_errors(server):
    for key in ("zf-not-a-real-key", server.revoked_key):
        bad = openai.OpenAI(base_url=f"{server.base}/v1", api_key=key, max_retries=0)
        with pytest.raises(openai.AuthenticationError):
            bad.models.list()
    response = requests.post(f"{server.base}/v1/chat/completions", json={}, timeout=10)
    assert response.status_code == 401 and response.json()["error"]["code"] == "invalid_api_key"


@pytest.mark.parametrize("field, value", [
    ("temperature", 3), ("top_p", 0), ("n", 17), ("max_tokens", 0), ("max_tokens", 513), ("stop", ["a"] * 5),
    ("seed", "x"), ("n", True),
])
def test_bad_parameters_are_400s_naming_the_parameter(client, field, value):
    with pytest.raises(openai.BadRequestError) as caught:
        chat(client, extra_body={field: value})
    assert caught.value.param == field and field in caught.value.message


def test_unknown_parameters_are_400s_but_neutral_defaults_pass(client):
    with pytest.raises(openai.BadRequestError) as caught:
        chat(client, extra_body={"frobnicate": 1})
    assert caught.value.param == "frobnicate" and "frobnicate" in caught.value.message
    with pytest.raises(openai.BadRequestError) as caught:
        chat(client, presence_penalty=0.5)
    assert caught.value.param == "presence_penalty"
    assert chat(client, presence_penalty=0, logprobs=False, user="u-1", max_tokens=2).choices


def test_prompt_longer_than_the_context_is_a_400(client):
    with pytest.raises(openai.BadRequestError) as caught:
        chat(client, text="祝" * 200)
    assert caught.value.code == "context_length_exceeded"


def test_wrong_method_and_bad_json(server):
    auth = {"Authorization": f"Bearer {server.key}"}
    response = requests.get(f"{server.base}/v1/chat/completions", headers=auth, timeout=10)
    assert response.status_code == 405 and set(response.json()["error"]) == {"message", "type", "param", "code"}
    response = requests.post(f"{server.base}/v1/completions", headers=auth, data=b"{nope", timeout=10)
    assert response.status_code == 400 and response.json()["error"]["code"] == "invalid_json"


def test_rate_limit_per_key_is_a_429(server):
    limited = openai.OpenAI(base_url=f"{server.base}/v1", api_key=server.limited_key, max_retries=0)
    limited.models.list()
    limited.models.list()
    with pytest.raises(openai.RateLimitError):
        limited.models.list()
    # another key is not affected
    openai.OpenAI(base_url=f"{server.base}/v1", api_key=server.writer_key, max_retries=0).models.list()


def test_engine_stats_need_a_staff_key(server):
    response = requests.get(f"{server.base}/v1/engine", headers={"Authorization": f"Bearer {server.writer_key}"},
                            timeout=10)
    assert response.status_code == 403 and response.json()["error"]["type"] == "permission_error"


def test_hanging_up_mid_stream_cancels_the_request_and_frees_its_slots(client, server):
    auth = {"Authorization": f"Bearer {server.key}"}

    def stats():
        return requests.get(f"{server.base}/v1/engine", headers=auth, timeout=10).json()

    before = stats()
    assert before["free_slots"] == before["total_slots"] == 8
    server.slow_flag.touch()
    try:
        response = requests.post(
            f"{server.base}/v1/chat/completions", headers=auth, stream=True, timeout=30,
            json={"model": "zhufu", "messages": [{"role": "user", "content": "新年祝福"}], "n": 4, "max_tokens": 40,
                  "temperature": 1.0, "seed": 11, "stream": True},
        )
        lines = response.iter_lines()
        contents = 0
        while contents < 2:  # past the role chunks, into generated text
            line = next(lines)
            if line.startswith(b"data: ") and b'"content": "' in line and b'"content": ""' not in line:
                contents += 1
        during = stats()
        assert during["free_slots"] < during["total_slots"]  # the stream holds slots while it runs
        response.close()  # hang up

        def freed():
            now = stats()
            return (now["cancelled_requests"] > before["cancelled_requests"] and now["free_slots"] == 8
                    and now["running"] == 0 and now["waiting"] == 0)

        wait_until(freed, timeout=20, interval=0.2, describe="the engine to cancel the hung-up request")
    finally:
        server.slow_flag.unlink()
    # and the engine keeps serving
    assert chat(client, n=2, seed=1).choices[1].message.content is not None
    assert stats()["free_slots"] == 8
