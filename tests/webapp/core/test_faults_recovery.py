"""The rules behind "no generation request lost, none written twice" (webapp/studio/recovery.py),
on the real database and broker; tests/webapp/core/test_faults.py shows them end to end with killed processes."""
from datetime import timedelta

import pytest
from django.utils import timezone

from webapp.core.models import Heartbeat
from webapp.core.roles import WRITER, create_user_with_role
from webapp.studio import recovery
from webapp.studio.models import GenerationRequest

pytestmark = pytest.mark.django_db


@pytest.fixture
def writer():
    return create_user_with_role("rec", WRITER, "pw-rec-123456")[0]


@pytest.fixture
def quick_recovery(settings):
    settings.STUDIO_LEASE_SECONDS = 5
    settings.STUDIO_QUEUED_GRACE_SECONDS = 5
    yield
    from webapp.celery import app

    app.control.purge()  # the messages the sweep sent: no worker here consumes them


def make(writer, status="queued", age_s=0.0):
    req = GenerationRequest.objects.create(user=writer, query="给妈妈的生日祝福", prompt_query="给妈妈的生日祝福",
                                           status=status, started_at=timezone.now() if status == "running" else None)
    req.reset_candidates()
    if age_s:
        then = timezone.now() - timedelta(seconds=age_s)
        GenerationRequest.objects.filter(pk=req.pk).update(created_at=then, started_at=then if status == "running" else None)
        req.refresh_from_db()
    return req


def age_lease(req, seconds):
    Heartbeat.objects.filter(name=recovery.lease_name(req.pk)).update(
        last_seen=timezone.now() - timedelta(seconds=seconds))


def test_a_second_delivery_is_refused_while_the_first_run_holds_its_lease(writer, quick_recovery):
    req = make(writer)
    claimed, _ = recovery.claim(req.pk, task_id="task-1")
    assert claimed.status == "running" and claimed.attempts == 1
    assert recovery.claim(req.pk, task_id="task-2") == (None, "running elsewhere")
    # the same message delivered again means its first worker process died: it takes over at once
    again, _ = recovery.claim(req.pk, task_id="task-1")
    assert again.attempts == 2
    age_lease(req, 10)  # a lease nobody renewed: any delivery may take over
    assert recovery.claim(req.pk, task_id="task-3")[0].attempts == 3
    GenerationRequest.objects.filter(pk=req.pk).update(status="done")
    assert recovery.claim(req.pk, task_id="task-4") == (None, "already done")


def test_sweep_requeues_abandoned_and_lost_requests_only(writer, quick_recovery):
    abandoned = make(writer)
    recovery.claim(abandoned.pk, task_id="dead")
    age_lease(abandoned, 10)
    alive = make(writer)
    recovery.claim(alive.pk, task_id="alive")
    lost = make(writer, age_s=10)  # queued long ago, its message gone
    fresh = make(writer)
    recovery.touch(fresh.pk, "queued")

    result = recovery.recover_lost_requests()
    assert sorted(result["requeued"]) == sorted([abandoned.pk, lost.pk]) and result["restarted"] == [abandoned.pk]
    statuses = dict(GenerationRequest.objects.values_list("pk", "status"))
    assert statuses == {abandoned.pk: "queued", alive.pk: "running", lost.pk: "queued", fresh.pk: "queued"}
    # re-sent just now: the next sweep leaves them alone until the grace has passed again
    assert recovery.recover_lost_requests() == {"requeued": [], "restarted": []}
