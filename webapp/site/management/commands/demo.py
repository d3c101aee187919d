from django.conf import settings
from django.core.management import call_command
from django.core.management.base import BaseCommand, CommandError

from webapp.checkpoints.services import active_checkpoint, register_shipped_model
from webapp.corpus.services import import_starter_corpus
from webapp.site import demo


class Command(BaseCommand):
    help = "Set up the demo (database, accounts, starter corpus, a trained checkpoint) and run web, worker and beat."

    def add_arguments(self, parser):
        parser.add_argument("--port", type=int, default=int(__import__("os").environ.get("ZHUFU_PORT", "8000")))
        parser.add_argument("--no-serve", action="store_true", help="Set up, then exit without starting the services.")
        parser.add_argument("--preset", default="small", help="Preset trained when no checkpoint exists.")

    def handle(self, *args, port, no_serve, preset, **options):
        out = self.stdout.write
        out(f"Database: {settings.DATABASES['default']['ENGINE'].rsplit('.', 1)[-1]} "
            f"({settings.DATABASES['default']['NAME']})")
        out(f"Broker:   {demo.describe_broker()}")
        call_command("migrate", interactive=False, verbosity=0)
        out("Accounts:")
        demo.create_demo_accounts(out)
        self.import_starter_corpus(out)
        self.ensure_checkpoint(preset, out)
        call_command("register_default_judge", stdout=self.stdout)  # the principled judge ranks the studio's candidates
        if no_serve:
            return
        code = demo.run_services(demo.free_port(port), out)
        if code:
            raise CommandError("a service stopped unexpectedly (see its log lines above)")

    def import_starter_corpus(self, out):
        summaries = import_starter_corpus()
        out("Starter corpus: " + "; ".join(str(summary) for summary in summaries))

    def ensure_checkpoint(self, preset, out):
        checkpoint = active_checkpoint()
        if checkpoint is not None and not checkpoint.missing_files():
            out(f"Checkpoint: {checkpoint.name} is active")
            return
        shipped, problem = register_shipped_model()
        if shipped is not None:
            out(f"Checkpoint: {shipped.name} (the shipped model, {shipped.path}) is active")
            return
        out(f"Checkpoint: the shipped model cannot be used ({problem}); "
            f"training the {preset!r} preset on the starter corpus instead (once)")
        call_command("train_model", preset=preset, promote=True)
