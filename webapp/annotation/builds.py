"""The work of a BatchBuild (services.create_batch_from_checkpoint and
create_pairwise_batch_from_checkpoints): generate with the checkpoint(s) through the serving
engine, keep the outputs as corpus Greetings, then fill and open the batch.

Idempotent: a build already done is left alone; any other (queued, half-run by a lost worker,
failed) starts again from an empty batch. Greetings are keyed by content hash, so a rerun adds
no duplicate rows."""
from __future__ import annotations

from django.db import transaction
from django.utils import timezone
from tqdm import tqdm

from generation.greeting import write_greetings
from webapp.annotation.models import Batch, BatchBuild, Item, Kind
from webapp.checkpoints.serving import backend_for
from webapp.corpus.models import Greeting, Query

# Side B samples with other seeds than side A: two copies of one model are then compared on
# independent samples, not on the very same text.
SIDE_SEED_OFFSET = {"A": 0, "B": 1_000_003}


def store_output(query: Query, text: str, checkpoint, build: BatchBuild, meta: dict) -> Greeting | None:
    if not text:
        return None
    greeting = Greeting.objects.filter(content_hash=Greeting.hash_for(query.content_hash, text)).first()
    return greeting or Greeting.objects.create(
        query=query, text=text, source=Greeting.Source.MODEL, checkpoint_name=checkpoint.name,
        origin=f"annotation-build:{build.pk}", meta={"build": build.pk, **meta})


def generate_outputs(build: BatchBuild, checkpoint, side: str, report) -> dict[int, list[Greeting | None]]:
    """{prompt index: n_per_prompt greetings (None where the output was empty)} for one checkpoint."""
    backend = backend_for(checkpoint)
    params = build.params
    outputs = {}
    for index, prompt_text in enumerate(tqdm(build.prompts, desc=f"{build.batch.name} [{side}]", unit="prompt")):
        query, _ = Query.objects.get_or_create(content_hash=Query.hash_for(prompt_text), defaults={"text": prompt_text})
        texts = write_greetings(backend, prompt_text, build.n_per_prompt, max_tokens=params["max_tokens"],
                                seed=params["seed"] + index + SIDE_SEED_OFFSET[side],
                                temperature=params["temperature"], top_p=params["top_p"])
        outputs[index] = [store_output(query, text, checkpoint, build, {"prompt_index": index, "sample": j})
                          for j, text in enumerate(texts)]
        report()
    return outputs


def item_fields(build: BatchBuild, outputs: dict) -> tuple[list[dict], dict]:
    """The batch's items as Item keyword arguments, and counts of what was left out."""
    left_out = {"empty": 0, "same_text": 0}
    items, seen = [], set()

    def add(fields):
        key = tuple(sorted((k, v.pk) for k, v in fields.items()))
        if key not in seen:
            seen.add(key)
            items.append(fields)

    for index in range(len(build.prompts)):
        if build.checkpoint_b_id is not None:
            sides = zip(outputs["a"][index], outputs["b"][index])
        elif build.batch.kind == Kind.PAIRWISE:
            samples = outputs["a"][index]
            sides = zip(samples[0::2], samples[1::2])
        else:
            for greeting in outputs["a"][index]:
                if greeting is None:
                    left_out["empty"] += 1
                else:
                    add({"greeting": greeting})
            continue
        for a, b in sides:
            if a is None or b is None:
                left_out["empty"] += 1
            elif a.pk == b.pk:
                left_out["same_text"] += 1
            else:
                add({"greeting": a, "greeting_b": b})
    return items, left_out


def run_build(build_id: int) -> str:
    """'missing', 'already done', 'done' or 'failed' (the reason is on the build)."""
    build = BatchBuild.objects.select_related("batch", "checkpoint_a", "checkpoint_b").filter(pk=build_id).first()
    if build is None:
        return "missing"
    if build.status == BatchBuild.Status.DONE:
        return "already done"
    build.batch.items.all().delete()
    build.status, build.done, build.reason, build.finished_at = BatchBuild.Status.RUNNING, 0, "", None
    build.save(update_fields=["status", "done", "reason", "finished_at"])

    def report():
        build.done += 1
        BatchBuild.objects.filter(pk=build.pk).update(done=build.done)

    try:
        outputs = {"a": generate_outputs(build, build.checkpoint_a, "A", report)}
        if build.checkpoint_b_id is not None:
            outputs["b"] = generate_outputs(build, build.checkpoint_b, "B", report)
        fields, left_out = item_fields(build, outputs)
        if not fields:
            raise ValueError(f"the checkpoint wrote nothing usable ({left_out})")
        with transaction.atomic():
            Item.objects.bulk_create([Item(batch=build.batch, position=i, **f) for i, f in enumerate(fields)])
            Batch.objects.filter(pk=build.batch_id).update(is_open=True)
            build.status, build.finished_at = BatchBuild.Status.DONE, timezone.now()
            build.summary = {"items": len(fields), "left_out": left_out}
            build.save(update_fields=["status", "finished_at", "summary"])
    except Exception as exc:  # noqa: BLE001 — the admin's page shows why
        fail(build, f"{type(exc).__name__}: {exc}")
        return "failed"
    return "done"


def fail(build: BatchBuild, reason: str) -> None:
    build.status, build.reason, build.finished_at = BatchBuild.Status.FAILED, reason[:2000], timezone.now()
    build.save(update_fields=["status", "reason", "finished_at"])
