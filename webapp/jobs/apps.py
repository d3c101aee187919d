from django.apps import AppConfig


class JobsConfig(AppConfig):
    default_auto_field = "django.db.models.BigAutoField"
    name = "webapp.jobs"
    label = "jobs"
    verbose_name = "Training jobs"

    def ready(self):
        # Every app declares its kinds of job in its own jobs.py (the way the admin finds admin.py).
        from django.utils.module_loading import autodiscover_modules

        autodiscover_modules("jobs")
