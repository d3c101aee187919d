"""A training job in a real Celery worker that is killed mid-run (SIGKILL): the reaper sees the
stale heartbeat and queues the resumable SFT job again; a new worker resumes the run from its
last saved state and registers the checkpoint. The active checkpoint never changes on the way."""
import time

import pytest

from tests.conftest import wait_until
from tests.webapp.jobs.test_jobs import purge_broker_queues
from webapp.checkpoints.models import Checkpoint
from webapp.jobs import services
from webapp.jobs.models import LogLine, MetricPoint, TrainingJob

pytestmark = pytest.mark.usefixtures("one_thread")


def start_worker(celery_processes):
    return celery_processes("worker", OMP_NUM_THREADS="1", MKL_NUM_THREADS="1")


def wait_job(pk, predicate, worker, timeout, what):
    try:
        wait_until(lambda: predicate(TrainingJob.objects.get(pk=pk)), timeout, interval=0.3, describe=what)
    except AssertionError:
        job = TrainingJob.objects.get(pk=pk)
        raise AssertionError(f"{what}: job is {job.status} at {job.progress:.2f} ({job.error}); "
                             f"worker log:\n{worker.log_tail()}") from None
    return TrainingJob.objects.get(pk=pk)


@pytest.mark.django_db(transaction=True)
def test_killed_worker_job_is_resumed_by_the_reaper_and_finishes(celery_processes, corpus_file, settings):
    settings.TRAINING_DATA_DIRS = [corpus_file.parent]
    purge_broker_queues()
    worker = start_worker(celery_processes)
    job = services.start_job("sft", {"preset": "tiny", "data_source": "file", "data_path": str(corpus_file),
                                     "max_steps": "300", "seed": "0", "promote": "on"})
    # tiny saves its state every 4 steps: past step 30 there is something to resume from, and
    # enough steps remain that an idle machine cannot finish them between two polls
    wait_job(job.pk, lambda j: j.progress >= 0.1, worker, 90, "the job to pass step 30")
    worker.kill()  # SIGKILL to the whole process group: no clean shutdown, no ack
    killed_at = TrainingJob.objects.get(pk=job.pk)
    assert killed_at.status == "running" and killed_at.progress < 1

    settings.JOBS_HEARTBEAT_STALE_AFTER = 2
    time.sleep(2.5)
    assert services.reap_stale_jobs() == {job.pk: "requeued"}
    assert TrainingJob.objects.get(pk=job.pk).status == "queued"

    worker = start_worker(celery_processes)
    done = wait_job(job.pk, lambda j: j.is_finished, worker, 120, "the resumed job to finish")
    assert done.status == "succeeded", done.error
    assert done.attempts == 2 and done.progress == 1.0
    messages = list(LogLine.objects.filter(job=done).values_list("message", flat=True))
    assert any("worker died" in m and "resuming" in m for m in messages)
    assert any(m.startswith("resuming run") for m in messages), messages  # the trainer resumed, not restarted
    checkpoint = Checkpoint.objects.get(name=done.result["checkpoint"])
    assert checkpoint.status == "active" and not checkpoint.missing_files()
    loss_steps = list(MetricPoint.objects.filter(job=done, name="loss").values_list("step", flat=True))
    # one point per step: the replayed steps replaced, not doubled (points the dead worker had not yet
    # flushed, up to a second's worth, are simply missing)
    assert len(loss_steps) == len(set(loss_steps)) and max(loss_steps) == 300 and len(loss_steps) >= 200
    worker.kill()  # nothing left to do: skip the slow warm shutdown
