"""The Celery app. Workers record a heartbeat in the database every few seconds, so the
status page can tell a live worker from a dead one on any broker (the SQLite broker has
no broadcast, so `control.ping` is not available everywhere)."""
import os

from celery import Celery, bootsteps

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "webapp.settings")

app = Celery("zhufu")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()

HEARTBEAT_SECONDS = 5.0


class WorkerHeartbeat(bootsteps.StartStopStep):
    """Writes `worker:<hostname>` into core.Heartbeat on the worker's own timer."""

    requires = {"celery.worker.components:Timer"}

    def __init__(self, worker, **kwargs):
        super().__init__(worker, **kwargs)
        self.tref = None

    def start(self, worker):
        from webapp.core.heartbeats import record_heartbeat

        # the status page checks that every queue has a live consumer, not just that some worker lives
        queues = sorted(worker.app.amqp.queues.consume_from or worker.app.amqp.queues)

        def beat():
            record_heartbeat(f"worker:{worker.hostname}", role="worker", queues=queues)

        beat()
        self.tref = worker.timer.call_repeatedly(HEARTBEAT_SECONDS, beat, priority=10)

    def stop(self, worker):
        if self.tref is not None:
            self.tref.cancel()
            self.tref = None


app.steps["worker"].add(WorkerHeartbeat)
