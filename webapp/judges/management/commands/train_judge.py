from pathlib import Path

from django.core.management.base import BaseCommand, CommandError

from webapp.judges.services import JudgeServiceError, train_tfidf_judge_version


class Command(BaseCommand):
    help = ("Train a judge on preference pairs minus a held-out split by query, record its held-out "
            "metrics, save it under var/judges/NAME and register it.")

    def add_arguments(self, parser):
        parser.add_argument("--kind", required=True, choices=["tfidf"],
                            help="tfidf (the reward model has its own command: train_reward_model)")
        parser.add_argument("--pairs", action="append", required=True, type=Path,
                            help="A pairwise file (LlamaFactory JSON or any import format); repeatable.")
        parser.add_argument("--name", help="The judge version's name (default: tfidf-<timestamp>).")
        parser.add_argument("--activate", action="store_true", help="Make it the active judge.")

    def handle(self, *args, kind, pairs, name, activate, **options):
        try:
            version = train_tfidf_judge_version(pair_files=pairs, name=name, activate=activate)
        except JudgeServiceError as exc:
            raise CommandError(str(exc)) from exc
        self.stdout.write(self.style.SUCCESS(
            f"judge {version.name} ({version.kind}){' [active]' if version.is_active else ''} at {version.path}"))
        write_heldout(self.stdout, version.metrics)


def write_heldout(stdout, metrics: dict) -> None:
    heldout = metrics.get("heldout")
    stdout.write(f"  trained on {metrics.get('train_pairs')} pairs; held out {metrics.get('heldout_pairs', 0)}")
    if not heldout:
        stdout.write("  no held-out pairs (too few queries): no held-out figures")
        return
    for subset, judges in heldout.items():
        row = "  ".join(f"{name} {'n/a' if v['accuracy'] is None else format(v['accuracy'], '.3f')} "
                        f"({v['correct']}/{v['count']})" for name, v in judges.items())
        stdout.write(f"  {subset:<18} {row}")
