"""Judge–human alignment and the human–human baseline: gathers ratings and judge Labels from
the database, then hands plain lists to metrics.py."""
from __future__ import annotations

import math
from dataclasses import dataclass, field

from webapp.annotation import metrics
from webapp.annotation.models import Batch, Item, Rating, Settlement, pairwise_items_q, pointwise_items_q
from webapp.corpus.models import Greeting, Label
from webapp.judges.models import JudgeVersion

BOOTSTRAP_RESAMPLES = 1000
BOOTSTRAP_SEED = 20240601  # fixed: the same data always shows the same intervals
LABELS = ("good", "bad")


@dataclass
class Estimate:
    value: float
    low: float = math.nan
    high: float = math.nan
    n: int = 0

    @property
    def defined(self) -> bool:
        return not math.isnan(self.value)


def estimate(statistic, *columns, n_resamples=BOOTSTRAP_RESAMPLES) -> Estimate:
    value = statistic(*columns) if columns and len(columns[0]) else math.nan
    low, high = metrics.bootstrap_ci(statistic, *columns, n_resamples=n_resamples, seed=BOOTSTRAP_SEED)
    return Estimate(value, low, high, len(columns[0]) if columns else 0)


@dataclass
class HumanItem:
    """What people said about one greeting: every verdict, every weighted score, the settlement."""

    greeting_id: int
    text: str
    verdicts: list[str] = field(default_factory=list)
    scores: list[float] = field(default_factory=list)
    settled: str = ""

    @property
    def consensus(self) -> str | None:
        return self.settled or metrics.majority(self.verdicts)

    @property
    def mean_score(self) -> float | None:
        """The mean weighted rubric score; None when nobody filled the (optional) rubric."""
        scored = [score for score in self.scores if score is not None]
        return sum(scored) / len(scored) if scored else None


def pointwise_items(batch: Batch | None) -> dict[int, HumanItem]:
    """Human ratings per greeting (a greeting in several batches pools its ratings)."""
    ratings = Rating.objects.filter(pointwise_items_q("item__")).select_related("item__greeting")
    settlements = Settlement.objects.filter(pointwise_items_q("item__")).select_related("item")
    if batch is not None:
        ratings, settlements = ratings.filter(item__batch=batch), settlements.filter(item__batch=batch)
    items: dict[int, HumanItem] = {}
    for r in ratings.order_by("id"):
        entry = items.setdefault(r.item.greeting_id, HumanItem(r.item.greeting_id, r.item.greeting.text))
        entry.verdicts.append(r.verdict)
        entry.scores.append(r.weighted_score)
    for s in settlements:
        if s.item.greeting_id in items:
            items[s.item.greeting_id].settled = s.verdict
    return items


def judge_alignment(judge: JudgeVersion, items: dict[int, HumanItem], full: bool = True) -> dict:
    labels = {l.greeting_id: l for l in Label.objects.filter(
        source_kind=Label.SourceKind.JUDGE, source_name=judge.name, greeting_id__in=list(items))}
    rows = [(items[g], labels[g]) for g in items if g in labels]
    decided = [(h, l) for h, l in rows if h.consensus]
    human = [h.consensus for h, _ in decided]
    judged = [l.value for _, l in decided]
    result = {
        "judge": judge, "rated": len(items), "judged": len(rows), "compared": len(decided),
        "no_consensus": len(rows) - len(decided),
        "agreement": estimate(metrics.agreement_rate, human, judged, n_resamples=BOOTSTRAP_RESAMPLES if full else 200),
    }
    if not full:
        return result
    result["kappa"] = estimate(lambda a, b: metrics.cohen_kappa(a, b, LABELS), human, judged)
    result["confusion"] = metrics.confusion_matrix(human, judged, LABELS)
    scored = [(h.mean_score, l.score) for h, l in rows if l.score is not None and h.mean_score is not None]
    xs, ys = [s for s, _ in scored], [j for _, j in scored]
    result["spearman"] = estimate(metrics.spearman, xs, ys)
    result["kendall"] = estimate(metrics.kendall_tau, xs, ys)
    by_bin = []
    for _, _, name in metrics.LENGTH_BINS:
        in_bin = [(h.consensus, l.value) for h, l in decided if metrics.length_bin(len(h.text)) == name]
        by_bin.append((name, estimate(metrics.agreement_rate, [a for a, _ in in_bin], [b for _, b in in_bin],
                                      n_resamples=300)))
    result["by_length"] = by_bin
    # Does the judge like long greetings more than people do? Mean length of each side's Good.
    result["good_length"] = {
        "human": _mean([len(h.text) for h, _ in decided if h.consensus == "good"]),
        "judge": _mean([len(h.text) for h, l in decided if l.value == "good"]),
    }
    return result


