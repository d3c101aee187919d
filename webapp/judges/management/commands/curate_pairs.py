import json

from django.core.management.base import BaseCommand, CommandError

from webapp.judges import curation, jobs, services


class Command(BaseCommand):
    help = ("Multi-agent rejection sampling: generator agents (checkpoints x temperatures, personas, or a remote "
            "OpenAI-compatible server) write candidates, the judges score them, pairs with a clear margin are kept "
            "(length-balanced, evaluation queries excluded) and written to var/curation/NAME.json. Running it again "
            "with the same --name resumes where it stopped.")

    def add_arguments(self, parser):
        parser.add_argument("--method", choices=["score", "debate"], default="score",
                            help="score: the judges score, clear margins kept; debate: retrieved few-shot examples, "
                                 "positive/negative agents, a 0/1 judge and a reflect agent on the LLM judge's "
                                 "endpoint (JUDGE_LLM_BASE_URL, JUDGE_LLM_MODEL).")
        parser.add_argument("--retrieve-k", type=int, default=3, help="Method debate: few-shot examples per prompt.")
        parser.add_argument("--prompts", required=True, help="Queries (any importable file).")
        parser.add_argument("--max-prompts", type=int, default=50)
        parser.add_argument("--checkpoints", default="", help="Names or ids, comma-separated (default: the active one).")
        parser.add_argument("--remote-url", default="", help="An OpenAI-compatible server as another agent.")
        parser.add_argument("--remote-model", default="")
        parser.add_argument("--temperatures", default="0.7,1.1")
        parser.add_argument("--personas", default="")
        parser.add_argument("-n", "--candidates-per-agent", type=int, default=2)
        parser.add_argument("--judges", default="", help="Judge version names (default: the active judge).")
        parser.add_argument("--min-margin", type=float, default=0.3)
        parser.add_argument("--max-longer-share", type=float, default=0.5)
        parser.add_argument("--exclude", default="", help="Evaluation files whose queries are never used.")
        parser.add_argument("--name", required=True, help="The pair file's name (and the resume key).")
        parser.add_argument("--import", action="store_true", dest="import_to_corpus",
                            help="Also import the pairs into the corpus.")
        parser.add_argument("--seed", type=int, default=0)
        parser.add_argument("--json", action="store_true", dest="as_json")

    def handle(self, *args, **o):
        params = {"method": o["method"], "retrieve_k": o["retrieve_k"], "prompts_file": o["prompts"], "max_prompts": o["max_prompts"], "checkpoints": o["checkpoints"],
                  "remote_url": o["remote_url"], "remote_model": o["remote_model"], "temperatures": o["temperatures"],
                  "personas": o["personas"], "candidates_per_agent": o["candidates_per_agent"], "judges": o["judges"],
                  "min_margin": o["min_margin"], "max_longer_share": o["max_longer_share"],
                  "exclude_files": o["exclude"], "name": o["name"], "import_to_corpus": o["import_to_corpus"],
                  "seed": o["seed"]}
        job = jobs.CommandJob(params, curation.curation_dir() / f"{o['name']}.work", write=self.stdout.write)
        try:
            report = jobs.run_curate_pairs(params, job)
        except (jobs.JobParamsError, services.JudgeServiceError) as exc:
            raise CommandError(str(exc)) from exc
        if o["as_json"]:
            self.stdout.write(json.dumps(report, indent=2, ensure_ascii=False))
            return
        stats = report["stats"]
        self.stdout.write(self.style.SUCCESS(f"{stats['pairs']} pairs -> {report['pairs_file']}"))
        for key, value in stats.items():
            self.stdout.write(f"  {key}: {value}")
