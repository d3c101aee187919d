from django.core.management.base import BaseCommand, CommandError

from webapp.checkpoints.services import RegistryError, resolve_checkpoint


class Command(BaseCommand):
    help = "Print n greetings for a request from the active checkpoint (or --checkpoint ID)."

    def add_arguments(self, parser):
        parser.add_argument("query", help='The request, e.g. "七十生日祝福语"')
        parser.add_argument("-n", type=int, default=3)
        parser.add_argument("--checkpoint", help="Checkpoint id or name (default: the active one).")
        parser.add_argument("--temperature", type=float, default=0.8)
        parser.add_argument("--top-p", type=float, default=0.95)
        parser.add_argument("--max-new-tokens", type=int, default=96)
        parser.add_argument("--seed", type=int)

    def handle(self, *args, query, n, checkpoint, temperature, top_p, max_new_tokens, seed, **options):
        from generation.checkpoint import CheckpointError, load_checkpoint
        from generation.sampling import generate_greetings

        query = query.strip()
        if not query:
            raise CommandError("the request is empty")
        if not 1 <= n <= 16:
            raise CommandError("-n must be between 1 and 16")
        if not 0 < temperature <= 2:
            raise CommandError("--temperature must be in (0, 2]")
        try:
            record = resolve_checkpoint(checkpoint)
            model, tokenizer = load_checkpoint(record.path, expected_config=record.model_config or None)
        except (RegistryError, CheckpointError) as exc:
            raise CommandError(str(exc)) from exc
        greetings = generate_greetings(model, tokenizer, query, n=n, temperature=temperature, top_p=top_p,
                                       max_new_tokens=max_new_tokens, seed=seed)
        for index, text in enumerate(greetings, 1):
            # A greeting may span lines (a poem); indent its continuation under the number.
            self.stdout.write(f"{index}. " + text.replace("\n", "\n   "))
