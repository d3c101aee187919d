import os

from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "webapp.settings")
# The web server runs each request in a thread of its own: pool its database connections (settings.py).
# Celery processes don't import this module and keep one plain connection each.
os.environ.setdefault("DB_POOL", "on")
application = get_asgi_application()
