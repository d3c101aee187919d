"""Import greeting data files (paths or http(s) URLs) into the corpus; see corpus/services.py."""
from django.core.management.base import BaseCommand, CommandError

from training.data.formats import FORMATS, FormatError
from webapp.corpus.models import Label
from webapp.corpus.services import CorpusImportError, import_file, import_starter_corpus


class Command(BaseCommand):
    help = (
        "Import greeting data (alpaca, pairwise, verl, labeled, queries) from paths or http(s) URLs. "
        "Each file is imported in one transaction; re-importing adds nothing."
    )

    def add_arguments(self, parser):
        parser.add_argument("sources", nargs="*", metavar="PATH_OR_URL")
        parser.add_argument("--format", dest="fmt", default="auto", choices=("auto", *FORMATS))
        parser.add_argument("--skip-bad", action="store_true",
                            help="skip malformed records (each one is reported) instead of stopping")
        parser.add_argument("--label-source", default=Label.SourceKind.CORPUS, choices=Label.SourceKind.values,
                            help="who labelled a labeled file (the paper's evaluate_data.json: click)")
        parser.add_argument("--starter", action="store_true", help="import the starter corpus (training/data/starter)")
        parser.add_argument("--no-progress", action="store_true", help="no progress bars")

    def handle(self, *args, sources, fmt, skip_bad, label_source, starter, no_progress, **options):
        if not sources and not starter:
            raise CommandError("give at least one PATH_OR_URL, or --starter")
        progress = not no_progress
        done = []
        try:
            if starter:
                for summary in import_starter_corpus(progress=progress):
                    self._report(summary)
                    done.append(summary.source)
            for source in sources:
                summary = import_file(source, fmt=fmt, skip_bad=skip_bad, progress=progress,
                                      label_source=label_source)
                self._report(summary)
                done.append(summary.source)
        except (FormatError, CorpusImportError) as exc:
            kept = f" (already imported: {', '.join(done)})" if done else ""
            raise CommandError(f"{exc}; nothing of that file was imported{kept}") from exc

    def _report(self, summary):
        self.stdout.write(summary.table())
        for note in summary.notes():
            self.stdout.write(self.style.WARNING(f"  {note}"))
