import json
from pathlib import Path

from django.core.management.base import BaseCommand, CommandError

from training.rl.evaluation import EvalSettings
from webapp.rlaif.services import RlaifError, checkpoint_for, evaluate_checkpoint, judge_for, prompts_from


class Command(BaseCommand):
    help = ("Evaluate a generator on prompts (verl parquet or one query a line): judge pass rate (excellence rate) "
            "with a bootstrap 95% interval, mean reward, KL to the SFT model, distinct-1/2, novelty against the "
            "training greetings (verbatim or >50% of character 8-grams from one greeting), lengths.")

    def add_arguments(self, parser):
        parser.add_argument("--prompts", type=Path, required=True, help="verl parquet file or one query a line")
        parser.add_argument("--checkpoint", help="checkpoint id or name (default: the active one)")
        parser.add_argument("--judge", help="judge version name or id (default: the active judge)")
        parser.add_argument("--samples", type=int, default=4, help="greetings per prompt (1-16)")
        parser.add_argument("--max-prompts", type=int, default=None, help="evaluate only the first N prompts")
        parser.add_argument("--max-new-tokens", type=int, default=96)
        parser.add_argument("--seed", type=int, default=0)
        parser.add_argument("--json", action="store_true", dest="as_json", help="print the report as JSON")

    def handle(self, *args, prompts, checkpoint, judge, samples, max_prompts, max_new_tokens, seed, as_json, **options):
        try:
            if max_prompts is not None and max_prompts < 1:
                raise RlaifError("max-prompts", f"must be at least 1, got {max_prompts}")
            queries = prompts_from(prompts, "prompts")[:max_prompts]
            model = checkpoint_for(checkpoint)
            version, judge_object = judge_for(judge)
            settings = EvalSettings(samples=samples, max_new_tokens=max_new_tokens, seed=seed)
            try:
                settings.validate()
            except ValueError as exc:
                raise RlaifError(str(exc).split(":", 1)[0].replace("_", "-"), str(exc).split(": ", 1)[-1]) from exc
            report = evaluate_checkpoint(model, queries, judge_object, settings)
        except RlaifError as exc:
            raise CommandError(f"--{exc.field.replace('_', '-')}: {str(exc).split(': ', 1)[-1]}") from exc
        report.update(checkpoint_name=model.name, judge_name=version.name)
        if as_json:
            self.stdout.write(json.dumps(report, ensure_ascii=False, indent=2))
            return
        lo, hi = report["pass_rate_ci95"]
        kl = report["kl_to_reference"] or {}
        novelty = "n/a" if report["novelty"] is None else f"{report['novelty']:.3f}"
        self.stdout.write(f"{model.name} judged by {version.name} on {report['prompts']} prompts x {samples}")
        self.stdout.write(f"  pass rate {report['pass_rate']:.3f}  95% CI [{lo:.3f}, {hi:.3f}]")
        self.stdout.write(f"  mean reward {report['mean_reward']:.3f}  KL/token to SFT {kl.get('kl_per_token', 0):.4f}")
        self.stdout.write(f"  distinct-1 {report['distinct_1']:.3f}  distinct-2 {report['distinct_2']:.3f}  novelty {novelty}")
        self.stdout.write(f"  length mean {report['lengths']['mean']:.1f}  median {report['lengths']['median']}  "
                          f"truncated {report['truncated']:.1%}")
