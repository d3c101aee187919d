from django.apps import AppConfig


class StudioConfig(AppConfig):
    default_auto_field = "django.db.models.BigAutoField"
    name = "webapp.studio"
    label = "studio"
    verbose_name = "Writing studio"
