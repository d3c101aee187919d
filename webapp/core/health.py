"""Health of each part of the app, as plain data: the status page and /healthz render it.

The checks are a registry: core registers the database, broker, workers, beat and device; an app
above core registers its own part in its AppConfig.ready() (the checkpoint registry registers
"checkpoint"), so core imports no app above it. `check_all()` runs them in their `order`."""
import threading
import time
from dataclasses import asdict, dataclass
from typing import Callable
from functools import lru_cache

from celery import current_app
from django.conf import settings
from django.db import connection
from django.utils import timezone

from webapp.core.heartbeats import heartbeats, is_fresh, latest_heartbeat


@dataclass
class PartHealth:
    name: str
    ok: bool
    detail: str

    def as_dict(self) -> dict:
        return asdict(self)


def check_database() -> PartHealth:
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
            cursor.fetchone()
    except Exception as exc:  # noqa: BLE001 - the page shows why
        return PartHealth("database", False, f"{connection.vendor}: {exc}")
    return PartHealth("database", True, f"{connection.vendor} ({connection.settings_dict['NAME']})")


def check_broker() -> PartHealth:
    # the project's Celery app (webapp/celery.py) is the current one: webapp/__init__.py creates it
    try:
        with current_app.connection_for_write() as conn:
            conn.ensure_connection(max_retries=1, interval_start=0, interval_step=0, timeout=2)
    except Exception as exc:  # noqa: BLE001
        return PartHealth("broker", False, f"{settings.BROKER_KIND}: cannot connect ({exc})")
    return PartHealth("broker", True, f"{settings.BROKER_KIND}: {redact_url(settings.CELERY_BROKER_URL)}")


def redact_url(url: str) -> str:
    """Hide a password in a broker URL before showing it."""
    if "@" not in url or "://" not in url:
        return url
    scheme, rest = url.split("://", 1)
    creds, host = rest.rsplit("@", 1)
    user = creds.split(":", 1)[0]
    return f"{scheme}://{user}:***@{host}"


def check_heartbeat(role: str) -> PartHealth:
    try:
        heartbeat = latest_heartbeat(role)
    except Exception as exc:  # noqa: BLE001
        return PartHealth(role, False, f"cannot read heartbeats: {exc}")
    if heartbeat is None:
        return PartHealth(role, False, f"no {role} has ever reported: is it running?")
    age = (timezone.now() - heartbeat.last_seen).total_seconds()
    if not is_fresh(heartbeat):
        return PartHealth(role, False, f"{heartbeat.name} last seen {age:.0f} s ago (stale)")
    return PartHealth(role, True, f"{heartbeat.name} seen {age:.0f} s ago")


def required_queues() -> list[str]:
    """The queues the app sends tasks to: each needs a live worker or its tasks just wait."""
    routed = {route["queue"] for route in settings.CELERY_TASK_ROUTES.values()}
    return sorted(routed | {settings.CELERY_TASK_DEFAULT_QUEUE})


def check_workers() -> PartHealth:
    """Green when every queue has a fresh worker; `make demo` runs one for generation and one for
    training, so "some worker is alive" would hide a dead one."""
    try:
        beats = heartbeats("worker")
    except Exception as exc:  # noqa: BLE001
        return PartHealth("worker", False, f"cannot read heartbeats: {exc}")
    if not beats:
        return PartHealth("worker", False, "no worker has ever reported: is it running?")
    fresh = [b for b in beats if is_fresh(b)]
    served = {q for b in fresh for q in worker_queues(b)}
    missing = [q for q in required_queues() if q not in served]
    # the last worker seen on each queue nobody serves now: most likely the one that died
    gone = {b.name: b for q in missing for b in [next((b for b in beats if q in worker_queues(b)), None)] if b}
    describe = "; ".join(describe_worker(b) for b in fresh + list(gone.values()))
    if not missing:
        return PartHealth("worker", True, describe)
    names = ", ".join(f"'{q}'" for q in missing)
    plural = "s" if len(missing) > 1 else ""
    return PartHealth("worker", False, f"no live worker takes the {names} queue{plural} (those tasks wait): {describe}")


def worker_queues(heartbeat) -> list[str]:
    # a heartbeat without the list comes from a worker started before it was recorded: count it for all
    return (heartbeat.info or {}).get("queues") or required_queues()


def describe_worker(heartbeat) -> str:
    age = (timezone.now() - heartbeat.last_seen).total_seconds()
    seen = f"seen {age:.0f} s ago" if is_fresh(heartbeat) else f"last seen {age:.0f} s ago (stale)"
    return f"{heartbeat.name.removeprefix('worker:')} [{', '.join(worker_queues(heartbeat))}] {seen}"


@lru_cache(maxsize=1)
def describe_device() -> str:
    import torch

    if torch.cuda.is_available():
        return f"GPU: {torch.cuda.get_device_name(0)}"
    return f"CPU: {torch.get_num_threads()} threads (no GPU)"


def check_device() -> PartHealth:
    try:
        return PartHealth("device", True, describe_device())
    except Exception as exc:  # noqa: BLE001
        return PartHealth("device", False, f"torch unavailable: {exc}")


# name -> (order on the page, check); registering a name again replaces it (ready() may run twice)
_CHECKS: dict[str, tuple[int, Callable[[], PartHealth]]] = {}


def register_check(name: str, check: Callable[[], PartHealth], *, order: int) -> None:
    """Add a part to the status page and /healthz; `order` places it (core's parts are 10..60)."""
    _CHECKS[name] = (order, check)


def register_core_checks() -> None:
    register_check("database", check_database, order=10)
    register_check("broker", check_broker, order=20)
    register_check("worker", check_workers, order=30)
    register_check("beat", lambda: check_heartbeat("beat"), order=40)
    register_check("device", check_device, order=60)


def check_all() -> list[PartHealth]:
    return [check() for _, check in sorted(_CHECKS.values(), key=lambda entry: entry[0])]


# The status page is public, the same for everyone, and polled (every 5 s per open page): under load,
# running every check per view (a broker connection, heartbeat and registry reads) cost more than the
# page itself. So the page shows a snapshot at most this old, per process; /healthz stays live.
STATUS_SNAPSHOT_SECONDS = 2.0
_snapshot_lock = threading.Lock()
_snapshot: tuple[float, list[PartHealth]] | None = None


def recent_health(max_age: float = STATUS_SNAPSHOT_SECONDS) -> list[PartHealth]:
    """check_all(), reused for `max_age` seconds; one thread refreshes it while the others wait for that."""
    global _snapshot
    with _snapshot_lock:
        if _snapshot is None or time.monotonic() - _snapshot[0] >= max_age:
            _snapshot = (time.monotonic(), check_all())
        return _snapshot[1]
