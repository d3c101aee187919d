"""OpenAI-compatible endpoints under /v1/: thin wrappers over webapp.api's keys, parsing and responses.

Token auth (Bearer API keys), so no CSRF. Errors use OpenAI's JSON error shape."""
from functools import wraps

from django.http import JsonResponse
from django.views.decorators.csrf import csrf_exempt

from webapp.api import keys, parsing, responses
from webapp.api.errors import ApiError
from webapp.core.streaming import event_stream_response


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
                request.api_key = keys.authenticate(request.headers.get("Authorization"))
                keys.check_rate_limit(request.api_key)
                return view(request, *args, **kwargs)
            except ApiError as error:
                return error_response(error)
        return wrapper
    return decorate


@api_view("GET")
def models(request):
    return JsonResponse(responses.list_models())


@api_view("GET")
def engine(request):
    """Slot usage of this process's engine, for operators (staff keys only); not part of OpenAI's API."""
    if not request.api_key.user.is_staff:
        raise ApiError(403, "Engine statistics need a staff user's key.", "permission_error")
    return JsonResponse(responses.engine_stats())


def generate(request, kind: str):
    api_request = parsing.parse_request(parsing.parse_body(request.body), kind)
    generation = responses.Generation(api_request)  # 400/404/503 here, before any byte is sent
    if not api_request.stream:
        generation.run()
        return JsonResponse(generation.completion_body(), json_dumps_params={"ensure_ascii": False})
    return event_stream_response(request, generation.sse_chunks())


@api_view("POST")
def chat_completions(request):
    return generate(request, "chat")


@api_view("POST")
def completions(request):
    return generate(request, "completion")
