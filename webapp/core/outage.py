"""A part of the app being down (PostgreSQL restarting, Redis gone) answers 503 with a message
that says which part and to retry, never a 500 traceback. JSON for API clients, a small page
(rendered without the database) for browsers."""
import logging

from django.db import InterfaceError, OperationalError
from django.http import HttpResponse, JsonResponse
from django.utils.html import escape

logger = logging.getLogger(__name__)
RETRY_AFTER_SECONDS = 5


def outage_part(exc: BaseException) -> str | None:
    """'database' or 'cache/broker' when `exc` means that service is unreachable; None otherwise."""
    if isinstance(exc, (OperationalError, InterfaceError)):
        return "database"
    try:
        from kombu.exceptions import OperationalError as BrokerError
        from redis.exceptions import ConnectionError as RedisConnectionError
        from redis.exceptions import TimeoutError as RedisTimeoutError
    except ImportError:  # pragma: no cover - both ship with celery[redis]
        return None
    if isinstance(exc, (RedisConnectionError, RedisTimeoutError, BrokerError)):
        return "cache/broker"
    return None


def outage_response(request, part: str) -> HttpResponse:
    message = (f"服务暂时不可用，请稍后重试。 The {part} is unavailable right now. "
               f"Please try again in a few seconds.")
    wants_json = request.path.startswith(("/write/api/", "/v1/", "/api/")) or \
        "application/json" in request.headers.get("Accept", "")
    if wants_json:
        response = JsonResponse({"error": message, "unavailable": part}, status=503)
    else:
        response = HttpResponse(
            f'<!doctype html><html lang="zh"><meta charset="utf-8"><title>503 · 祝福 Zhufu</title>'
            f'<p role="alert" id="outage">{escape(message)}</p></html>', status=503)
    response["Retry-After"] = str(RETRY_AFTER_SECONDS)
    return response


class ServiceOutageMiddleware:
    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        return self.get_response(request)

    def process_exception(self, request, exception):
        part = outage_part(exception)
        if part is None:
            return None
        logger.warning("%s %s: the %s is unavailable: %s", request.method, request.path, part, exception)
        return outage_response(request, part)
