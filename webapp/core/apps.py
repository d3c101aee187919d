from django.apps import AppConfig


class CoreConfig(AppConfig):
    name = "webapp.core"
    label = "core"
    verbose_name = "Zhufu core"

    def ready(self):
        from webapp.core.health import register_core_checks
        from webapp.core.security import connect_signals

        register_core_checks()  # the status page's parts; apps above core add theirs in their ready()
        connect_signals()  # sign-in throttling counts Django's login failures
