"""Batches, hand-out with leases and k, ratings, undo, settlement, labels, import/export."""
import json
import os
import threading
from datetime import timedelta

import pytest
from django.db import connection
from django.utils import timezone

from webapp.annotation import exchange, services
from webapp.annotation.models import Assignment, Batch, Kind, Rating, Settlement
from webapp.core.roles import ADMIN, ANNOTATOR, create_user_with_role
from webapp.corpus.models import Greeting, Label, PreferencePair, Query

@pytest.fixture(autouse=True)
def fast_passwords(settings):
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]  # many users; hashing is not tested here


RUBRIC_OK = {"language": 3, "creativity": 2, "emotion": 2, "culture": 3, "richness": 1}


def make_greetings(n: int, origin: str = "test.jsonl", source: str = "corpus", checkpoint: str = "") -> list:
    query, _ = Query.objects.get_or_create(text="七十生日祝福语")
    start = Greeting.objects.count()  # keeps texts (and so content hashes) unique across calls
    return [Greeting.objects.create(query=query, text=f"祝您福如东海，寿比南山！第{start + i}条{'。' * (i % 7) * 9}",
                                    source=source, origin=origin, checkpoint_name=checkpoint) for i in range(n)]


def make_pairs(n: int) -> list:
    out = []
    for i in range(n):
        query = Query.objects.create(text=f"给同事的新年祝福 {i}")
        chosen = Greeting.objects.create(query=query, text=f"新年快乐，愿你在新的一年里事业顺利、阖家幸福 {i}")
        rejected = Greeting.objects.create(query=query, text=f"新年好 {i}")
        out.append(PreferencePair.objects.create(query=query, chosen=chosen, rejected=rejected))
    return out


def pointwise_batch(n_items=4, k=2, name="b1", **kw) -> Batch:
    make_greetings(n_items)
    return services.create_batch(name=name, kind=Kind.POINTWISE, k=k, source_type="corpus", limit=n_items, **kw)


def annotators(n: int, prefix="ann") -> list:
    return [create_user_with_role(f"{prefix}{i}", ANNOTATOR, "pw-annot-123")[0] for i in range(n)]


def rate(assignment, user, verdict="good", rubric=RUBRIC_OK, **kw):
    return services.submit_rating(assignment_id=assignment.pk, user=user, verdict=verdict, rubric=rubric, **kw)


@pytest.mark.django_db
def test_batch_sources_filter_and_pairwise_needs_pairs():
    make_greetings(3, origin="a.jsonl")
    make_greetings(2, origin="b.jsonl", source="model", checkpoint="ckpt-7")
    corpus = services.create_batch(name="c", kind=Kind.POINTWISE, k=2, source_type="corpus", limit=10, origin="a.json")
    assert corpus.items.count() == 3
    ckpt = services.create_batch(name="k", kind=Kind.POINTWISE, k=1, source_type="checkpoint", limit=10,
                                 checkpoint_name="ckpt-7")
    assert {i.greeting.checkpoint_name for i in ckpt.items.all()} == {"ckpt-7"}
    with pytest.raises(services.AnnotationError, match="preference pairs"):
        services.create_batch(name="p", kind=Kind.PAIRWISE, k=1, source_type="corpus", limit=10)
    with pytest.raises(services.AnnotationError, match="No items"):
        services.create_batch(name="e", kind=Kind.POINTWISE, k=1, source_type="checkpoint", limit=10,
                              checkpoint_name="missing")
    assert not Batch.objects.filter(name__in=["p", "e"]).exists()


@pytest.mark.django_db
def test_each_item_goes_to_k_annotators_and_nobody_twice():
    batch = pointwise_batch(n_items=3, k=2)
    people = annotators(4)
    seen: dict = {}
    for person in people:
        while (assignment := services.next_assignment(batch, person)) is not None:
            assert assignment.item_id not in seen.get(person.pk, set())
            seen.setdefault(person.pk, set()).add(assignment.item_id)
            rate(assignment, person)
    per_item = [Rating.objects.filter(item=item).count() for item in batch.items.all()]
    assert per_item == [2, 2, 2]
    # human ratings are corpus labels too
    assert Label.objects.filter(source_kind="human").count() == 6


@pytest.mark.django_db
def test_current_lease_is_returned_until_submitted():
    batch = pointwise_batch()
    (person,) = annotators(1)
    first = services.next_assignment(batch, person)
    assert services.next_assignment(batch, person).pk == first.pk


