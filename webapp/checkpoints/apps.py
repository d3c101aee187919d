from django.apps import AppConfig


class CheckpointsConfig(AppConfig):
    name = "webapp.checkpoints"
    label = "checkpoints"
    verbose_name = "Generator checkpoints"

    def ready(self):
        # Django loads models before ready(): the check module imports the registry's models
        from webapp.checkpoints.health import CHECK_ORDER, check_checkpoint
        from webapp.core.health import register_check

        register_check("checkpoint", check_checkpoint, order=CHECK_ORDER)
