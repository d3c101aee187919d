from django.apps import AppConfig


class MarlConfig(AppConfig):
    name = "webapp.marl"
    label = "marl"
    verbose_name = "Multi-agent RL (research)"
