from django.core.management.base import BaseCommand

from webapp.judges.default import ensure_default_judge


class Command(BaseCommand):
    help = ("Train (once, on the team corpus only), register and, when no judge is active, activate the default "
            "principled judge (webapp/judges/default.py). `make demo` runs the same.")

    def handle(self, *args, **options):
        result = ensure_default_judge(progress=self.stdout.write)
        self.stdout.write(f"Judge: {result.summary()}")
