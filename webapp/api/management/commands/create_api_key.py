"""`create_api_key USERNAME [--name …] [--rate-limit N]`: prints the new key once (only its hash is kept)."""
from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError

from webapp.api.keys import create_api_key


class Command(BaseCommand):
    help = "Create an API key for the OpenAI-compatible API under /v1/ and print it (once)."

    def add_arguments(self, parser):
        parser.add_argument("username")
        parser.add_argument("--name", default="", help="A label to recognise the key by.")
        parser.add_argument("--rate-limit", type=int, default=None, help="Requests per minute (default: the site's).")

    def handle(self, *args, username, name, rate_limit, **options):
        user = get_user_model().objects.filter(username=username).first()
        if user is None:
            raise CommandError(f"no user named {username!r}")
        if rate_limit is not None and rate_limit < 1:
            raise CommandError("--rate-limit must be at least 1")
        key, secret = create_api_key(user, name=name, rate_limit_per_minute=rate_limit)
        self.stderr.write(f"API key {key.prefix}… for {username}; it is shown only this once:")
        self.stdout.write(secret)
