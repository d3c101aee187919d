"""Thin Celery tasks of the training platform: the work is in services.py.

`webapp.train.*` tasks go to the `train` queue, except periodic_job (settings route it to
`default`); the reaper is not a `webapp.train.*` task: both must run while a train worker is busy."""
from celery import shared_task

from webapp.jobs import services


@shared_task(name="webapp.train.run_job", acks_late=True, reject_on_worker_lost=True)
def run_job(job_id: int, resumed: bool = False) -> str:
    return services.run_job(job_id, resumed=resumed)


@shared_task(name="webapp.train.periodic_job")  # routed to the default queue (settings)
def periodic_job(kind: str, params: dict | None = None) -> int | None:
    """Scheduled in the admin (django-celery-beat): Periodic tasks -> task `webapp.train.periodic_job`,
    keyword arguments e.g. {"kind": "rlaif_round", "params": {...}}."""
    job = services.start_periodic_job(kind, params or {})
    return job.pk if job else None


@shared_task(name="webapp.jobs.reap_stale_jobs")
def reap_stale_jobs() -> dict:
    return {str(k): v for k, v in services.reap_stale_jobs().items()}
