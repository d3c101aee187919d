"""Views: roles, CSRF, refusals with clear messages, escaping, the alignment page."""
import re

import pytest
from django.test import Client
from django.urls import reverse

from tests.webapp.annotation.test_annotation_services import RUBRIC_OK, annotators, make_greetings, pointwise_batch, rate
from webapp.annotation import services
from webapp.annotation.models import Rating
from webapp.core.roles import ADMIN, WRITER, create_user_with_role
from webapp.corpus.models import Greeting, Label, Query
from webapp.judges.models import JudgeVersion

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def fast_passwords(settings):
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


def client_for(user, csrf=False) -> Client:
    client = Client(enforce_csrf_checks=csrf)
    client.force_login(user)
    return client


def rating_post(**overrides):
    return {"verdict": "good", **RUBRIC_OK, "comment": "", "seconds": "3.5", **overrides}


def test_role_checks():
    batch = pointwise_batch()
    writer, _ = create_user_with_role("w", WRITER, "pw-writer-123")
    (annotator,) = annotators(1)
    annotate_url = reverse("annotation:annotate", args=[batch.pk])
    admin_only = [reverse("annotation:alignment"), reverse("annotation:batch-create"), reverse("annotation:review"),
                  reverse("annotation:import"), reverse("annotation:export", args=[batch.pk])]
    anonymous = Client()
    for url in [annotate_url, *admin_only]:
        response = anonymous.get(url)
        assert response.status_code == 302 and "/login/" in response["Location"], url
    writer_client = client_for(writer)
    for url in [annotate_url, reverse("annotation:home"), *admin_only]:
        assert writer_client.get(url).status_code == 403, url
    annotator_client = client_for(annotator)
    assert annotator_client.get(annotate_url).status_code == 200
    for url in admin_only:
        assert annotator_client.get(url).status_code == 403, url
    assert annotator_client.post(reverse("annotation:batch-create"), {"name": "x"}).status_code == 403


def test_csrf_is_enforced_on_submit():
    batch = pointwise_batch()
    (annotator,) = annotators(1)
    client = client_for(annotator, csrf=True)
    page = client.get(reverse("annotation:annotate", args=[batch.pk]))
    assignment = services.current_assignment(batch, annotator)
    url = reverse("annotation:submit", args=[assignment.pk])
    assert client.post(url, rating_post()).status_code == 403
    assert not Rating.objects.exists()
    token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', page.content.decode()).group(1)
    assert client.post(url, rating_post(csrfmiddlewaretoken=token)).status_code == 302
    assert Rating.objects.count() == 1


def test_out_of_range_rating_is_a_400_naming_the_field():
    batch = pointwise_batch()
    (annotator,) = annotators(1)
    client = client_for(annotator)
    client.get(reverse("annotation:annotate", args=[batch.pk]))
    assignment = services.current_assignment(batch, annotator)
    response = client.post(reverse("annotation:submit", args=[assignment.pk]), rating_post(emotion="5"),
                           HTTP_HX_REQUEST="true")
    assert response.status_code == 400
    assert "emotion" in response.content.decode() and response["HX-Retarget"] == "#messages"
    assert not Rating.objects.exists()


def test_submit_for_someone_elses_item_is_refused_and_double_submit_counts_once():
    batch = pointwise_batch()
    owner, other = annotators(2)
    owner_client, other_client = client_for(owner), client_for(other)
    owner_client.get(reverse("annotation:annotate", args=[batch.pk]))
    assignment = services.current_assignment(batch, owner)
    url = reverse("annotation:submit", args=[assignment.pk])
    refused = other_client.post(url, rating_post(), HTTP_HX_REQUEST="true")
    assert refused.status_code == 403 and "not assigned to you" in refused.content.decode()
    assert owner_client.post(url, rating_post(), HTTP_HX_REQUEST="true").status_code == 200
    second = owner_client.post(url, rating_post(verdict="bad"), HTTP_HX_REQUEST="true")
    assert second.status_code == 200 and "counts once" in second.content.decode()
    assert Rating.objects.count() == 1 and Rating.objects.get().verdict == "good"
    assert Label.objects.get(source_kind="human", source_name=owner.username).value == "good"


def test_html_in_greeting_text_is_escaped():
    query = Query.objects.create(text="生日<i>祝福</i>")
    Greeting.objects.create(query=query, text='<script>alert("x")</script>生日快乐')
    batch = services.create_batch(name="xss", kind="pointwise", k=1, source_type="corpus", limit=5)
    (annotator,) = annotators(1)
    body = client_for(annotator).get(reverse("annotation:annotate", args=[batch.pk])).content.decode()
    assert '<script>alert("x")</script>' not in body and "&lt;script&gt;alert(" in body
    assert "<i>祝福</i>" not in body and "生日&lt;i&gt;祝福&lt;/i&gt;" in body


def test_annotator_is_blind_to_judge_and_model_identity():
    make_greetings(1, source="model", checkpoint="secret-ckpt-42", origin="gen-origin")
    batch = services.create_batch(name="blind", kind="pointwise", k=1, source_type="checkpoint", limit=5,
                                  checkpoint_name="secret-ckpt-42")
    greeting = batch.items.get().greeting
    Label.objects.create(greeting=greeting, value="bad", source_kind="judge", source_name="judge-v9", score=0.1,
                         detail={"reason": "陈词滥调-REASON"})
    (annotator,) = annotators(1)
    body = client_for(annotator).get(reverse("annotation:annotate", args=[batch.pk])).content.decode()
    assert greeting.text in body
    for secret in ("secret-ckpt-42", "judge-v9", "陈词滥调-REASON", "gen-origin"):
        assert secret not in body


def test_alignment_page_shows_the_numbers():
    batch = pointwise_batch(n_items=4, k=2)
    a, b = annotators(2)
    verdicts = {a.pk: ["good", "good", "bad", "bad"], b.pk: ["good", "bad", "bad", "bad"]}
    for person in (a, b):
        for verdict in verdicts[person.pk]:
            rate(services.next_assignment(batch, person), person, verdict=verdict)
    judge = JudgeVersion.objects.create(name="tfidf-v1", kind="tfidf")
    for item, value in zip(batch.items.order_by("position"), ["good", "bad", "good", "bad"]):
        Label.objects.create(greeting=item.greeting, value=value, source_kind="judge", source_name=judge.name,
                             score=0.8 if value == "good" else 0.2)
    admin, _ = create_user_with_role("boss", ADMIN, "pw-admin-123")
    response = client_for(admin).get(reverse("annotation:alignment"), {"judge": judge.pk, "batch": batch.pk})
    assert response.status_code == 200
    result = response.context["result"]
    # human consensus: good, (tie → left out), bad, bad; judge: good, -, good, bad → 2 of 3
    assert result["compared"] == 3 and result["no_consensus"] == 1
    assert result["agreement"].value == pytest.approx(2 / 3)
    assert result["confusion"] == [[1, 0], [1, 1]]
    body = response.content.decode()
    assert "<svg" in body and "tfidf-v1" in body and "Krippendorff" in body
    assert response.context["baseline"]["overlap_items"] == 4
