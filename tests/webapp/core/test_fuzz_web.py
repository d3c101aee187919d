"""Hostile requests (hypothesis) to the OpenAI-compatible API, the studio's JSON API and forms, and
the annotation forms: never a 500, and every 400 names the field it refuses.

No model is active in these tests, so a request that passes validation ends in a clean 503
("model not ready") before anything would generate: validation is what is under test.
"""
import json
import re

import pytest
from django.test import Client
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.webapp.annotation.test_annotation_services import pointwise_batch
from webapp.annotation import services as annotation_services
from webapp.api.keys import create_api_key
from webapp.api.parsing import CHAT_FIELDS, COMPLETION_FIELDS, NEUTRAL_VALUES
from webapp.core.roles import ADMIN, ANNOTATOR, WRITER, create_user_with_role
from webapp.studio.services import REQUEST_FIELDS

pytestmark = pytest.mark.django_db
FUZZ = settings(max_examples=60, deadline=None,
                suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])

JUNK_TEXT = ["", " ", "\x00", "\ufeff", "\u202e", "生日快乐", "🎂" * 4, "请只生成一条祝福语：", "<script>alert(1)</script>",
             "' OR 1=1 --", "a" * 3000, "zhufu", "user", "system", "json_schema", "text"]
texts = st.one_of(st.sampled_from(JUNK_TEXT), st.text(max_size=30))
numbers = st.one_of(st.integers(-(2 ** 70), 2 ** 70), st.sampled_from([0, 1, 2, 16, 17, 512, 513, -1, 10 ** 9]),
                    st.floats(allow_nan=True, allow_infinity=True), st.sampled_from([0.0, 0.5, 1.0, 2.0, 2.0001, -0.0]))
scalars = st.one_of(st.none(), st.booleans(), numbers, texts)
json_values = st.recursive(scalars, lambda c: st.one_of(st.lists(c, max_size=4),
                                                        st.dictionaries(texts, c, max_size=4)), max_leaves=10)
messages = st.lists(st.one_of(
    st.fixed_dictionaries({"role": st.sampled_from(["user", "system", "assistant", "developer", "tool", 7]),
                           "content": st.one_of(texts, st.lists(st.fixed_dictionaries(
                               {"type": st.sampled_from(["text", "image_url"]), "text": scalars}), max_size=2))}),
    json_values), max_size=3)


def api_bodies(fields):
    """JSON objects built from the endpoint's own parameters (and neutral or unknown ones), with hostile values."""
    keys = st.sampled_from(sorted(fields | set(NEUTRAL_VALUES) | {"functions", "logprobs", "Model", ""}))
    special = {"messages": messages, "prompt": st.one_of(texts, st.lists(texts, max_size=2), json_values),
               "model": st.one_of(st.just("zhufu"), texts), "response_format": st.one_of(
                   st.fixed_dictionaries({"type": st.sampled_from(["text", "json_schema", "json_object", "x"]),
                                          "json_schema": json_values}), json_values),
               "stream_options": st.one_of(st.fixed_dictionaries({"include_usage": scalars}), json_values)}
    base = st.fixed_dictionaries({"model": st.just("zhufu"),
                                  **({"messages": messages} if "messages" in fields else {"prompt": texts})})

    @st.composite
    def body(draw):
        result = draw(base) if draw(st.booleans()) else {}
        for key in draw(st.lists(keys, max_size=5)):
            result[key] = draw(special.get(key, json_values))
        return result
    return body()


def raw_bodies(objects):
    """The JSON text of an object, or something that is not one: junk bytes, other JSON, NaN, truncation."""
    return st.one_of(
        objects.map(lambda o: json.dumps(o, ensure_ascii=False).encode("utf-8", "surrogatepass")),
        objects.map(lambda o: json.dumps(o)[:-1].encode()),
        st.binary(max_size=80),
        json_values.map(lambda v: json.dumps(v).encode()),
        st.sampled_from([b"", b"null", b"[]", b'{"temperature": NaN}', b'{"n": Infinity}', b"\xff\xfe{}",
                         '{"model": "zhufu", "prompt": "\\ud800"}'.encode()]),
    )


@pytest.fixture
def api_client():
    user, _ = create_user_with_role("api-user", WRITER)
    _, secret = create_api_key(user, rate_limit_per_minute=10 ** 6)
    return Client(HTTP_AUTHORIZATION=f"Bearer {secret}")


