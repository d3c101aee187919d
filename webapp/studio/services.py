"""The writing studio's logic: requests, the generation run, progress, feedback, rate limits.

Progress travels through the cache (``progress_key``): the worker writes the whole state of a
request there every ~200 ms, and the page's event stream reads it every ~100 ms. The database
gets the same state at each flush and at the end, so a missing cache only slows the page."""
from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass

from django.conf import settings
from django.core.cache import cache
from django.db import transaction

from generation.conditioning import model_query
from generation.greeting import (MAX_TOKENS_BY_LENGTH, RequestTooLong, normalise_text, request_limit,
                                 slots_from_record, slots_record, stream_greetings)
from generation.guards import Guards
from generation.requests import LengthSpec, UnknownSlotValue, parse_request
from webapp.checkpoints import serving
from webapp.checkpoints.services import active_checkpoint
from webapp.corpus.models import QUERY_MAX_LENGTH, Greeting, Label, Query
from webapp.studio import ranking, recovery
from webapp.studio.models import Candidate, GenerationRequest

FLUSH_SECONDS = 0.2
PROGRESS_TTL = 3600
REQUEST_FIELDS = ("query", "occasion", "recipient", "tone", "length", "details", "avoid", "n")
logger = logging.getLogger(__name__)


class StudioError(Exception):
    status = 400


class RateLimited(StudioError):
    status = 429


class ModelNotReadyError(StudioError):
    status = 503


# --- The one place where a request's fields become the model's prompt query.
def prompt_query(*, query: str, occasion: str = "", recipient: str = "", tone: str = "", length: str = "",
                 details: str = "", avoid: str = "") -> str:
    """The query handed to the model (its prompt is ``format_prompt(query)``: "请只生成一条祝福语：{query}").

    The free text comes first, unchanged; each optional field adds one clause in a fixed order,
    in brackets, so the model sees e.g. "给妈妈的生日祝福（场合：生日；对象：妈妈；风格：温馨；篇幅：短；
    写进：爱喝茶；避免：提年龄）". With no optional field the query is the free text alone, exactly
    like the training corpus's queries."""
    clauses = [(label, value.strip()) for label, value in (
        ("场合", occasion), ("对象", recipient), ("风格", tone), ("篇幅", length), ("写进", details), ("避免", avoid))]
    extra = "；".join(f"{label}：{value}" for label, value in clauses if value)
    base = normalise_text(query)
    return f"{base}（{extra}）" if extra else base


# The form's 篇幅 choices as request-slot lengths (中 asks for nothing in particular).
FORM_LENGTH = {"短": LengthSpec("short"), "中": None, "长": LengthSpec("long"), "": None}


def request_slots(*, query: str, occasion: str = "", recipient: str = "", tone: str = "", length: str = "",
                  details: str = "", **_ignored) -> dict:
    """The slots the candidates are written for, as stored with the request. A field filled in the
    form wins over what the free text says; the slots where they disagree are listed in
    ``conflicts`` and shown on the card. Raises requests.UnknownSlotValue for a value it cannot read."""
    slots = parse_request(query, occasion=occasion or None, addressee=recipient or None, tone=tone or None,
                          length=FORM_LENGTH.get(length))
    record = slots_record(slots)
    record["details"] = "，".join(filter(None, [details.strip(), record["details"]]))
    return record


def query_limit() -> tuple[int, int | None]:
    """(the longest request the active model takes, in characters; its context in tokens, None when
    unknown): the form's limit and counter follow the model, a remote server keeps the table's."""
    checkpoint = active_checkpoint() if settings.GENERATION_BACKEND == "local" else None
    context = (checkpoint.model_config or {}).get("max_position_embeddings") if checkpoint else None
    if not context:
        return QUERY_MAX_LENGTH, None
    return request_limit(int(context), QUERY_MAX_LENGTH), int(context)


def model_status() -> str:
    """'' when a checkpoint can serve; otherwise the reason, for the page and the API."""
    if settings.GENERATION_BACKEND == "openai":
        return ""
    checkpoint = active_checkpoint()
    if checkpoint is None:
        return "模型尚未就绪：还没有训练并启用任何模型。 The model is not ready yet: no checkpoint has been trained and promoted."
    problem = checkpoint.missing_files()
    if problem:
        return f"模型尚未就绪 The model is not ready: the active checkpoint {checkpoint.name} cannot be loaded: {problem}"
    return ""


# --- Rate limits: fixed windows counted in the cache, per user and per client address.
def _limits() -> dict:
    return {"user": 10, "ip": 30, "window": 60, **getattr(settings, "STUDIO_RATE_LIMITS", {})}


