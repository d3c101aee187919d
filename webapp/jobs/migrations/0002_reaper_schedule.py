"""The reaper's beat entry (editable in the admin under Periodic tasks): every 30 seconds."""
from django.db import migrations

REAPER_NAME = "Training jobs: resume or fail jobs whose worker died"


def add_reaper(apps, schema_editor):
    IntervalSchedule = apps.get_model("django_celery_beat", "IntervalSchedule")
    PeriodicTask = apps.get_model("django_celery_beat", "PeriodicTask")
    every, _ = IntervalSchedule.objects.get_or_create(every=30, period="seconds")
    PeriodicTask.objects.get_or_create(name=REAPER_NAME, defaults={
        "task": "webapp.jobs.reap_stale_jobs", "interval": every, "enabled": True,
        "description": "Finds running training jobs with a stale heartbeat: resumable kinds are queued again, "
                       "others are marked failed with the reason.",
    })


def remove_reaper(apps, schema_editor):
    apps.get_model("django_celery_beat", "PeriodicTask").objects.filter(name=REAPER_NAME).delete()


class Migration(migrations.Migration):
    dependencies = [
        ("jobs", "0001_initial"),
        ("django_celery_beat", "0019_alter_periodictasks_options"),
    ]
    operations = [migrations.RunPython(add_reaper, remove_reaper)]
