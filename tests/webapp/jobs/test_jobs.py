"""The training-job platform: the job state machine, parameter validation, the one-job lock
under concurrency, and recovery of jobs whose worker died (reaper and redelivery)."""
import threading
from datetime import timedelta

import pytest
from django import forms
from django.db import IntegrityError, connection, transaction
from django.utils import timezone

from webapp.jobs import services
from webapp.jobs.kinds import JobKind, all_kinds, get_kind, register
from webapp.jobs.models import TRAIN_SLOT, InvalidTransition, LogLine, MetricPoint, TrainingJob
from webapp.jobs.runner import DatabaseJobHandle


class NoParams(forms.Form):
    pass


def _never_runs(params, job):
    raise AssertionError("this test kind only sits in the database")


# A kind that cannot resume, known only in this test process (the reaper runs here).
ONE_SHOT = register(JobKind(name="test_one_shot", label="test", params_form=NoParams, run=_never_runs))


def purge_broker_queues():
    """Our Redis db's queues start empty, so no earlier test's message reaches this test's worker."""
    from webapp.celery import app

    with app.connection_for_write() as conn:
        for queue in ("train", "default", "generate"):
            try:
                conn.default_channel.queue_purge(queue)
            except Exception:  # noqa: BLE001 - a queue never declared on this broker
                pass


def running_job(kind="test_one_shot", heartbeat_age_s=600, attempts=1, **fields) -> TrainingJob:
    """A job a worker was running, its last heartbeat `heartbeat_age_s` seconds ago."""
    return TrainingJob.objects.create(kind=kind, params=fields.pop("params", {}), status="running", slot=TRAIN_SLOT,
                                      worker="gone-host:4242", attempts=attempts, started_at=timezone.now(),
                                      heartbeat_at=timezone.now() - timedelta(seconds=heartbeat_age_s), **fields)


# --- Kinds and validation -------------------------------------------------------------------

def test_apps_register_their_kinds_at_startup():
    assert get_kind("sft").resumable
    assert "sft" in [kind.name for kind in all_kinds()]


@pytest.mark.django_db
@pytest.mark.parametrize("params, field", [
    ({"preset": "huge", "data_source": "starter", "seed": 0}, "preset"),
    ({"preset": "tiny", "data_source": "file", "data_path": "", "seed": 0}, "data_path"),
    ({"preset": "tiny", "data_source": "file", "data_path": "/etc/passwd", "seed": 0}, "data_path"),
    ({"preset": "tiny", "data_source": "starter", "max_steps": "0", "seed": 0}, "max_steps"),
    ({"preset": "tiny", "data_source": "starter", "seed": "x"}, "seed"),
])
def test_bad_parameters_are_refused_naming_the_field(params, field):
    with pytest.raises(services.JobError) as caught:
        services.start_job("sft", params)
    assert caught.value.field == field and field in caught.value.message
    assert not TrainingJob.objects.exists()  # nothing queued, the slot is free


@pytest.mark.django_db
def test_unknown_kind_names_the_kind_field():
    with pytest.raises(services.JobError) as caught:
        services.start_job("no_such_kind", {})
    assert caught.value.field == "kind" and "sft" in caught.value.message


# --- State machine ------------------------------------------------------------------------------

@pytest.mark.django_db
def test_transitions_follow_the_state_machine():
    job = TrainingJob.objects.create(kind="sft", slot=TRAIN_SLOT)
    with pytest.raises(InvalidTransition):
        job.requeue("not running yet")
    job.mark_running("host:1")
    assert (job.status, job.attempts, job.slot) == ("running", 1, TRAIN_SLOT) and job.started_at
    job.mark_succeeded({"checkpoint": "x"})
    assert (job.status, job.progress, job.slot) == ("succeeded", 1.0, None) and job.finished_at
    for move in (lambda: job.mark_running("host:2"), lambda: job.mark_failed("late"), job.mark_cancelled,
                 lambda: job.requeue("late")):
        with pytest.raises(InvalidTransition):
            move()
    job.refresh_from_db()
    assert job.status == "succeeded" and job.error == ""
    with pytest.raises(InvalidTransition, match="nothing to cancel"):
        job.request_cancel()


@pytest.mark.django_db
def test_queued_job_cancels_at_once_and_running_job_is_asked_to_stop():
    queued = TrainingJob.objects.create(kind="sft", slot=TRAIN_SLOT)
    services.cancel_job(queued)
    assert queued.status == "cancelled" and queued.slot is None
    running = running_job(heartbeat_age_s=0)
    services.cancel_job(running)
    assert running.status == "running" and running.cancel_requested
    handle = DatabaseJobHandle(running, resumed=False)
    assert handle.on_progress({"event": "step", "step": 1, "max_steps": 10, "loss": 2.0}) is False


