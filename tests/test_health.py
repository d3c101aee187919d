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
