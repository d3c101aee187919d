"""Heartbeats of background processes, stored in the database."""
import logging
import os
import socket
from datetime import timedelta

from django.conf import settings
from django.db import close_old_connections
from django.utils import timezone

from webapp.core.models import Heartbeat

logger = logging.getLogger(__name__)


def record_heartbeat(name: str, role: str, **info) -> None:
    """Upsert the heartbeat row (``info``: extra facts, e.g. a worker's queues). Never raises: a
    database hiccup must not kill a worker."""
    try:
        close_old_connections()
        Heartbeat.objects.update_or_create(
            name=name,
            defaults={
                "role": role,
                "last_seen": timezone.now(),
                "info": {"pid": os.getpid(), "host": socket.gethostname(), "broker": settings.BROKER_KIND, **info},
            },
        )
    except Exception:  # noqa: BLE001 - logged, retried on the next tick
        logger.warning("could not record heartbeat %s", name, exc_info=True)


def latest_heartbeat(role: str):
    return Heartbeat.objects.filter(role=role).order_by("-last_seen").first()


RECENT_HEARTBEATS = 100  # rows never expire (a container gets a new hostname per deploy): read the newest only


def heartbeats(role: str) -> list:
    """The processes of ``role`` that reported most recently, newest first."""
    return list(Heartbeat.objects.filter(role=role).order_by("-last_seen")[:RECENT_HEARTBEATS])


def is_fresh(heartbeat) -> bool:
    if heartbeat is None:
        return False
    return timezone.now() - heartbeat.last_seen <= timedelta(seconds=settings.HEARTBEAT_STALE_AFTER)
