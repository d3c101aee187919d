"""Annotation batches of a checkpoint's outputs, or a blind comparison of two: the prompt set checked
(from a form, a file or an upload), the build recorded and sent to the background (annotation/builds.py)."""
from __future__ import annotations

from django.db import transaction
from django.utils import timezone

from generation.greeting import control_characters
from training.data.prompts import PromptFileError, read_prompts
from webapp.annotation.models import Batch, BatchBuild, Kind
from webapp.annotation.services import AnnotationError
from webapp.annotation.tasks import build_batch
from webapp.checkpoints.models import Checkpoint
from webapp.checkpoints.services import RegistryError, resolve_checkpoint
from webapp.corpus.models import QUERY_MAX_LENGTH, normalise_text


MAX_BUILD_PROMPTS = 1000
MAX_PER_PROMPT = 20


def clean_prompts(prompts) -> list[str]:
    """The prompt set as distinct normalised queries, in order; refusals name the field `prompts`."""
    if isinstance(prompts, str) or not hasattr(prompts, "__iter__"):
        raise AnnotationError("prompts must be a list of queries.", field="prompts")
    out, seen = [], set()
    for number, prompt in enumerate(prompts, 1):
        if not isinstance(prompt, str):
            raise AnnotationError(f"prompt {number} is not text.", field="prompts")
        text = normalise_text(prompt)
        if not text or text in seen:
            continue
        if len(text) > QUERY_MAX_LENGTH:
            raise AnnotationError(f"prompt {number} is longer than {QUERY_MAX_LENGTH} characters.", field="prompts")
        bad = control_characters(text)
        if bad:
            raise AnnotationError(f"prompt {number} has control characters ({', '.join(bad[:3])}).", field="prompts")
        seen.add(text)
        out.append(text)
    if not out:
        raise AnnotationError("Give at least one prompt (one query a line).", field="prompts")
    if len(out) > MAX_BUILD_PROMPTS:
        raise AnnotationError(f"At most {MAX_BUILD_PROMPTS} prompts per batch; got {len(out)}.", field="prompts")
    return out


def prompts_from_file(path, name: str) -> list[str]:
    """Queries from a file: a verl parquet (its prompts) or anything else as one query a line."""
    fmt = "verl" if str(name).lower().endswith(".parquet") else "queries"
    try:
        return read_prompts(path, field="prompts_file", fmt=fmt, name=name, require=False)
    except PromptFileError as error:
        raise AnnotationError(error.message, field=error.field) from None


def prompts_from_upload(uploaded) -> list[str]:
    """prompts_from_file for an uploaded file (Django's UploadedFile), via a temporary copy."""
    import tempfile
    from pathlib import Path

    suffix = ".parquet" if uploaded.name.lower().endswith(".parquet") else ".txt"
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / f"prompts{suffix}"
        with open(path, "wb") as out:
            for chunk in uploaded.chunks():
                out.write(chunk)
        return prompts_from_file(path, uploaded.name)


def _checkpoint(value, field_name: str):
    if value is None or value == "":
        raise AnnotationError("Choose a checkpoint.", field=field_name)
    try:
        checkpoint = value if isinstance(value, Checkpoint) else resolve_checkpoint(str(value))
    except RegistryError as error:
        raise AnnotationError(str(error), field=field_name) from None
    problem = checkpoint.missing_files()
    if problem:
        raise AnnotationError(f"{checkpoint.name} cannot be loaded: {problem}", field=field_name)
    return checkpoint


def _start_build(*, checkpoint_a, checkpoint_b, prompts, n_per_prompt, kind, k, name, created_by, lease_seconds,
                 temperature, top_p, max_tokens, seed, default_name):
    if kind not in Kind.values:
        raise AnnotationError(f"kind must be pointwise or pairwise, not {kind!r}.", field="kind")
    if not isinstance(n_per_prompt, int) or not 1 <= n_per_prompt <= MAX_PER_PROMPT:
        raise AnnotationError(f"n_per_prompt must be 1 to {MAX_PER_PROMPT}.", field="n_per_prompt")
    if kind == Kind.PAIRWISE and checkpoint_b is None and n_per_prompt < 2:
        raise AnnotationError("A pairwise batch from one checkpoint compares its outputs with each other: "
                              "n_per_prompt must be at least 2.", field="n_per_prompt")
    if not isinstance(k, int) or not 1 <= k <= 20:
        raise AnnotationError("k (annotators per item) must be 1 to 20.", field="k")
    if not 0 <= float(temperature) <= 2 or not 0 < float(top_p) <= 1 or not 1 <= int(max_tokens) <= 512:
        raise AnnotationError("temperature must be 0 to 2, top_p in (0, 1], max_tokens 1 to 512.", field="params")
    prompts = clean_prompts(prompts)
    name = (name or "").strip()
    with transaction.atomic():
        if name and Batch.objects.filter(name=name).exists():
            raise AnnotationError(f"A batch named {name!r} exists already.", field="name")
        name = name or _free_name(f"{default_name} {timezone.now():%Y-%m-%d %H:%M}")
        batch = Batch.objects.create(
            name=name[:200], kind=kind, k=k, lease_seconds=lease_seconds, created_by=created_by, is_open=False,
            source={"type": "checkpoint", "checkpoint": checkpoint_a.name,
                    **({"checkpoint_b": checkpoint_b.name} if checkpoint_b else {}),
                    "prompts": len(prompts), "n_per_prompt": n_per_prompt})
        build = BatchBuild.objects.create(
            batch=batch, checkpoint_a=checkpoint_a, checkpoint_b=checkpoint_b, prompts=prompts,
            n_per_prompt=n_per_prompt, total=len(prompts) * (2 if checkpoint_b else 1),
            params={"temperature": float(temperature), "top_p": float(top_p), "max_tokens": int(max_tokens),
                    "seed": int(seed)})
        transaction.on_commit(lambda: enqueue_build(build.pk))
    return batch