@pytest.mark.django_db
def test_expired_lease_is_reassigned_and_its_stale_submit_refused():
    batch = pointwise_batch(n_items=1, k=1)
    slow, fast = annotators(2)
    start = timezone.now()
    held = services.next_assignment(batch, slow, now=start)
    assert services.next_assignment(batch, fast, now=start) is None  # k=1 and the lease is live
    later = start + timedelta(seconds=batch.lease_seconds + 1)
    taken = services.next_assignment(batch, fast, now=later)
    assert taken is not None and taken.item_id == held.item_id
    with pytest.raises(services.AnnotationError, match="went to another annotator") as refused:
        rate(held, slow, now=later)
    assert refused.value.status == 409
    rate(taken, fast, now=later)
    assert Rating.objects.count() == 1


@pytest.mark.django_db
def test_late_submit_is_accepted_when_nobody_took_the_slot():
    batch = pointwise_batch(n_items=1, k=1)
    (person,) = annotators(1)
    start = timezone.now()
    held = services.next_assignment(batch, person, now=start)
    result = rate(held, person, now=start + timedelta(seconds=batch.lease_seconds * 3))
    assert result.created and Rating.objects.count() == 1


@pytest.mark.django_db
def test_double_submit_counts_once_and_foreign_submit_is_refused():
    batch = pointwise_batch()
    owner, other = annotators(2)
    assignment = services.next_assignment(batch, owner)
    assert rate(assignment, owner).created
    again = rate(assignment, owner, verdict="bad")
    assert not again.created and Rating.objects.get().verdict == "good"
    with pytest.raises(services.AnnotationError, match="not assigned to you") as refused:
        rate(assignment, other)
    assert refused.value.status == 403


@pytest.mark.django_db
def test_out_of_range_rubric_is_refused_and_nothing_saved():
    batch = pointwise_batch()
    (person,) = annotators(1)
    assignment = services.next_assignment(batch, person)
    with pytest.raises(services.AnnotationError) as refused:
        rate(assignment, person, rubric={**RUBRIC_OK, "creativity": 4})
    assert refused.value.field == "creativity"
    assert not Rating.objects.exists() and Assignment.objects.get().status == "leased"


@pytest.mark.django_db
def test_skip_frees_the_slot_and_undo_takes_back_the_last_rating():
    batch = pointwise_batch(n_items=2, k=1)
    a, b = annotators(2)
    first = services.next_assignment(batch, a)
    services.skip(assignment_id=first.pk, user=a)
    assert services.next_assignment(batch, b).item_id == first.item_id  # the skipped item went back
    second = services.next_assignment(batch, a)
    rate(second, a, verdict="bad")
    assert Label.objects.filter(source_name=a.username).count() == 1
    reopened = services.undo_last(batch=batch, user=a)
    assert reopened.pk == second.pk and reopened.status == "leased"
    assert not Rating.objects.filter(annotator=a).exists() and not Label.objects.filter(source_name=a.username).exists()
    assert services.next_assignment(batch, a).pk == second.pk
    rate(second, a, verdict="good")
    assert Rating.objects.get(annotator=a).verdict == "good"


@pytest.mark.django_db
def test_pairwise_sides_are_randomised_per_annotator_and_stored_canonically():
    make_pairs(12)
    batch = services.create_batch(name="pw", kind=Kind.PAIRWISE, k=2, source_type="pairs", limit=12)
    a, b = annotators(2)
    swaps = []
    for person in (a, b):
        while (assignment := services.next_assignment(batch, person)) is not None:
            assert assignment.swapped == services.sides_swapped(batch.pk, assignment.item_id, person.pk)
            swaps.append(assignment.swapped)
            # the annotator always picks the side showing the pair's `chosen` greeting
            services.submit_rating(assignment_id=assignment.pk, user=person,
                                   shown_choice="b" if assignment.swapped else "a")
    assert True in swaps and False in swaps
    assert set(Rating.objects.values_list("choice", flat=True)) == {"a"}
    exported = exchange.llamafactory_pairs(batch)
    assert len(exported) == 12
    pair = PreferencePair.objects.get(query__text=exported[0]["conversations"][0]["value"])
    assert exported[0]["chosen"] == {"from": "gpt", "value": pair.chosen.text}
    assert exported[0]["rejected"]["value"] == pair.rejected.text


