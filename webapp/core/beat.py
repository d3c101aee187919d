"""Celery beat's scheduler: django-celery-beat's database scheduler (schedules edited in
the admin) that also records a heartbeat on every tick."""
import time

from django_celery_beat.schedulers import DatabaseScheduler

from webapp.core.heartbeats import record_heartbeat

BEAT_HEARTBEAT_SECONDS = 5.0


class HeartbeatScheduler(DatabaseScheduler):
    _last_heartbeat = 0.0

    def tick(self, *args, **kwargs):
        now = time.monotonic()
        if now - self._last_heartbeat >= BEAT_HEARTBEAT_SECONDS:
            record_heartbeat("beat", role="beat")
            self._last_heartbeat = now
        return min(super().tick(*args, **kwargs), BEAT_HEARTBEAT_SECONDS)
