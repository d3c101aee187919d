import json
import tempfile

from django.core.management.base import BaseCommand, CommandError

from webapp.judges import jobs, services


class Command(BaseCommand):
    help = ("Adversarial optimisation of the LLM judge's principle set with reflection: flawed greetings attack "
            "it, the endpoint revises the rules from the failures, a revision is kept only when held-out agreement "
            "holds and the attack success rate falls; the best set is saved as a new principle-set version.")

    def add_arguments(self, parser):
        parser.add_argument("--labelled", required=True, help="{query, response, label} JSON Lines.")
        parser.add_argument("--principle-set", default="", help="id, NAME or NAME:VERSION (default: active/default).")
        parser.add_argument("--rounds", type=int, default=3)
        parser.add_argument("--attacks", type=int, default=24, help="Perturbation attacks per round.")
        parser.add_argument("--llm-attacks", type=int, default=0, help="Attacks the endpoint writes per round.")
        parser.add_argument("--strategies", default="")
        parser.add_argument("--base-url", default="", help="Default: JUDGE_LLM_BASE_URL.")
        parser.add_argument("--model", default="", help="Default: JUDGE_LLM_MODEL.")
        parser.add_argument("--timeout", type=float, help="Seconds per request (default: JUDGE_LLM_TIMEOUT).")
        parser.add_argument("--max-retries", type=int, help="Retries of a failed request (default 3).")
        parser.add_argument("--register", action="store_true", help="Register an LLM judge with the new set.")
        parser.add_argument("--seed", type=int, default=0)
        parser.add_argument("--json", action="store_true", dest="as_json")

    def handle(self, *args, **o):
        params = {"labelled_file": o["labelled"], "principle_set": o["principle_set"], "rounds": o["rounds"],
                  "attacks_per_round": o["attacks"], "llm_attacks_per_round": o["llm_attacks"],
                  "strategies": o["strategies"], "base_url": o["base_url"], "model": o["model"],
                  "register_llm_judge": o["register"], "seed": o["seed"],
                  "timeout": o["timeout"], "max_retries": o["max_retries"]}
        with tempfile.TemporaryDirectory(prefix="zhufu-adversarial-") as workdir:
            try:
                summary = jobs.run_adversarial_judge(params, jobs.CommandJob(params, workdir, write=self.stdout.write))
            except (jobs.JobParamsError, services.JudgeServiceError) as exc:
                raise CommandError(str(exc)) from exc
        if o["as_json"]:
            self.stdout.write(json.dumps(summary, indent=2, ensure_ascii=False))
            return
        for r in summary["rounds"]:
            after = r["after"]
            self.stdout.write(
                f"round {r['round']}: ASR {r['before']['attack_success_rate']:.3f}"
                + (f" -> {after['attack_success_rate']:.3f}" if after else "")
                + f", agreement {r['before']['agreement']:.3f}" + (f" -> {after['agreement']:.3f}" if after else "")
                + f"  {'ACCEPTED' if r['accepted'] else 'kept old'}: {r['reason']}  "
                  f"+{len(r['diff']['added'])} -{len(r['diff']['removed'])} rules")
        saved = summary["saved"]
        self.stdout.write(self.style.SUCCESS(f"saved {saved['name']} v{saved['version']}") if saved
                          else "no improvement: no new principle-set version")
