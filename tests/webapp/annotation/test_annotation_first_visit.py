"""The annotator's first visit (issue 18): empty states that say what happens next, Good/Bad
without the rubric, a score that only suggests, and one key map across the rating pages."""
import json
import re

import pytest
from django.test import Client
from django.urls import reverse

from tests.webapp.annotation.test_annotation_services import RUBRIC_OK, annotators, pointwise_batch, rate
from webapp.annotation import exchange, services
from webapp.annotation.alignment import human_baseline, judge_alignment, pointwise_items
from webapp.annotation.keys import BOTH, KEY_MAP, PAIRWISE, POINTWISE
from webapp.annotation.models import Batch, Item, Kind, Rating
from webapp.core.roles import ADMIN, create_user_with_role
from webapp.corpus.models import Greeting, Label, Query
from webapp.judges.models import JudgeVersion

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def fast_passwords(settings):
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


def client_for(user) -> Client:
    client = Client()
    client.force_login(user)
    return client


def pairwise_batch(n_items=2, k=1) -> Batch:
    query = Query.objects.create(text="给老师的教师节祝福")
    batch = Batch.objects.create(name="教师节 盲评", kind=Kind.PAIRWISE, k=k)
    for i in range(n_items):
        a = Greeting.objects.create(query=query, text=f"老师，您辛苦了，节日快乐！（{i}）")
        b = Greeting.objects.create(query=query, text=f"节日快乐。（{i}）")
        Item.objects.create(batch=batch, position=i, greeting=a, greeting_b=b)
    return batch


# --- Empty states.
def test_no_batches_tells_an_annotator_who_makes_them_and_what_happens_next():
    (annotator,) = annotators(1)
    html = client_for(annotator).get(reverse("annotation:home")).content.decode()
    empty = re.search(r'id="no-batches">(.*?)</div>', html, re.S).group(1)
    assert "An admin makes the batches" in empty and "appears here" in empty
    assert reverse("annotation:batch-create") not in html  # not a link this role could open


def test_no_batches_gives_an_admin_the_links_that_make_one():
    admin, _ = create_user_with_role("boss", ADMIN, "pw-admin-123")
    html = client_for(admin).get(reverse("annotation:home")).content.decode()
    empty = re.search(r'id="no-batches">(.*?)</div>', html, re.S).group(1)
    assert f'href="{reverse("annotation:batch-create")}"' in empty
    assert f'href="{reverse("annotation:batch-from-checkpoint")}"' in empty


def test_a_finished_batch_says_what_to_do_next():
    batch = pointwise_batch(n_items=1, k=2)
    first, second = annotators(2)
    client = client_for(first)
    client.get(reverse("annotation:annotate", args=[batch.pk]))
    rate(services.current_assignment(batch, first), first)
    html = client.get(reverse("annotation:annotate", args=[batch.pk])).content.decode()
    finished = re.search(r'id="batch-finished">(.*?)</div>', html, re.S).group(1)
    assert "nothing left for you" in finished and "Other annotators are still on this batch" in finished
    assert f'href="{reverse("annotation:home")}"' in finished and "press U" in finished
    home = client.get(reverse("annotation:home")).content.decode()
    assert 'id="no-work"' in home and "New batches show here" in home
    assert 'id="no-work"' not in client_for(second).get(reverse("annotation:home")).content.decode()


# --- Good/Bad without the rubric.
def submit(client, batch, user, **post):
    client.get(reverse("annotation:annotate", args=[batch.pk]))
    assignment = services.current_assignment(batch, user)
    return client.post(reverse("annotation:submit", args=[assignment.pk]),
                       {"comment": "", "seconds": "2", **post}, HTTP_HX_REQUEST="true")


def test_good_or_bad_submits_without_the_rubric():
    batch = pointwise_batch(n_items=2, k=1)
    (annotator,) = annotators(1)
    client = client_for(annotator)
    response = submit(client, batch, annotator, verdict="bad")
    assert response.status_code == 200 and "Saved." in response.content.decode()
    rating = Rating.objects.get()
    assert rating.verdict == "bad" and rating.weighted_score is None and not rating.has_rubric
    label = Label.objects.get(source_kind="human")
    assert label.value == "bad" and label.score is None
    response = submit(client, batch, annotator, verdict="good", **RUBRIC_OK)  # a full rubric still counts
    assert response.status_code == 200
    scored = Rating.objects.get(verdict="good")
    assert scored.rubric == RUBRIC_OK and scored.weighted_score == pytest.approx(2.35)


def test_a_half_filled_rubric_is_refused_bilingually_naming_what_is_missing():
    batch = pointwise_batch(n_items=1, k=1)
    (annotator,) = annotators(1)
    response = submit(client_for(annotator), batch, annotator, verdict="good", language="3", creativity="2")
    html = response.content.decode()
    assert response.status_code == 400 and "评分表只填了一部分" in html and "rate all five parts" in html
    assert "emotion" in html and 'data-field="emotion"' in html and not Rating.objects.exists()