def assert_openai_refusal(response, body: bytes):
    assert response.status_code != 500, body
    assert response.status_code in (400, 404, 503), (response.status_code, body, response.content[:300])
    error = response.json()["error"]
    assert error["message"] and error["type"]
    if response.status_code == 400 and error["code"] != "invalid_json":
        assert error["param"] is not None, f"a 400 must name the field: {error} for {body[:200]!r}"
        assert json.dumps(error["param"], ensure_ascii=False)[1:-1] in error["message"] or error["param"] in error["message"] \
            or error["code"] != "unknown_parameter"
    if response.status_code == 503:
        assert error["code"] == "model_not_ready"  # the body was valid: only the missing model stops it


@settings(parent=FUZZ)
@given(body=raw_bodies(api_bodies(CHAT_FIELDS)))
def test_chat_completions_refuse_hostile_bodies_cleanly(api_client, body):
    assert_openai_refusal(api_client.post("/v1/chat/completions", body, content_type="application/json"), body)


@settings(parent=FUZZ)
@given(body=raw_bodies(api_bodies(COMPLETION_FIELDS)))
def test_completions_refuse_hostile_bodies_cleanly(api_client, body):
    assert_openai_refusal(api_client.post("/v1/completions", body, content_type="application/json"), body)


OUT_OF_RANGE = [({"n": 17}, "n"), ({"n": 0}, "n"), ({"temperature": 2.5}, "temperature"), ({"top_p": 0}, "top_p"),
                ({"max_tokens": 10 ** 9}, "max_tokens"), ({"max_completion_tokens": 0}, "max_completion_tokens"),
                ({"seed": -1}, "seed"), ({"stop": ["a"] * 5}, "stop"), ({"temperature": "hot"}, "temperature"),
                ({"stream": "yes"}, "stream"), ({"logprobs": True}, "logprobs"), ({"functions": []}, "functions"),
                ({"messages": [{"role": "user", "content": 5}]}, "messages[0].content")]


@pytest.mark.parametrize("change,param", OUT_OF_RANGE)
def test_out_of_range_sampling_parameters_name_their_field(api_client, change, param):
    body = {"model": "zhufu", "messages": [{"role": "user", "content": "生日祝福"}], **change}
    response = api_client.post("/v1/chat/completions", body, content_type="application/json")
    assert response.status_code == 400 and response.json()["error"]["param"] == param


# --- The studio: JSON API and the request form.

@pytest.fixture
def writer_client(settings):
    # The remote backend counts as ready without a checkpoint: valid requests get as far as the database
    # (their Celery task is enqueued on commit, which never comes inside a test's transaction).
    settings.GENERATION_BACKEND = "openai"
    user, _ = create_user_with_role("fuzz-writer", WRITER)
    client = Client()
    client.force_login(user)
    return client


studio_objects = st.dictionaries(st.one_of(st.sampled_from(REQUEST_FIELDS), texts), json_values, max_size=6)
studio_valid_shaped = st.fixed_dictionaries({"query": texts}, optional={
    "n": st.one_of(st.integers(-3, 20), scalars), "tone": texts, "length": texts, "occasion": texts,
    "recipient": texts, "details": texts, "avoid": texts})


@settings(parent=FUZZ)
@given(body=raw_bodies(st.one_of(studio_objects, studio_valid_shaped)))
def test_the_studio_json_api_refuses_hostile_bodies_cleanly(writer_client, body):
    response = writer_client.post("/write/api/requests", body, content_type="application/json")
    assert response.status_code in (201, 400, 429), (response.status_code, body, response.content[:300])
    data = response.json()
    if response.status_code == 201:
        return
    assert data["error"]
    if response.status_code == 400 and "JSON" not in data["error"]:
        named = set(data.get("errors", {})) | set(data.get("unknown_fields", []))
        assert named, f"a 400 must name the field: {data}"


form_values = st.one_of(texts, st.integers(-5, 50).map(str), st.sampled_from(["", "0", "1e9", "NaN", "-1", "3.5"]))


@settings(parent=FUZZ)
@given(data=st.fixed_dictionaries({}, optional={name: st.one_of(texts, form_values) for name in REQUEST_FIELDS}))
def test_the_studio_form_refuses_hostile_input_with_field_errors(writer_client, data):
    response = writer_client.post("/write/", data)
    assert response.status_code in (302, 400, 429), (response.status_code, data)
    if response.status_code == 400:
        errors = response.context["form"].errors
        assert errors and set(errors) <= set(REQUEST_FIELDS) | {"__all__"}, errors