def principle_alignment(judge: JudgeVersion, items: dict[int, HumanItem]) -> list[dict]:
    """Per principle of the judge's verdicts (the marks a principled judge stores in its Labels'
    detail["principles"]): on greetings with a human answer, how often the principle's pass/fail
    agrees with people's Good/Bad, and Cohen's kappa; in the principle set's order."""
    rows: dict[str, dict] = {}
    labels = Label.objects.filter(source_kind=Label.SourceKind.JUDGE, source_name=judge.name,
                                  greeting_id__in=list(items)).values_list("greeting_id", "detail")
    for greeting_id, detail in labels:
        human = items[greeting_id].consensus
        for mark in ((detail or {}).get("principles") or []) if human else []:
            row = rows.setdefault(mark["name"], {"name": mark["name"], "label": mark.get("label", ""), "human": [],
                                                 "judged": []})
            row["human"].append(human)
            row["judged"].append("good" if mark.get("passed") else "bad")
    out = []
    for row in rows.values():
        human, judged = row.pop("human"), row.pop("judged")
        out.append({**row, "fails": judged.count("bad"), "compared": len(human),
                    "agreement": estimate(metrics.agreement_rate, human, judged, n_resamples=300),
                    "kappa": estimate(lambda a, b: metrics.cohen_kappa(a, b, LABELS), human, judged, n_resamples=300)})
    return out


def agreement_over_versions(items: dict[int, HumanItem]) -> list[dict]:
    """Agreement with people for every judge version that judged these greetings, oldest first."""
    names = set(Label.objects.filter(source_kind=Label.SourceKind.JUDGE, greeting_id__in=list(items))
                .values_list("source_name", flat=True))
    judges = JudgeVersion.objects.filter(name__in=names).order_by("created_at", "id")
    return [judge_alignment(judge, items, full=False) for judge in judges]


def pairwise_judge_alignment(judge: JudgeVersion, batch: Batch | None) -> Estimate:
    """On pairwise items, does the judge score the greeting people preferred higher? (ties,
    both-bad and items without a human majority are left out)."""
    items = Item.objects.filter(pairwise_items_q()).select_related(
        "pair__chosen", "pair__rejected", "greeting", "greeting_b", "settlement")
    if batch is not None:
        items = items.filter(batch=batch)
    votes: dict[int, list[str]] = {}
    for item_id, choice in Rating.objects.filter(item__in=items).values_list("item_id", "choice"):
        votes.setdefault(item_id, []).append(choice)
    items = list(items.filter(pk__in=votes))
    greeting_ids = {g.pk for item in items for g in item.sides}
    scores = dict(Label.objects.filter(source_kind=Label.SourceKind.JUDGE, source_name=judge.name,
                                       greeting_id__in=greeting_ids, score__isnull=False)
                  .values_list("greeting_id", "score"))
    human, judged = [], []
    for item in items:
        settlement = getattr(item, "settlement", None)
        decided = metrics.pair_outcome(votes[item.pk], settlement.choice if settlement else "").choice
        a, b = (scores.get(side.pk) for side in item.sides)
        if decided in ("a", "b") and a is not None and b is not None and a != b:
            human.append(decided)
            judged.append("a" if a > b else "b")
    return estimate(metrics.agreement_rate, human, judged)


def human_baseline(batch: Batch | None) -> dict:
    """How well people agree with each other, on items two or more of them rated."""
    point = [i for i in pointwise_items(batch).values() if len(i.verdicts) >= 2]
    verdict_units = [i.verdicts for i in point]
    score_units = [i.scores for i in point]
    pairwise_votes = _pairwise_votes(batch)
    return {
        "overlap_items": len(point),
        "alpha_verdict": estimate(lambda units: metrics.krippendorff_alpha(units, "nominal"), verdict_units),
        "alpha_rubric": estimate(lambda units: metrics.krippendorff_alpha(units, "interval"), score_units),
        "verdict_pairs": _pair_share(verdict_units, "with_ties"),
        "pairwise_items": len(pairwise_votes),
        "pairwise_with_ties": _pair_share(pairwise_votes, "with_ties"),
        "pairwise_without_ties": _pair_share(pairwise_votes, "without_ties"),
    }


def _pair_share(units: list[list[str]], ties: str) -> Estimate:
    share, pairs = metrics.pairwise_agreement(units, ties)
    low, high = metrics.bootstrap_ci(lambda u: metrics.pairwise_agreement(u, ties)[0], units,
                                     n_resamples=BOOTSTRAP_RESAMPLES, seed=BOOTSTRAP_SEED)
    return Estimate(share, low, high, pairs)


def _pairwise_votes(batch: Batch | None) -> list[list[str]]:
    ratings = Rating.objects.filter(pairwise_items_q("item__"))
    if batch is not None:
        ratings = ratings.filter(item__batch=batch)
    votes: dict[int, list[str]] = {}
    for item_id, choice in ratings.values_list("item_id", "choice"):
        votes.setdefault(item_id, []).append(choice)
    return [v for v in votes.values() if len(v) >= 2]


def _mean(values: list[float]) -> float | None:
    return sum(values) / len(values) if values else None


# The greetings people rated: what the alignment page compares a judge with (the judge_rated job judges them)


def rated_greetings():
    """Greetings people rated in annotation batches: pointwise items and both sides of pairwise ones."""
    ids = set()
    for row in Rating.objects.values_list("item__greeting_id", "item__greeting_b_id", "item__pair__chosen_id",
                                          "item__pair__rejected_id"):
        ids.update(pk for pk in row if pk)
    return Greeting.objects.filter(pk__in=ids).select_related("query").order_by("pk")