def test_rating_form_errors_are_bilingual():
    batch = pointwise_batch(n_items=1, k=1)
    (annotator,) = annotators(1)
    response = submit(client_for(annotator), batch, annotator, verdict="great")
    assert response.status_code == 400 and "请选择好或不好。 Choose Good or Bad." in response.content.decode()
    response = submit(client_for(annotator), batch, annotator, verdict="good", **{**RUBRIC_OK, "culture": "7"})
    html = response.content.decode()
    assert response.status_code == 400 and "culture must be 1 to 3" in html and "确保" not in html


def test_ratings_without_a_rubric_export_import_and_feed_alignment():
    batch = pointwise_batch(n_items=2, k=2)
    a, b = annotators(2)
    for person, rubric in ((a, None), (b, RUBRIC_OK)):
        while (assignment := services.next_assignment(batch, person)) is not None:
            rate(assignment, person, rubric=rubric)
    rows = [json.loads(line) for line in exchange.export_jsonl(batch).splitlines()]
    assert {r["weighted_score"] for r in rows} == {None, 2.35}
    admin, _ = create_user_with_role("boss", ADMIN, "pw-admin-123")
    copy = exchange.export_jsonl(batch).replace('"batch": "b1"', '"batch": "b1-copy"')
    assert exchange.import_jsonl(copy, admin).created == 4
    assert Rating.objects.filter(item__batch__name="b1-copy", weighted_score__isnull=True).count() == 2
    judge = JudgeVersion.objects.create(name="len", kind="length")
    for greeting in Greeting.objects.all():
        Label.objects.create(greeting=greeting, value="good", source_kind="judge", source_name="len", score=0.5)
    items = pointwise_items(batch)
    assert all(item.mean_score == pytest.approx(2.35) for item in items.values())  # the unscored rating left out
    assert judge_alignment(judge, items)["compared"] == 2 and human_baseline(batch)["overlap_items"] == 2


def test_the_page_never_labels_the_score_excellent_and_calls_it_a_suggestion():
    batch = pointwise_batch(n_items=1, k=1)
    (annotator,) = annotators(1)
    html = client_for(annotator).get(reverse("annotation:annotate", args=[batch.pk])).content.decode()
    script = client_for(annotator).get("/static/js/annotate.js")
    js = b"".join(script.streaming_content).decode()
    assert "优秀" not in html + js and "excellent" not in html + js
    assert 'id="rubric-suggests"' in html and "your Good/Bad decides" in js
    assert " required" not in re.search(r'<fieldset class="rubric">(.*?)</fieldset>', html, re.S).group(1)


# --- One key map.
def test_no_key_means_two_things_across_the_rating_pages():
    seen: dict[str, tuple[str, str]] = {}
    for key in KEY_MAP:
        for name in key.keys:
            assert name not in seen, f"{name!r} means {seen[name]} and {key.meaning}"
            seen[name] = (key.page, key.meaning)
    assert {key.page for key in KEY_MAP} == {POINTWISE, PAIRWISE, BOTH}


def keys_on_buttons(html: str) -> dict[str, str]:
    form = re.search(r'<form id="rate-form".*?</form>', html, re.S).group(0)
    keys = {}
    for button in re.findall(r"<button [^>]*data-key[^>]*>", form):
        value = re.search(r'value="([^"]+)"', button).group(1)
        for attr in ("data-key", "data-alt-key"):
            found = re.search(attr + r'="([^"]*)"', button)
            if found and found.group(1):
                keys[found.group(1)] = value
    return keys


def test_both_rating_pages_show_the_whole_map_and_their_buttons_use_it():
    (annotator,) = annotators(1)
    client = client_for(annotator)
    pages = {}
    for batch in (pointwise_batch(n_items=1, k=1), pairwise_batch()):
        pages[batch.kind] = client.get(reverse("annotation:annotate", args=[batch.pk])).content.decode()
    shown_maps = []
    for kind, html in pages.items():
        key_map = re.search(r'<dl id="key-map">(.*?)</dl>', html, re.S).group(1)
        shown_maps.append(re.findall(r"<dt[^>]*>(.*?)</dt>", key_map))
        assert len(shown_maps[-1]) == len(KEY_MAP)
        other = PAIRWISE if kind == POINTWISE else POINTWISE
        assert key_map.count(f'data-page="{other}"') == sum(k.page == other for k in KEY_MAP)
        assert re.search(r'<dt class="other-page" data-page="%s">' % other, key_map)
    assert shown_maps[0] == shown_maps[1]  # the same map on both pages
    point, pair = keys_on_buttons(pages[POINTWISE]), keys_on_buttons(pages[PAIRWISE])
    assert point == {"g": "good", "b": "bad"}
    assert pair == {"l": "a", "arrowleft": "a", "r": "b", "arrowright": "b", "t": "tie", "x": "both_bad"}
    assert not set(point) & set(pair)
