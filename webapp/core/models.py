from django.db import models


class Heartbeat(models.Model):
    """The last time a background process (a Celery worker, Celery beat) said it was alive."""

    name = models.CharField(max_length=200, unique=True)
    role = models.CharField(max_length=20)
    last_seen = models.DateTimeField()
    info = models.JSONField(default=dict, blank=True)

    def __str__(self):
        return f"{self.name} @ {self.last_seen:%Y-%m-%d %H:%M:%S}"
