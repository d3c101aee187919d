from django.apps import AppConfig


class RlaifConfig(AppConfig):
    default_auto_field = "django.db.models.BigAutoField"
    name = "webapp.rlaif"
    label = "rlaif"
    verbose_name = "RLAIF rounds"