def check_rate_limit(user, ip: str) -> None:
    """Counts one generation for `user` and `ip`; raises RateLimited when either is over its limit."""
    limits = _limits()
    window = int(limits["window"])
    bucket = int(time.time() // window)
    over = []
    for kind, who in (("user", user.pk), ("ip", ip)):  # every attempt counts on both
        key = f"studio:rl:{kind}:{who}:{bucket}"
        cache.add(key, 0, timeout=window * 2)
        try:
            count = cache.incr(key)
        except ValueError:  # expired between add and incr
            cache.set(key, 1, timeout=window * 2)
            count = 1
        if count > int(limits[kind]):
            over.append(kind)
    if over:
        kind = over[0]
        raise RateLimited(f"请求太频繁，请稍后再试。 Too many requests: at most {limits[kind]} per {window} s "
                          f"per {'account' if kind == 'user' else 'address'}.")


# --- Requests.
def create_request(*, user, ip: str, fields: dict) -> GenerationRequest:
    """Validated `fields` (forms.RequestForm.cleaned_data) → a queued request whose task is enqueued."""
    problem = model_status()
    if problem:
        raise ModelNotReadyError(problem)
    check_rate_limit(user, ip)
    values = {name: fields.get(name) or "" for name in REQUEST_FIELDS if name != "n"}
    try:
        slots = request_slots(**values)
    except UnknownSlotValue as exc:
        raise StudioError(str(exc)) from None
    with transaction.atomic():
        req = GenerationRequest.objects.create(
            user=user, n=fields.get("n") or 3,
            prompt_query=prompt_query(**values), slots=slots, **values)
        req.reset_candidates()
        transaction.on_commit(lambda: enqueue(req.pk))
    return req


def regenerate(req: GenerationRequest, *, user, ip: str) -> GenerationRequest:
    """A new request with the same fields (the old one stays in the history)."""
    fields = {name: getattr(req, name) for name in REQUEST_FIELDS}
    return create_request(user=user, ip=ip, fields=fields)


class NotFound(StudioError):
    status = 404


class Conflict(StudioError):
    status = 409


def regenerate_candidate(req: GenerationRequest, index: int, *, user, ip: str) -> GenerationRequest:
    """Rewrite candidate `index` of a finished request in place; the others are kept.

    Refusals: 404 when the request has no such candidate, 409 while the request is still
    being written, 503 when no model can serve, 429 over the rate limit (a rewrite counts as a
    generation). The caller has already checked that `user` owns `req`."""
    if not 0 <= index < req.n:
        raise NotFound(f"这条请求没有第 {index} 条。 This request has no candidate {index}; "
                       f"its candidates are 0 to {req.n - 1}.")
    if req.status != GenerationRequest.Status.DONE:
        raise Conflict("这条请求还在生成中，写完后才能重写。 Only a finished request can have a candidate "
                       f"rewritten; this one is {req.status}.")
    problem = model_status()
    if problem:
        raise ModelNotReadyError(problem)
    check_rate_limit(user, ip)
    with transaction.atomic():
        locked = GenerationRequest.objects.select_for_update().get(pk=req.pk)
        if locked.status != GenerationRequest.Status.DONE:  # a second click raced the first
            raise Conflict("这条已经在重写了。 A rewrite of this request is already under way.")
        locked.begin_rewrite(index)
        locked.reset_candidate(index)
        transaction.on_commit(lambda: enqueue(locked.pk))
    # the page's stream reads the cache first: it must not go on showing the finished state
    cache.set(progress_key(locked), snapshot(locked, list(locked.candidates.all())), PROGRESS_TTL)
    return locked


def enqueue(request_id: int) -> None:
    """Send the task; a broker outage is logged, not raised: the request is saved as queued and
    the recovery sweep (recovery.py) sends it again once the broker is back."""
    from webapp.studio.tasks import run_request

    recovery.touch(request_id, "queued")
    try:
        run_request.delay(request_id)
    except Exception:  # noqa: BLE001 — kombu/redis raise several types for "broker down"
        logger.warning("could not enqueue generation request %s; the recovery sweep will retry", request_id,
                       exc_info=True)


def progress_key(req: GenerationRequest) -> str:
    """Keyed by id and creation time: a database reset (tests) never meets an older run's state."""
    return f"studio:progress:{req.pk}:{int(req.created_at.timestamp() * 1_000_000)}"


def progress(req: GenerationRequest) -> dict:
    """The request's live state: the cache's when the worker wrote one, else the database's."""
    state = cached_progress(req)
    if state is not None:
        return state
    req.refresh_from_db()
    return snapshot(req, list(req.candidates.all()))


def cached_progress(req: GenerationRequest) -> dict | None:
    """The state the worker last published, or None (not started yet, or the cache is down)."""
    try:
        return cache.get(progress_key(req))
    except Exception:  # noqa: BLE001 — the cache is down: the database has the same state
        return None


def snapshot(req: GenerationRequest, candidates: list[Candidate]) -> dict:
    return {
        "id": req.pk, "status": req.status, "reason": req.reason, "checkpoint": req.checkpoint_name, "n": req.n,
        "rewrite_index": req.rewrite_index,
        "candidates": [{"index": c.index, "text": c.text, "finished": c.finished, "finish_reason": c.finish_reason,
                        "judge": (c.checks or {}).get("judge")}  # best first once done and judged (ranking.py)
                       for c in ranking.in_card_order(req.status == GenerationRequest.Status.DONE, candidates)],
    }


@dataclass
class _Run:
    req: GenerationRequest
    candidates: list[Candidate]  # all of the request's, for the snapshots
    targets: list[Candidate]  # the ones being written: all, or the one being rewritten
    last_flush: float = 0.0
    keep_alive: Callable[[], None] = lambda: None

    def flush(self, force: bool = False) -> None:
        now = time.monotonic()
        if not force and now - self.last_flush < FLUSH_SECONDS:
            return
        self.last_flush = now
        Candidate.objects.bulk_update(self.targets, ["text", "finished", "finish_reason"])
        self.keep_alive()
        publish_progress(self.req, self.candidates)


def publish_progress(req: GenerationRequest, candidates: list[Candidate]) -> None:
    """The live state into the cache; a cache outage only slows the page (it falls back to the database)."""
    try:
        cache.set(progress_key(req), snapshot(req, candidates), PROGRESS_TTL)
    except Exception:  # noqa: BLE001
        logger.warning("could not publish progress of request %s to the cache", req.pk, exc_info=True)


def _start_run(req: GenerationRequest) -> _Run:
    """Empty what this run writes: every candidate, or only the one being rewritten."""
    if req.rewrite_index is None:
        req.reset_candidates()
    else:
        req.reset_candidate(req.rewrite_index)
    candidates = list(req.candidates.order_by("index"))
    targets = candidates if req.rewrite_index is None else [candidates[req.rewrite_index]]
    return _Run(req, candidates, targets)


def run_generation(request_id: int, task_id: str | None = None) -> str:
    """Generate the request's candidates (or rewrite one), streaming to cache and database; idempotent.

    Returns what happened: 'missing', 'already done', 'running elsewhere', 'superseded', 'done' or
    'failed'. A request is written by the one delivery that claims it (recovery.claim); a queued,
    failed or abandoned one (its worker's lease ran out) restarts from empty."""
    req, refused = recovery.claim(request_id, task_id)
    if req is None:
        return refused
    run = _start_run(req)
    run.keep_alive = recovery.KeepAlive(req.pk, task_id)
    try:
        backend = serving.get_backend()  # looked up per call: tests swap the backend
    except serving.ModelNotReady as exc:
        return _fail(run, f"模型尚未就绪 The model is not ready: {exc}")
    # the backend's own name: a promotion during this request must not relabel what it wrote
    req.checkpoint_name = getattr(backend, "checkpoint_name", None) or settings.GENERATION_REMOTE_MODEL or "remote"
    req.save(update_fields=["checkpoint_name"])
    run.flush(force=True)
    try:
        query, guards = request_query(req, backend), request_guards(req, backend)
        on_page = [c.text for c in run.candidates if c not in run.targets and c.text]  # a rewrite's other cards
        for draft in stream_greetings(backend, query, len(run.targets), guards=guards, taken=on_page,
                                      seed=settings.GENERATION_SEED,
                                      max_tokens=MAX_TOKENS_BY_LENGTH.get(req.length, MAX_TOKENS_BY_LENGTH[""])):
            candidate = run.targets[draft.index]
            candidate.text, candidate.finished, candidate.finish_reason = draft.text, draft.finished, draft.finish_reason
            if draft.checked is not None:
                candidate.checks = draft.checked.record()
            run.flush()
    except RequestTooLong as exc:
        return _fail(run, str(exc))
    except Exception as exc:  # noqa: BLE001 — any failure becomes the request's visible reason
        return _fail(run, f"生成失败 Generation failed: {type(exc).__name__}: {exc}")
    ranking.judge_candidates(req.prompt_query or req.query, run.targets)  # verdicts into checks["judge"]
    run.keep_alive()  # a slow (LLM) judge must not let the lease run out
    with transaction.atomic():
        if not recovery.still_mine(req):  # a later attempt took over while this one stalled
            return "superseded"
        for candidate in run.targets:
            candidate.finished = True
            candidate.finish_reason = candidate.finish_reason or "stop"
            candidate.greeting = store_greeting(req, candidate.text)
        Candidate.objects.bulk_update(run.targets, ["text", "finished", "finish_reason", "checks", "greeting"])
        req.mark_done()
        recovery.release(req.pk)
    publish_progress(req, run.candidates)
    return "done"


def request_query(req: GenerationRequest, backend) -> str:
    """What this backend's model is asked: the slot prefix for a checkpoint trained on slots, the
    typed request (with the form's clauses) for one trained on raw queries."""
    if getattr(backend, "prompt_format", "query") == "slots" and req.slots:
        return model_query(req.query, "slots", slots_from_record(req.slots))
    return req.prompt_query or req.query


def request_guards(req: GenerationRequest, backend) -> Guards:
    """The serve-time guards for this request: its slots, and the backend's training greetings to
    catch copies (none known: that guard passes)."""
    slots = slots_from_record(req.slots) if req.slots else parse_request(req.query)
    return Guards(slots, getattr(backend, "copies", None), scorer=ranking.guard_scorer(req.prompt_query or req.query))


def _fail(run: _Run, reason: str) -> str:
    give_up(run.req, reason, run.targets)
    run.flush(force=True)
    recovery.release(run.req.pk)
    return "failed"


def give_up(req: GenerationRequest, reason: str, targets: list[Candidate] | None = None) -> None:
    """A run that cannot finish. A whole request fails with the reason; a failed rewrite leaves
    that one candidate empty and the request done with the reason as a note, so the other
    candidates stay usable and the rewrite can be tried again."""
    if req.rewrite_index is None:
        req.mark_failed(reason)
        return
    index = req.rewrite_index
    for candidate in targets if targets is not None else req.candidates.filter(index=index):
        candidate.text, candidate.finished, candidate.finish_reason = "", True, "error"
        candidate.save(update_fields=["text", "finished", "finish_reason"])
    req.mark_done(note=f"第 {index + 1} 条重写失败 Rewriting candidate {index + 1} failed: {reason}")


def store_greeting(req: GenerationRequest, text: str) -> Greeting | None:
    """The candidate (already in its final text) as a corpus Greeting(source=model), once per
    (query, text); None when empty."""
    if not text:
        return None
    query, _ = Query.objects.get_or_create(content_hash=Query.hash_for(req.prompt_query or req.query),
                                           defaults={"text": req.prompt_query or req.query})
    greeting = Greeting.objects.filter(content_hash=Greeting.hash_for(query.content_hash, text)).first()
    if greeting is None:
        greeting = Greeting.objects.create(
            query=query, text=text, source=Greeting.Source.MODEL, checkpoint_name=req.checkpoint_name or "unknown",
            origin="studio", meta={"studio_request": req.pk, "occasion": req.occasion, "recipient": req.recipient,
                                   "tone": req.tone, "length": req.length})
    return greeting


# --- Implicit feedback: click labels on the candidate's corpus greeting.
FEEDBACK = {"up": ("thumb", Label.Value.GOOD), "down": ("thumb", Label.Value.BAD), "used": ("used", Label.Value.GOOD)}


def record_feedback(candidate: Candidate, user, action: str) -> Label:
    if action not in FEEDBACK:
        raise StudioError(f"unknown action {action!r}; actions are {', '.join(FEEDBACK)}")
    if candidate.greeting_id is None:
        raise StudioError("这条祝福还没有写完，暂不能评价。 This greeting is not finished yet.")
    kind, value = FEEDBACK[action]
    label, _ = Label.objects.update_or_create(
        greeting_id=candidate.greeting_id, source_kind=Label.SourceKind.CLICK, source_name=f"user:{user.pk}:{kind}",
        defaults={"value": value, "detail": {"studio_request": candidate.request_id, "candidate": candidate.index}})
    return label


def feedback_for(user, candidates) -> dict[int, dict]:
    """{greeting_id: {"thumb": "good"|"bad", "used": "good"}} for this user's click labels."""
    ids = [c.greeting_id for c in candidates if c.greeting_id]
    out: dict[int, dict] = {}
    names = {f"user:{user.pk}:thumb": "thumb", f"user:{user.pk}:used": "used"}
    for label in Label.objects.filter(greeting_id__in=ids, source_kind=Label.SourceKind.CLICK, source_name__in=names):
        out.setdefault(label.greeting_id, {})[names[label.source_name]] = label.value
    return out