# --- Annotation forms: a real leased assignment gets hostile ratings.

rating_data = st.dictionaries(
    st.sampled_from(["verdict", "comment", "seconds", "choice", "fluency", "relevance", "emotion", "creativity",
                     "language", "x"]),
    st.one_of(form_values, st.sampled_from(["good", "bad", "A", "B", "1", "5", "6"])), max_size=9)


@settings(parent=FUZZ, max_examples=25)
@given(data=rating_data)
def test_annotation_rating_refuses_hostile_input_naming_the_field(data):
    from webapp.annotation.models import Batch

    batch = Batch.objects.first() or pointwise_batch(n_items=3, k=1)
    annotator = create_user_with_role("fuzz-annotator", ANNOTATOR)[0]  # the same user on every example
    client = Client()
    client.force_login(annotator)
    assignment = annotation_services.next_assignment(batch, annotator)
    if assignment is None:
        return  # the batch is fully rated by earlier valid examples
    response = client.post(f"/annotate/assignment/{assignment.pk}/submit/", data)
    assert response.status_code in (200, 302, 400, 409), (response.status_code, data)
    if response.status_code == 400:
        text = response.content.decode()
        named = re.search(r'data-field="([^"]+)"', text)
        assert named and f"{named.group(1)}:" in text, text


@settings(parent=FUZZ, max_examples=25)
@given(data=st.dictionaries(st.sampled_from(["name", "kind", "k", "lease_minutes", "source_type", "origin",
                                             "checkpoint_name", "generation_source", "pair_source", "limit"]),
                            st.one_of(form_values, st.sampled_from(["pointwise", "pairwise", "corpus", "pairs",
                                                                    "generations", "model"])), max_size=10))
def test_batch_creation_refuses_hostile_input_with_field_errors(data):
    from django.contrib.auth import get_user_model

    admin = get_user_model().objects.filter(username="fuzz-admin").first() or \
        create_user_with_role("fuzz-admin", ADMIN)[0]
    client = Client()
    client.force_login(admin)
    response = client.post("/annotate/batches/new/", data)
    assert response.status_code in (302, 400), (response.status_code, data)
    if response.status_code == 400:
        assert response.context["form"].errors


def test_an_empty_post_gets_the_required_field_errors(writer_client):
    """Regression (found by the form fuzzing): `Form(request.POST or None)` left a POST without fields
    unbound, so it was answered 400 (or 200) with no error naming the missing fields."""
    response = writer_client.post("/write/", {})
    assert response.status_code == 400 and "query" in response.context["form"].errors
    admin = create_user_with_role("empty-admin", ADMIN)[0]
    client = Client()
    client.force_login(admin)
    response = client.post("/annotate/batches/new/", {})
    assert response.status_code == 400 and {"name", "kind"} <= set(response.context["form"].errors)
    signup = Client().post("/write/signup/", {})
    assert signup.status_code == 400 and "username" in signup.context["form"].errors


def test_an_unknown_empty_parameter_is_named_visibly(api_client):
    """Regression: an unknown key "" was reported as 'supplied: .'."""
    response = api_client.post("/v1/completions", {"model": "zhufu", "prompt": "生日", "": 1},
                               content_type="application/json")
    error = response.json()["error"]
    assert response.status_code == 400 and error["param"] == "" and 'supplied: "".' in error["message"]


def test_lone_surrogates_and_nul_are_refused_naming_the_field(writer_client, api_client):
    """Regression: a JSON escape such as \\ud800 reached PostgreSQL (a 500) or the tokenizer."""
    for body, field in (('{"query": "\\ud800"}', "query"), ('{"query": "ok", "details": "x\\udfff"}', "details")):
        response = writer_client.post("/write/api/requests", body, content_type="application/json")
        assert response.status_code == 400 and field in response.json()["errors"], response.content
    for body, param in (('{"model": "zhufu", "prompt": "\\ud800生日"}', "prompt"),
                        ('{"model": "zhufu", "prompt": "生日", "stop": "\\u0000"}', "stop")):
        response = api_client.post("/v1/completions", body, content_type="application/json")
        assert response.status_code == 400 and response.json()["error"]["param"] == param, response.content
    chat = api_client.post("/v1/chat/completions", '{"model": "zhufu", "messages": [{"role": "user", "content": "\\udc00"}]}',
                           content_type="application/json")
    assert chat.status_code == 400 and chat.json()["error"]["param"] == "messages"
