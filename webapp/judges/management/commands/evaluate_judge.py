import json
from pathlib import Path

from django.core.management.base import BaseCommand, CommandError

from webapp.judges.services import (
    JudgeServiceError,
    evaluate_judge_on_labeled,
    evaluate_judge_on_pairs,
    resolve_judge,
)


class Command(BaseCommand):
    help = ("Evaluate a judge on pairwise data (overall / chosen-not-longer / length-matched accuracy beside "
            "pick-longer and the TF-IDF baseline) or on labeled greetings (accuracy, P, R, F1, kappa beside "
            "the length threshold). Items whose query the judges were trained on are excluded.")

    def add_arguments(self, parser):
        source = parser.add_mutually_exclusive_group(required=True)
        source.add_argument("--pairs", type=Path, help="LlamaFactory pairwise JSON (or any pair format).")
        source.add_argument("--labeled", type=Path, help="JSON Lines of {query, response, label}.")
        parser.add_argument("--judge", help="Judge version name or id (default: the active judge).")
        parser.add_argument("--json", action="store_true", dest="as_json", help="Print the report as JSON.")

    def handle(self, *args, pairs, labeled, judge, as_json, **options):
        try:
            version = resolve_judge(judge)
            report = evaluate_judge_on_pairs(version, pairs) if pairs else evaluate_judge_on_labeled(version, labeled)
        except JudgeServiceError as exc:
            raise CommandError(str(exc)) from exc
        if as_json:
            self.stdout.write(json.dumps(report, indent=2, ensure_ascii=False))
            return
        leak = report["leakage"]
        self.stdout.write(f"judge {report['judge']} on {report['file']} ({report['kind']})")
        self.stdout.write(f"  items {leak['total']}; excluded {leak['excluded']} whose query was trained on "
                          f"{leak['excluded_per_judge'] or ''}; evaluated {leak['kept']}")
        for name, recorded in leak["training_queries_recorded"].items():
            if not recorded:
                self.stdout.write(self.style.WARNING(f"  {name}: no training-query record; leakage not checked"))
        if report["kind"] == "pairs":
            for subset, judges in report["results"].items():
                row = "  ".join(f"{n} {'n/a' if v['accuracy'] is None else format(v['accuracy'], '.3f')} "
                                f"({v['correct']}/{v['count']})" for n, v in judges.items())
                self.stdout.write(f"  {subset:<18} {row}")
        else:
            for name, m in report["results"].items():
                self.stdout.write(f"  {name:<24} n={m['count']}  acc {m['accuracy']:.3f}  P {m['precision']:.3f}  "
                                  f"R {m['recall']:.3f}  F1 {m['f1']:.3f}  kappa {m['kappa']:.3f}")

