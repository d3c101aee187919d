"""manage.py export_human_pairs OUT.json [--batch NAME] [--no-record]: human preference pairs as a
LlamaFactory pairwise file for the reward model (train_reward_model --pairs OUT.json)."""
import json
from pathlib import Path

from django.core.management.base import BaseCommand, CommandError

from webapp.annotation import exchange
from webapp.annotation.models import Batch


class Command(BaseCommand):
    help = "Write the human preference pairs (decided pairwise votes) as LlamaFactory pairwise JSON."

    def add_arguments(self, parser):
        parser.add_argument("out", help="the JSON file to write")
        parser.add_argument("--batch", help="only this batch (by name)")
        parser.add_argument("--no-record", action="store_true",
                            help="write what was recorded before, without turning new votes into pairs first")

    def handle(self, *args, out, batch=None, no_record=False, **options):
        chosen_batch = None
        if batch:
            chosen_batch = Batch.objects.filter(name=batch).first()
            if chosen_batch is None:
                raise CommandError(f"--batch: no batch named {batch!r}")
        if not no_record:
            summary = exchange.record_human_preferences(chosen_batch)
            left_out = ", ".join(f"{n} {why}" for why, n in sorted(summary.left_out.items())) or "none"
            self.stdout.write(f"recorded: {summary.created} new, {summary.linked} already in the corpus, "
                              f"{summary.updated} changed, {summary.unchanged} unchanged; left out: {left_out}")
        records = exchange.human_pair_records(chosen_batch)
        path = Path(out)
        if path.parent and not path.parent.is_dir():
            raise CommandError(f"out: the folder {path.parent} does not exist")
        path.write_text(json.dumps(records, ensure_ascii=False, indent=1), encoding="utf-8")
        self.stdout.write(f"wrote {len(records)} pairs to {path}")