@pytest.mark.django_db
def test_the_table_refuses_a_second_active_job_and_progress_outside_0_1():
    TrainingJob.objects.create(kind="sft", slot=TRAIN_SLOT)
    with pytest.raises(IntegrityError), transaction.atomic():
        TrainingJob.objects.create(kind="sft", slot=TRAIN_SLOT)
    with pytest.raises(IntegrityError), transaction.atomic():  # active without holding the slot
        TrainingJob.objects.create(kind="sft", status="running", slot=None)
    with pytest.raises(IntegrityError), transaction.atomic():
        TrainingJob.objects.filter(kind="sft").update(progress=1.5)


@pytest.mark.django_db
def test_handle_records_progress_metrics_and_logs():
    job = running_job(heartbeat_age_s=0)
    handle = DatabaseJobHandle(job, resumed=False)
    assert handle.on_progress({"event": "stage", "stage": "training"})
    assert handle.on_progress({"event": "step", "step": 5, "max_steps": 20, "loss": 3.5, "eta_s": 12.0,
                               "real_experts_per_token": 1.4, "elapsed_s": 1.0})
    assert handle.on_progress({"event": "log", "step": 5, "loss": 3.4, "heldout_loss": 3.9, "lr": 0.001})
    handle.flush(force=True)
    job.refresh_from_db()
    assert (job.progress, job.eta_seconds, job.stage) == (0.25, 12.0, "training")
    points = set(MetricPoint.objects.filter(job=job).values_list("name", "step", "value"))
    # the log event's loss is the window average of what steps already drew: not a second curve point
    assert points == {("loss", 5, 3.5), ("real_experts_per_token", 5, 1.4), ("heldout_loss", 5, 3.9), ("lr", 5, 0.001)}
    assert LogLine.objects.filter(job=job, message__contains="heldout_loss=3.9").exists()


# --- The lock under concurrency ---------------------------------------------------------------

@pytest.mark.django_db(transaction=True)
def test_two_simultaneous_starts_one_wins_the_other_gets_a_clear_error():
    if connection.vendor != "postgresql":
        pytest.skip("the concurrency guarantee is PostgreSQL's (SQLite serialises writers anyway)")
    purge_broker_queues()
    barrier, outcomes = threading.Barrier(4), []
    params = {"preset": "tiny", "data_source": "starter", "max_steps": "1", "seed": "0"}

    def start():
        barrier.wait()
        try:
            outcomes.append(services.start_job("sft", params))
        except services.JobBusy as exc:
            outcomes.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=start) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    started = [o for o in outcomes if isinstance(o, TrainingJob)]
    refused = [o for o in outcomes if isinstance(o, services.JobBusy)]
    assert len(started) == 1 and len(refused) == 3
    assert all(f"job #{started[0].pk}" in str(exc) for exc in refused)
    assert TrainingJob.objects.count() == 1
    purge_broker_queues()


# --- Recovery: reaper and redelivery ----------------------------------------------------------

@pytest.mark.django_db
def test_reaper_fails_a_stale_job_that_cannot_resume_with_the_reason(settings):
    settings.JOBS_HEARTBEAT_STALE_AFTER = 30
    stale = running_job(heartbeat_age_s=120)
    assert services.reap_stale_jobs() == {stale.pk: "failed"}
    stale.refresh_from_db()
    assert stale.status == "failed" and stale.slot is None
    assert "worker died" in stale.error and "gone-host:4242" in stale.error


@pytest.mark.django_db
def test_reaper_leaves_a_live_job_and_cancels_a_dead_one_that_was_being_cancelled(settings):
    settings.JOBS_HEARTBEAT_STALE_AFTER = 30
    live = running_job(heartbeat_age_s=5)
    assert services.reap_stale_jobs() == {}
    assert services.run_job(live.pk) == "skipped: its worker is alive"  # a duplicate delivery
    live.refresh_from_db()
    assert live.status == "running" and live.attempts == 1
    TrainingJob.objects.filter(pk=live.pk).update(heartbeat_at=timezone.now() - timedelta(minutes=5),
                                                  cancel_requested=True)
    assert services.reap_stale_jobs() == {live.pk: "cancelled"}


