from django.apps import AppConfig


class JudgesConfig(AppConfig):
    name = "webapp.judges"
    label = "judges"
    verbose_name = "Judges and principles"