@pytest.mark.django_db
def test_disagreements_and_settlement():
    batch = pointwise_batch(n_items=2, k=2)
    a, b = annotators(2)
    admin, _ = create_user_with_role("boss", ADMIN, "pw-admin-123")
    for person, verdicts in ((a, ["good", "good"]), (b, ["bad", "good"])):
        for verdict in verdicts:
            rate(services.next_assignment(batch, person), person, verdict=verdict)
    rows = services.disagreements(batch)
    assert len(rows) == 1
    item = rows[0]["item"]
    with pytest.raises(services.AnnotationError):
        services.settle(item_id=item.pk, user=admin, answer_value="a")
    services.settle(item_id=item.pk, user=admin, answer_value="bad", note="套话")
    assert Settlement.objects.get(item=item).verdict == "bad"
    assert services.disagreements(batch, include_settled=False) == []
    other = batch.items.exclude(pk=item.pk).get()
    with pytest.raises(services.AnnotationError, match="disagree"):
        services.settle(item_id=other.pk, user=admin, answer_value="bad")


@pytest.mark.django_db
def test_export_import_round_trip_and_bad_line_imports_nothing():
    batch = pointwise_batch(n_items=2, k=2)
    a, b = annotators(2)
    for person in (a, b):
        while (assignment := services.next_assignment(batch, person)) is not None:
            rate(assignment, person, comment="<b>好</b>")
    text = exchange.export_jsonl(batch)
    rows = [json.loads(line) for line in text.splitlines()]
    assert len(rows) == 4 and {r["annotator"] for r in rows} == {"ann0", "ann1"}
    assert all(r["item_source"]["type"] == "greeting" and r["submitted_at"] and r["leased_at"] for r in rows)
    renamed = text.replace('"batch": "b1"', '"batch": "b1-copy"')
    admin, _ = create_user_with_role("boss", ADMIN, "pw-admin-123")
    broken = renamed.splitlines()
    broken[2] = broken[2].replace('"verdict": "good"', '"verdict": "great"')
    with pytest.raises(services.AnnotationError, match="line 3: verdict"):
        exchange.import_jsonl("\n".join(broken), admin)
    assert not Batch.objects.filter(name="b1-copy").exists() and Rating.objects.count() == 4
    summary = exchange.import_jsonl(renamed, admin)
    assert summary.created == 4 and summary.already_present == 0
    copy = Batch.objects.get(name="b1-copy")
    assert copy.k == 2 and Rating.objects.filter(item__batch=copy).count() == 4
    assert exchange.import_jsonl(renamed, admin).already_present == 4  # idempotent
    with pytest.raises(services.AnnotationError, match="line 1: not valid JSON"):
        exchange.import_jsonl("{oops\n", admin)


@pytest.mark.django_db(transaction=True)
def test_twenty_annotators_in_parallel_on_postgresql():
    """Threads, each with its own connection: nobody over-assigned, no rating lost or doubled."""
    if connection.vendor != "postgresql":
        if os.environ.get("CI") == "true":
            pytest.fail("the concurrency test must run on PostgreSQL in CI")
        pytest.skip("needs PostgreSQL (set DATABASE_URL)")
    make_greetings(15)
    batch = services.create_batch(name="race", kind=Kind.POINTWISE, k=3, source_type="corpus", limit=15)
    people = annotators(20, prefix="racer")
    submitted: list = []
    errors: list = []
    lock = threading.Lock()
    barrier = threading.Barrier(len(people))

    def work(person):
        from django.db import connections
        try:
            barrier.wait()
            while (assignment := services.next_assignment(batch, person)) is not None:
                result = rate(assignment, person)
                assert result.created
                rate(assignment, person)  # a double submit must not count twice
                with lock:
                    submitted.append((assignment.item_id, person.pk))
        except Exception as error:  # collected and re-raised in the main thread
            errors.append(repr(error))
        finally:
            connections.close_all()

    threads = [threading.Thread(target=work, args=(p,)) for p in people]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert not errors, errors[:3]
    ratings = list(Rating.objects.filter(item__batch=batch).values_list("item_id", "annotator_id"))
    assert sorted(ratings) == sorted(submitted)  # nothing lost, nothing extra
    assert len(set(ratings)) == len(ratings) == 15 * 3  # no duplicates; every slot filled
    per_item = {item.pk: Assignment.objects.filter(item=item).exclude(status="skipped").count()
                for item in batch.items.all()}
    assert set(per_item.values()) == {3}