def _free_name(base: str) -> str:
    name, number = base, 1
    while Batch.objects.filter(name=name).exists():
        number += 1
        name = f"{base} ({number})"
    return name


def enqueue_build(build_id: int) -> None:
    build_batch.delay(build_id)


def create_batch_from_checkpoint(checkpoint, prompts, n_per_prompt: int = 2, kind: str = Kind.POINTWISE, k: int = 2,
                                 *, name: str = "", created_by=None, lease_seconds: int = 900,
                                 temperature: float = 0.8, top_p: float = 0.95, max_tokens: int = 96,
                                 seed: int = 0) -> Batch:
    """An annotation batch of `checkpoint`'s outputs on `prompts`, generated in the background.

    checkpoint: a checkpoints.Checkpoint, or its id or name. prompts: an iterable of query
    strings (normalised; blanks and repeats dropped; at most MAX_BUILD_PROMPTS). n_per_prompt:
    samples per prompt (1-20). kind: "pointwise" (each distinct output is an item) or "pairwise"
    (outputs of one prompt compared two by two, so n_per_prompt >= 2). k: annotators per item.
    name: the batch's name (annotators see it: keep model names out of it; default
    "checkpoint outputs <time>"). temperature, top_p, max_tokens, seed: sampling (prompt i
    uses seed + i, so a batch can be made again).

    Returns the Batch at once, closed and empty; ``batch.build`` (BatchBuild) shows status and
    done/total. A Celery task on the generate queue (webapp.generate.build_annotation_batch)
    generates through the serving engine, stores the outputs as corpus Greetings
    (source=model, checkpoint_name, origin "annotation-build:<id>"), adds the items and opens
    the batch. Raises AnnotationError (with .field) on bad input."""
    return _start_build(checkpoint_a=_checkpoint(checkpoint, "checkpoint"), checkpoint_b=None, prompts=prompts,
                        n_per_prompt=n_per_prompt, kind=kind, k=k, name=name, created_by=created_by,
                        lease_seconds=lease_seconds, temperature=temperature, top_p=top_p, max_tokens=max_tokens,
                        seed=seed, default_name="checkpoint outputs")


def create_pairwise_batch_from_checkpoints(checkpoint_a, checkpoint_b, prompts, n_per_prompt: int = 1, k: int = 2,
                                           *, name: str = "", created_by=None, lease_seconds: int = 900,
                                           temperature: float = 0.8, top_p: float = 0.95, max_tokens: int = 96,
                                           seed: int = 0) -> Batch:
    """A blind side-by-side batch: per prompt, n_per_prompt outputs of each checkpoint, paired
    in order (A's i-th with B's i-th). Annotators see neither name and each gets the sides in
    their own random order; ratings are stored in the item's order (A = checkpoint_a).

    Same arguments and behaviour as create_batch_from_checkpoint (kind is pairwise; default
    name "blind comparison <time>"); checkpoint_a and checkpoint_b must differ. Pairs whose two
    outputs are the same text are left out (build.summary counts them)."""
    a = _checkpoint(checkpoint_a, "checkpoint_a")
    b = _checkpoint(checkpoint_b, "checkpoint_b")
    if a.pk == b.pk:
        raise AnnotationError("Compare two different checkpoints.", field="checkpoint_b")
    return _start_build(checkpoint_a=a, checkpoint_b=b, prompts=prompts, n_per_prompt=n_per_prompt,
                        kind=Kind.PAIRWISE, k=k, name=name, created_by=created_by, lease_seconds=lease_seconds,
                        temperature=temperature, top_p=top_p, max_tokens=max_tokens, seed=seed,
                        default_name="blind comparison")
