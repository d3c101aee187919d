"""The status page and /healthz against a real broker and real Celery processes."""
import json

import pytest
from django.urls import reverse

from tests.conftest import wait_until
from webapp.core.health import redact_url


def healthz(client) -> tuple[int, dict]:
    response = client.get(reverse("healthz"))
    return response.status_code, json.loads(response.content)


@pytest.mark.django_db
def test_healthz_reports_every_part_with_a_reason(client):
    status, body = healthz(client)
    assert set(body["parts"]) == {"database", "broker", "worker", "beat", "checkpoint", "device"}
    assert body["parts"]["database"]["ok"] is True
    # Nothing runs in the background in this test and nothing is trained: red, with why.
    assert body["parts"]["worker"]["ok"] is False
    assert "no worker has ever reported" in body["parts"]["worker"]["detail"]
    assert body["parts"]["checkpoint"]["ok"] is False
    assert "train_model" in body["parts"]["checkpoint"]["detail"]
    assert status == 503 and body["ok"] is False


@pytest.mark.django_db
def test_status_page_renders_each_part(client):
    response = client.get("/")
    assert response.status_code == 200
    html = response.content.decode()
    for part in ("database", "broker", "worker", "beat", "checkpoint", "device"):
        assert f'data-part="{part}"' in html
    assert "hx-trigger=\"every 5s\"" in html


def test_broker_password_is_hidden():
    assert redact_url("redis://user:secret@host:6379/0") == "redis://user:***@host:6379/0"
    assert redact_url("redis://127.0.0.1:6379/0") == "redis://127.0.0.1:6379/0"


@pytest.mark.services
def test_worker_and_beat_go_green_then_red_when_killed(client, celery_processes, settings):
    from django.conf import settings as live_settings

    assert live_settings.BROKER_KIND in {"redis", "sqla+sqlite"}
    settings.HEARTBEAT_STALE_AFTER = 8
    worker = celery_processes("worker")
    beat = celery_processes("beat")

    def parts():
        return healthz(client)[1]["parts"]

    def all_green():
        current = parts()
        return current if all(current[name]["ok"] for name in ("database", "broker", "worker", "beat")) else None

    try:
        green = wait_until(all_green, timeout=90, describe="worker and beat heartbeats")
    except AssertionError:
        raise AssertionError(f"worker log:\n{worker.log_tail()}\nbeat log:\n{beat.log_tail()}")
    assert "seen" in green["worker"]["detail"]
    from webapp.core.models import Heartbeat

    # the worker says which queues it takes (-Q default,generate,train in the fixture)
    assert Heartbeat.objects.get(role="worker").info["queues"] == ["default", "generate", "train"]

    worker.kill()
    red = wait_until(lambda: (p := parts()) and not p["worker"]["ok"] and p, timeout=30, describe="stale worker")
    assert "stale" in red["worker"]["detail"]
    assert red["beat"]["ok"] is True


@pytest.mark.django_db
def test_status_page_reuses_a_short_lived_snapshot_while_healthz_stays_live(client):
    from django.utils import timezone

    from webapp.core import health
    from webapp.core.models import Heartbeat

    before = health.recent_health(max_age=0)  # checked now
    assert {p.name: p.ok for p in before}["worker"] is False
    Heartbeat.objects.create(name="w@test", role="worker", last_seen=timezone.now())
    assert health.recent_health(max_age=3600) is before  # within its age: the same snapshot, no checks run
    assert healthz(client)[1]["parts"]["worker"]["ok"] is True  # /healthz checks every time
    after = health.recent_health(max_age=0)  # past its age: checked again
    assert {p.name: p.ok for p in after}["worker"] is True


def _worker_heartbeat(name, queues, seconds_ago):
    from datetime import timedelta

    from django.utils import timezone

    from webapp.core.models import Heartbeat

    info = {"pid": 1} if queues is None else {"pid": 1, "queues": queues}
    return Heartbeat.objects.create(name=f"worker:{name}", role="worker", info=info,
                                    last_seen=timezone.now() - timedelta(seconds=seconds_ago))


@pytest.mark.django_db
def test_worker_part_is_red_when_one_queue_has_no_live_worker(settings):
    """`make demo` runs a serving and a training worker: the training one dying must show."""
    from webapp.core.health import check_workers

    settings.HEARTBEAT_STALE_AFTER = 20
    _worker_heartbeat("serve@vm", ["default", "generate"], seconds_ago=1)
    trainer = _worker_heartbeat("train@vm", ["train"], seconds_ago=300)
    part = check_workers()
    assert part.ok is False
    assert "no live worker takes the 'train' queue" in part.detail
    assert "train@vm [train] last seen 300 s ago (stale)" in part.detail
    assert "serve@vm [default, generate] seen 1 s ago" in part.detail

    trainer.delete()
    _worker_heartbeat("train@vm", ["train"], seconds_ago=2)
    part = check_workers()
    assert part.ok is True, part.detail
    assert "train@vm [train] seen 2 s ago" in part.detail


@pytest.mark.django_db
def test_worker_part_names_every_queue_without_a_worker_and_accepts_old_heartbeats(settings):
    from webapp.core.health import check_workers, required_queues

    settings.HEARTBEAT_STALE_AFTER = 20
    assert required_queues() == ["default", "generate", "train"]
    _worker_heartbeat("train@vm", ["train"], seconds_ago=1)
    part = check_workers()
    assert part.ok is False and "the 'default', 'generate' queues" in part.detail
    # a worker from before queues were recorded counts for every queue
    _worker_heartbeat("old@vm", None, seconds_ago=1)
    assert check_workers().ok is True