@pytest.mark.django_db
def test_redelivered_task_of_a_dead_one_shot_job_marks_it_failed(settings):
    settings.JOBS_HEARTBEAT_STALE_AFTER = 30
    stale = running_job(heartbeat_age_s=120)
    assert services.run_job(stale.pk) == "failed"
    stale.refresh_from_db()
    assert stale.status == "failed" and "worker died" in stale.error


@pytest.mark.django_db
def test_a_resumable_job_is_given_up_after_max_attempts(settings):
    settings.JOBS_HEARTBEAT_STALE_AFTER = 30
    stale = running_job(kind="sft", attempts=services.MAX_ATTEMPTS, params={"preset": "tiny"})
    assert services.reap_stale_jobs() == {stale.pk: "failed"}
    stale.refresh_from_db()
    assert "gave up after 3 attempts" in stale.error


@pytest.mark.django_db
def test_the_reaper_is_scheduled_in_the_beat_database():
    from django_celery_beat.models import PeriodicTask

    entry = PeriodicTask.objects.get(task="webapp.jobs.reap_stale_jobs")
    assert entry.enabled and entry.interval.every == 30


# --- Periodic rounds ------------------------------------------------------------------------------

@pytest.mark.django_db
def test_periodic_round_is_skipped_with_a_log_line_while_a_job_runs():
    busy = running_job(heartbeat_age_s=0)
    assert services.start_periodic_job("sft", {"preset": "tiny", "data_source": "starter", "seed": 0}) is None
    assert LogLine.objects.filter(job=busy, message__contains="periodic sft skipped").exists()
    assert TrainingJob.objects.count() == 1


@pytest.mark.django_db(transaction=True)
def test_periodic_round_starts_a_job_when_none_runs():
    purge_broker_queues()
    job = services.start_periodic_job("sft", {"preset": "tiny", "data_source": "starter", "seed": 0})
    assert job is not None and job.status == "queued" and job.created_by is None
    assert LogLine.objects.filter(job=job, message="queued by the scheduler").exists()
    purge_broker_queues()


def test_periodic_and_reaper_tasks_are_registered_and_routed():
    from webapp.celery import app
    from webapp.jobs import tasks  # noqa: F401 - registers the tasks

    assert {"webapp.train.run_job", "webapp.train.periodic_job", "webapp.jobs.reap_stale_jobs"} <= set(app.tasks)
    assert app.tasks["webapp.train.run_job"].acks_late and app.tasks["webapp.train.run_job"].reject_on_worker_lost
    assert app.amqp.router.route({}, "webapp.train.run_job")["queue"].name == "train"
    # the reaper and the scheduler must not wait behind a training job on the train queue
    assert app.amqp.router.route({}, "webapp.jobs.reap_stale_jobs")["queue"].name == "default"
    assert app.amqp.router.route({}, "webapp.train.periodic_job")["queue"].name == "default"


@pytest.mark.django_db
def test_redelivered_task_of_a_dead_sft_job_takes_over_and_resumes_its_run(settings, corpus_file, runs_dir,
                                                                            one_thread):
    from webapp.checkpoints.training import TrainingStopped, train_and_register
    from webapp.jobs.runner import job_workdir

    settings.JOBS_HEARTBEAT_STALE_AFTER = 30
    settings.TRAINING_DATA_DIRS = [corpus_file.parent]
    params = services.validate_params(get_kind("sft"), {"preset": "tiny", "data_source": "file", "seed": "0",
                                                        "data_path": str(corpus_file), "max_steps": "8"})
    stale = running_job(kind="sft", params=params)
    # what the dead worker left: the run's name in the job folder and a state saved at step 4
    job_workdir(stale.pk).mkdir(parents=True, exist_ok=True)
    (job_workdir(stale.pk) / "sft_run_name").write_text("tiny-run-of-a-dead-worker")
    with pytest.raises(TrainingStopped):
        train_and_register(preset="tiny", data_paths=[corpus_file], max_steps=8, run_name="tiny-run-of-a-dead-worker",
                           on_progress=lambda p: not (p["event"] == "step" and p["step"] >= 4))

    assert services.run_job(stale.pk) == "succeeded"
    stale.refresh_from_db()
    assert stale.attempts == 2 and stale.result["checkpoint"] == "tiny-run-of-a-dead-worker"
    assert LogLine.objects.filter(job=stale, message="resuming run tiny-run-of-a-dead-worker").exists()
    # resumed, not restarted: only the steps after the saved state were trained again
    steps = sorted(MetricPoint.objects.filter(job=stale, name="loss").values_list("step", flat=True))
    assert steps == [5, 6, 7, 8]
