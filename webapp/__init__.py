"""The Zhufu Django project: settings, URLs, the Celery app, and the apps that wrap
generation/ and training/ for the web."""
import os

# Web, worker, beat and training share 2 cores here: OpenMP threads that spin while waiting
# made training ~6x slower under load (bench/__init__.py). Must be set before torch loads.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

from .celery import app as celery_app  # noqa: E402

__all__ = ["celery_app"]
