from django.core.management.base import BaseCommand, CommandError

from generation.checkpoint import CheckpointError
from generation.conditioning import model_query
from generation.greeting import RequestTooLong, write_checked
from generation.guards import Guards
from generation.requests import parse_request
from webapp.checkpoints.serving import build_backend, check_loadable
from webapp.checkpoints.services import RegistryError, resolve_checkpoint


class Command(BaseCommand):
    help = ("Print n greetings for a request from the active checkpoint (or --checkpoint ID), written as the "
            "studio writes them: the request's slots, the serve-time guards, the final text.")

    def add_arguments(self, parser):
        parser.add_argument("query", help='The request, e.g. "七十生日祝福语"')
        parser.add_argument("-n", type=int, default=3)
        parser.add_argument("--checkpoint", help="Checkpoint id or name (default: the active one).")
        parser.add_argument("--temperature", type=float, default=0.8)
        parser.add_argument("--top-p", type=float, default=0.95)
        parser.add_argument("--max-new-tokens", type=int, default=96)
        parser.add_argument("--seed", type=int)

    def handle(self, *args, query, n, checkpoint, temperature, top_p, max_new_tokens, seed, **options):
        query = query.strip()
        if not query:
            raise CommandError("the request is empty")
        if not 1 <= n <= 16:
            raise CommandError("-n must be between 1 and 16")
        if not 0 < temperature <= 2:
            raise CommandError("--temperature must be in (0, 2]")
        try:
            record = resolve_checkpoint(checkpoint)
            check_loadable(record)
            backend = build_backend(record)  # what is on disk now, not a cached served engine
        except (RegistryError, CheckpointError) as exc:
            raise CommandError(str(exc)) from exc
        slots = parse_request(query)
        try:
            drafts = write_checked(backend, model_query(query, backend.prompt_format, slots), n,
                                   guards=Guards(slots, getattr(backend, "copies", None)), seed=seed,
                                   temperature=temperature, top_p=top_p, max_tokens=max_new_tokens)
        except RequestTooLong as exc:
            raise CommandError(str(exc)) from exc
        for index, draft in enumerate(drafts, 1):
            # A greeting may span lines (a poem); indent its continuation under the number.
            failed = f"   [{', '.join(draft.checked.failed)}]" if draft.checked and draft.checked.failed else ""
            self.stdout.write(f"{index}. " + draft.text.replace("\n", "\n   ") + failed)
