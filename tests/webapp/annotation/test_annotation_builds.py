"""Annotation batches built from a checkpoint's outputs (and blind comparisons of two), with a
tiny checkpoint trained here; the build task's body runs in this process (it is routed to the
generate queue, checked below), the admin form takes pasted prompts, a text file or a verl parquet."""
import io
import shutil
from io import StringIO

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.core.management import call_command
from django.test import Client

from webapp.annotation import checkpoint_batches, services
from webapp.annotation.models import Batch, BatchBuild, Kind
from webapp.annotation.tasks import build_batch
from webapp.checkpoints.models import Checkpoint
from webapp.core.roles import ADMIN, ANNOTATOR, create_user_with_role
from webapp.corpus.models import Greeting

PROMPTS = ["七十生日祝福语", "给妈妈的生日祝福", "  ", "七十生日祝福语"]  # a blank and a repeat are dropped


@pytest.fixture
def enqueued(monkeypatch):
    ids = []
    monkeypatch.setattr(checkpoint_batches, "enqueue_build", ids.append)
    return ids


@pytest.fixture
def tiny(db, corpus_file, runs_dir, one_thread, tmp_path):
    """A tiny checkpoint, and a second registry entry for a copy of it (a second 'model')."""
    call_command("train_model", preset="tiny", data=[str(corpus_file)], max_steps=2, stdout=StringIO())
    a = Checkpoint.objects.get()
    copy = tmp_path / "copy"
    shutil.copytree(a.path, copy)
    b = Checkpoint.objects.create(name="tiny-copy", run_name=a.run_name, path=str(copy), preset="tiny",
                                  model_config=a.model_config)
    return a, b


def build_now(batch, enqueued, django_capture_on_commit_callbacks=None):
    build = batch.build
    assert build.status == "queued" and not batch.is_open and batch.items.count() == 0
    assert build_batch.run(build.pk) == "done"
    build.refresh_from_db()
    batch.refresh_from_db()
    return build


def test_build_task_is_routed_to_the_generate_queue():
    from webapp.celery import app

    assert app.amqp.router.route({}, "webapp.generate.build_annotation_batch")["queue"].name == "generate"


def test_pointwise_and_blind_comparison_batches_from_tiny_checkpoints(tiny, enqueued,
                                                                      django_capture_on_commit_callbacks):
    a, b = tiny
    with django_capture_on_commit_callbacks(execute=True):
        batch = checkpoint_batches.create_batch_from_checkpoint(a, PROMPTS, n_per_prompt=2, kind="pointwise", k=2)
    assert enqueued == [batch.build.pk] and batch.build.prompts == ["七十生日祝福语", "给妈妈的生日祝福"]
    build = build_now(batch, enqueued)
    assert build.status == "done" and (build.done, build.total) == (2, 2) and batch.is_open
    made = Greeting.objects.filter(origin=f"annotation-build:{build.pk}")
    assert made.exists() and set(made.values_list("checkpoint_name", flat=True)) == {a.name}
    assert set(made.values_list("source", flat=True)) == {"model"}
    items = list(batch.items.select_related("greeting"))
    assert len(items) == build.summary["items"] and all(i.greeting_b_id is None for i in items)
    assert {i.greeting.query.text for i in items} <= set(build.batch.build.prompts)
    assert batch.source["checkpoint"] == a.name and a.name not in batch.name  # annotators see the name
    assert build_batch.run(build.pk) == "already done"
    assert batch.items.count() == len(items) and Greeting.objects.filter(origin__startswith="annotation-build").count() \
        == made.count()

    comparison = checkpoint_batches.create_pairwise_batch_from_checkpoints(a, b, ["新年祝福", "同事升职祝福"], n_per_prompt=2,
                                                                 k=3, name="第二轮 对比")
    build = build_now(comparison, enqueued)
    assert build.status == "done", build.reason
    assert comparison.kind == Kind.PAIRWISE and comparison.k == 3 and (build.done, build.total) == (4, 4)
    items = list(comparison.items.select_related("greeting", "greeting_b", "pair"))
    assert items and all(i.pair_id is None and i.greeting_b_id for i in items)
    assert len(items) + build.summary["left_out"]["same_text"] + build.summary["left_out"]["empty"] == 4
    assert {i.greeting.checkpoint_name for i in items} == {a.name}
    assert {i.greeting_b.checkpoint_name for i in items} <= {b.name, a.name}  # same text written by A first
    assert all(i.greeting.query_id == i.greeting_b.query_id for i in items)


