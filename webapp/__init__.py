"""The Zhufu Django project: settings, URLs, the Celery app, and the apps that wrap
generation/ and training/ for the web."""
from .celery import app as celery_app

__all__ = ["celery_app"]
