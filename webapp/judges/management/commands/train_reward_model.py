from pathlib import Path

from django.core.management.base import BaseCommand, CommandError

from webapp.judges.management.commands.train_judge import write_heldout
from webapp.judges.services import JudgeServiceError, train_reward_model_version


class Command(BaseCommand):
    help = ("Train the MoE reward model (Bradley-Terry on preference pairs) minus a held-out split by "
            "query, save it under var/judges/NAME and register it.")

    def add_arguments(self, parser):
        parser.add_argument("--pairs", action="append", required=True, type=Path,
                            help="A pairwise file (LlamaFactory JSON or any import format); repeatable.")
        parser.add_argument("--preset", default="small", help="tiny (tests), small (default), base (GPU)")
        parser.add_argument("--init-checkpoint", metavar="ID",
                            help="Start the backbone from this registered generator checkpoint (id or name).")
        parser.add_argument("--steps", type=int,
                            help="Training steps (default: 1.5x the preset's max_steps; small: 600).")
        parser.add_argument("--seed", type=int, default=0)
        parser.add_argument("--name", help="The judge version's name (default: reward-model-<timestamp>).")
        parser.add_argument("--activate", action="store_true", help="Make it the active judge.")

    def handle(self, *args, pairs, preset, init_checkpoint, steps, seed, name, activate, **options):
        if steps is not None and steps < 1:
            raise CommandError(f"--steps must be at least 1, got {steps}")
        try:
            version = train_reward_model_version(pair_files=pairs, preset=preset, init_checkpoint=init_checkpoint,
                                                 steps=steps, seed=seed, name=name, activate=activate,
                                                 progress_bar=options.get("verbosity", 1) > 0)
        except JudgeServiceError as exc:
            raise CommandError(str(exc)) from exc
        self.stdout.write(self.style.SUCCESS(
            f"judge {version.name} ({version.kind}){' [active]' if version.is_active else ''} at {version.path}"))
        write_heldout(self.stdout, version.metrics)