@pytest.mark.parametrize("call, field", [
    (lambda a, b: checkpoint_batches.create_batch_from_checkpoint("no-such-model", ["生日"]), "checkpoint"),
    (lambda a, b: checkpoint_batches.create_batch_from_checkpoint(a, ["", "  "]), "prompts"),
    (lambda a, b: checkpoint_batches.create_batch_from_checkpoint(a, "生日祝福"), "prompts"),
    (lambda a, b: checkpoint_batches.create_batch_from_checkpoint(a, ["祝" * 501]), "prompts"),
    (lambda a, b: checkpoint_batches.create_batch_from_checkpoint(a, ["生日\x07"]), "prompts"),
    (lambda a, b: checkpoint_batches.create_batch_from_checkpoint(a, ["生日"], n_per_prompt=0), "n_per_prompt"),
    (lambda a, b: checkpoint_batches.create_batch_from_checkpoint(a, ["生日"], n_per_prompt=1, kind="pairwise"),
     "n_per_prompt"),
    (lambda a, b: checkpoint_batches.create_batch_from_checkpoint(a, ["生日"], kind="ranking"), "kind"),
    (lambda a, b: checkpoint_batches.create_batch_from_checkpoint(a, ["生日"], k=0), "k"),
    (lambda a, b: checkpoint_batches.create_batch_from_checkpoint(a, ["生日"], temperature=5), "params"),
    (lambda a, b: checkpoint_batches.create_pairwise_batch_from_checkpoints(a, a, ["生日"]), "checkpoint_b"),
    (lambda a, b: checkpoint_batches.create_pairwise_batch_from_checkpoints(a, b, ["生日"]), "checkpoint_b"),
])
def test_bad_input_names_the_field_and_creates_nothing(db, tmp_path, enqueued, call, field):
    folder = tmp_path / "ok"
    folder.mkdir()
    (folder / "config.json").write_text("{}")
    (folder / "model.safetensors").write_bytes(b"")
    a = Checkpoint.objects.create(name="a", run_name="r", path=str(folder), preset="tiny")
    b = Checkpoint.objects.create(name="gone", run_name="r", path=str(tmp_path / "missing"), preset="tiny")
    with pytest.raises(services.AnnotationError) as caught:
        call(a, b)
    assert caught.value.field == field, caught.value.message
    assert not Batch.objects.exists() and not BatchBuild.objects.exists() and enqueued == []


def test_admin_form_takes_pasted_prompts_a_text_file_or_verl_parquet(db, tmp_path, enqueued,
                                                                    django_capture_on_commit_callbacks):
    folder = tmp_path / "ok"
    folder.mkdir()
    (folder / "config.json").write_text("{}")
    (folder / "model.safetensors").write_bytes(b"")
    a = Checkpoint.objects.create(name="a", run_name="r", path=str(folder), preset="tiny")
    b = Checkpoint.objects.create(name="b", run_name="r", path=str(folder), preset="tiny")
    admin, _ = create_user_with_role("boss", ADMIN, "pw-boss-12345")
    annotator, _ = create_user_with_role("ann", ANNOTATOR, "pw-ann-12345")
    client, other = Client(), Client()
    client.force_login(admin)
    other.force_login(annotator)
    url = "/annotate/batches/from-checkpoint/"
    assert other.get(url).status_code == 403
    assert other.post(url, {"checkpoint": a.pk, "prompts_text": "生日"}).status_code == 403
    assert client.get(url).status_code == 200

    base = {"checkpoint": a.pk, "kind": "pointwise", "n_per_prompt": 2, "k": 2, "lease_minutes": 15}
    with django_capture_on_commit_callbacks(execute=True):
        response = client.post(url, {**base, "prompts_text": "七十生日祝福语\n\n给妈妈的生日祝福\n"})
    build = BatchBuild.objects.get()
    assert enqueued == [build.pk]
    assert response.status_code == 302 and response.url == f"/annotate/builds/{build.pk}/"
    assert build.prompts == ["七十生日祝福语", "给妈妈的生日祝福"] and build.batch.created_by == admin
    page = client.get(response.url)
    assert page.status_code == 200 and 'hx-trigger="every 1s"' in page.content.decode()
    assert other.get(response.url).status_code == 403

    text_file = SimpleUploadedFile("prompts.txt", "新年祝福\n乔迁之喜\n".encode())
    client.post(url, {**base, "checkpoint_b": b.pk, "n_per_prompt": 1, "prompts_file": text_file})
    comparison = BatchBuild.objects.latest("id")
    assert comparison.checkpoint_b == b and comparison.batch.kind == "pairwise" and comparison.prompts == [
        "新年祝福", "乔迁之喜"]

    buffer = io.BytesIO()
    pq.write_table(pa.table({"prompt": [[{"role": "user", "content": "请只生成一条祝福语：高考加油的话"}]]}), buffer)
    parquet = SimpleUploadedFile("prompts.parquet", buffer.getvalue())
    client.post(url, {**base, "prompts_file": parquet})
    assert BatchBuild.objects.latest("id").prompts == ["高考加油的话"]

    for data, named in [({**base, "prompts_text": ""}, "prompts_text"),
                        ({**base, "checkpoint": 98765, "prompts_text": "生日"}, "checkpoint"),
                        ({**base, "n_per_prompt": 0, "prompts_text": "生日"}, "n_per_prompt"),
                        ({**base, "checkpoint_b": a.pk, "prompts_text": "生日"}, "checkpoint_b"),
                        ({**base, "prompts_text": "生日\x07快乐"}, "prompts_text"),
                        ({**base, "prompts_file": SimpleUploadedFile("p.parquet", b"not parquet")}, "prompts_file")]:
        response = client.post(url, data)
        assert response.status_code == 400, named
        assert named in response.context["form"].errors, (named, response.context["form"].errors)
    assert BatchBuild.objects.count() == 3
