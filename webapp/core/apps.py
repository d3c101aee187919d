from django.apps import AppConfig


class CoreConfig(AppConfig):
    name = "webapp.core"
    label = "core"
    verbose_name = "Zhufu core"

    def ready(self):
        from webapp.core.security import connect_signals

        connect_signals()  # sign-in throttling counts Django's login failures
