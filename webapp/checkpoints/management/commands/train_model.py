from django.core.management.base import BaseCommand, CommandError

from webapp.checkpoints.services import RegistryError
from webapp.checkpoints.training import train_and_register


class Command(BaseCommand):
    help = "Train a LongCat-Flash generator preset and register its checkpoint."

    def add_arguments(self, parser):
        parser.add_argument("--preset", default="small", help="tiny (tests), small (demo), base (GPU)")
        parser.add_argument("--data", action="append", default=[],
                            help="A corpus file in any import format (repeatable); default: the starter corpus.")
        parser.add_argument("--resume", metavar="RUN", help="Resume the run of that name from its last save.")
        parser.add_argument("--seed", type=int, default=0)
        parser.add_argument("--deterministic", action="store_true")
        parser.add_argument("--max-steps", type=int, help="Override the preset's number of steps.")
        parser.add_argument("--promote", action="store_true", help="Make the new checkpoint the active one.")
        parser.add_argument("--prompt-format", default="query", choices=["slots", "query"],
                            help="query (default, what the serving path sends today): the raw request text; slots: the parsed request slots.")

    def handle(self, *args, preset, data, resume, seed, deterministic, max_steps, promote, prompt_format, **options):
        from generation.checkpoint import CheckpointError
        from training.trainer import TrainingError

        try:
            checkpoint = train_and_register(preset=preset, data_paths=data, resume_run=resume, seed=seed,
                                            deterministic=deterministic, max_steps=max_steps, promote=promote,
                                            prompt_format=prompt_format)
        except (TrainingError, CheckpointError, RegistryError) as exc:
            raise CommandError(str(exc)) from exc
        metrics = checkpoint.metrics
        summary = ", ".join(f"{k}={v:.4g}" for k, v in metrics.items() if isinstance(v, (int, float)))
        self.stdout.write(self.style.SUCCESS(f"checkpoint {checkpoint.name} [{checkpoint.status}] at {checkpoint.path}"))
        if summary:
            self.stdout.write(f"  {summary}")
