"""Server-sent events that really stream under ASGI.

Django 5.2 buffers a sync iterator whole when served over ASGI (it calls `list()` on it in a
thread), so nothing would reach the browser until the end. `event_stream_response` steps the
sync iterator one chunk at a time in a worker thread instead, and closes it when the client
goes away (which lets generators cancel their work in a `finally`)."""
import threading

from asgiref.sync import sync_to_async
from django.core.handlers.asgi import ASGIRequest
from django.db import close_old_connections
from django.http import StreamingHttpResponse


def event_stream_response(request, chunks) -> StreamingHttpResponse:
    content = async_chunks(chunks) if isinstance(request, ASGIRequest) else chunks
    response = StreamingHttpResponse(content, content_type="text/event-stream; charset=utf-8")
    response["Cache-Control"] = "no-cache"
    response["X-Accel-Buffering"] = "no"  # nginx would otherwise hold the events back
    return response


async def async_chunks(chunks):
    """On a client disconnect Django cancels the response task: this generator is closed, and the sync
    generator is closed in a thread (it may still be inside next(); closing waits for that step)."""
    done = object()
    try:
        while (chunk := await sync_to_async(next_chunk, thread_sensitive=False)(chunks, done)) is not done:
            yield chunk
    finally:
        threading.Thread(target=close_quietly, args=(chunks,), daemon=True).start()


def next_chunk(chunks, done):
    """One step in a shared executor thread, which no request's end cleans up: hand back any database
    connection the step took (to the pool under uvicorn), or each such thread would keep one for good."""
    try:
        return next(chunks, done)
    finally:
        close_old_connections()


def close_quietly(chunks) -> None:
    # the generator may still be running in the executor thread: wait for it to leave next()
    for _ in range(600):
        try:
            chunks.close()
            return
        except ValueError:  # "generator already executing"
            threading.Event().wait(0.05)
