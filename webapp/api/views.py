"""OpenAI-compatible endpoints under /v1/: thin wrappers over webapp.api.services.

Token auth (Bearer API keys), so no CSRF. Errors use OpenAI's JSON error shape."""
import threading
from functools import wraps

from asgiref.sync import sync_to_async
from django.core.handlers.asgi import ASGIRequest
from django.http import JsonResponse, StreamingHttpResponse
from django.views.decorators.csrf import csrf_exempt

from webapp.api import services
from webapp.api.services import ApiError


def error_response(error: ApiError) -> JsonResponse:
    response = JsonResponse(error.body(), status=error.status)
    for name, value in error.headers.items():
        response[name] = value
    return response


def api_view(method: str):
    """Method check, key auth and rate limit, with ApiError turned into OpenAI's error JSON."""
    def decorate(view):
        @csrf_exempt
        @wraps(view)
        def wrapper(request, *args, **kwargs):
            try:
                if request.method != method:
                    raise ApiError(405, f"{request.method} is not allowed here; use {method}.",
                                   code="method_not_allowed", headers={"Allow": method})
                request.api_key = services.authenticate(request.headers.get("Authorization"))
                services.check_rate_limit(request.api_key)
                return view(request, *args, **kwargs)
            except ApiError as error:
                return error_response(error)
        return wrapper
    return decorate


@api_view("GET")
def models(request):
    return JsonResponse(services.list_models())


@api_view("GET")
def engine(request):
    """Slot usage of this process's engine, for operators (staff keys only); not part of OpenAI's API."""
    if not request.api_key.user.is_staff:
        raise ApiError(403, "Engine statistics need a staff user's key.", "permission_error")
    return JsonResponse(services.engine_stats())


def generate(request, kind: str):
    api_request = services.parse_request(services.parse_body(request.body), kind)
    generation = services.Generation(api_request)  # 400/404/503 here, before any byte is sent
    if not api_request.stream:
        generation.run()
        return JsonResponse(generation.completion_body(), json_dumps_params={"ensure_ascii": False})
    chunks = generation.sse_chunks()
    content = async_chunks(chunks) if isinstance(request, ASGIRequest) else chunks
    response = StreamingHttpResponse(content, content_type="text/event-stream; charset=utf-8")
    response["Cache-Control"] = "no-cache"
    response["X-Accel-Buffering"] = "no"  # nginx would otherwise hold the events back
    return response


async def async_chunks(chunks):
    """Under ASGI Django buffers a sync iterator whole; step it in a thread per chunk instead.

    On a client disconnect Django cancels the response task: this generator is closed, and the sync
    generator is closed in a thread (it may still be inside next(); closing waits for that step)
    which cancels the engine request and frees its slots."""
    done = object()
    try:
        while (chunk := await sync_to_async(next, thread_sensitive=False)(chunks, done)) is not done:
            yield chunk
    finally:
        threading.Thread(target=close_quietly, args=(chunks,), daemon=True).start()


def close_quietly(chunks) -> None:
    # the generator may still be running in the executor thread: wait for it to leave next()
    for _ in range(600):
        try:
            chunks.close()
            return
        except ValueError:  # "generator already executing"
            threading.Event().wait(0.05)


@api_view("POST")
def chat_completions(request):
    return generate(request, "chat")


@api_view("POST")
def completions(request):
    return generate(request, "completion")
