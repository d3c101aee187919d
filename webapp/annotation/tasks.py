"""Thin Celery task: the work is builds.run_build. Named webapp.generate.* so it runs on the
generate queue, in the workers that keep the engine loaded."""
from celery import shared_task
from celery.exceptions import SoftTimeLimitExceeded

from webapp.annotation import builds
from webapp.annotation.models import BatchBuild


@shared_task(name="webapp.generate.build_annotation_batch", acks_late=True, reject_on_worker_lost=True,
             soft_time_limit=3300, time_limit=3600)
def build_batch(build_id: int) -> str:
    try:
        return builds.run_build(build_id)
    except SoftTimeLimitExceeded:
        build = BatchBuild.objects.filter(pk=build_id).first()
        if build is not None and not build.is_finished:
            builds.fail(build, "Generation took longer than an hour and was stopped; use fewer prompts.")
        return "failed"
