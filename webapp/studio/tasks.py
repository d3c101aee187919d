"""Thin Celery tasks: the work is services.run_generation."""
from celery import shared_task
from celery.exceptions import SoftTimeLimitExceeded

from webapp.studio import recovery, services
from webapp.studio.models import GenerationRequest


@shared_task(name="webapp.generate.run_request", bind=True, acks_late=True, reject_on_worker_lost=True,
             soft_time_limit=150, time_limit=180)
def run_request(self, request_id: int) -> str:
    try:
        return services.run_generation(request_id, task_id=self.request.id)
    except SoftTimeLimitExceeded:
        req = GenerationRequest.objects.filter(pk=request_id).first()
        if req is not None and not req.is_finished:
            services.give_up(req, "生成超时 Generation took too long and was stopped.")
        return "failed"


@shared_task(name="webapp.studio.recover_lost_requests", ignore_result=True)
def recover_lost_requests() -> dict:
    """Run by beat (settings.CELERY_BEAT_SCHEDULE) on the default queue: see recovery.py."""
    return recovery.recover_lost_requests()
