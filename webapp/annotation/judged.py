"""Which judge trained each checkpoint, and how well that judge agrees with people.

A GRPO checkpoint records its judge's name in `data["judge"]`; its agreement with people is the
annotation app's figure for that judge version over every rated greeting it judged. That figure
reads every pointwise rating, so the list page keeps it in the cache under a fingerprint of what it
reads (a few aggregates over ratings, settlements and the judge's labels, one query each): a view
recomputes it only after one of those changed."""
import hashlib

from django.core.cache import cache
from django.db.models import Count, Max, Q, Sum

from webapp.annotation import alignment
from webapp.annotation.models import Rating, Settlement, pointwise_items_q
from webapp.corpus.models import Label
from webapp.judges.models import JudgeVersion

CACHE_VERSION = 1  # bump when judge_alignment's figures change meaning
CACHE_SECONDS = 7 * 24 * 3600  # a fingerprint that changed is never asked for again: let it expire


def training_judges(checkpoints) -> dict[str, dict]:
    """{checkpoint name: {"judge": JudgeVersion, "agreement": Estimate, "compared": n}} for the
    checkpoints a judge trained; one alignment per judge, however many checkpoints it trained."""
    names = {c.name: c.data.get("judge") for c in checkpoints if isinstance(c.data, dict) and c.data.get("judge")}
    if not names:
        return {}
    judges = list(JudgeVersion.objects.filter(name__in=set(names.values())))
    figures = judge_figures(judges)
    return {checkpoint: figures[judge] for checkpoint, judge in names.items() if judge in figures}


def judge_figures(judges: list[JudgeVersion]) -> dict[str, dict]:
    """{judge name: alignment.judge_alignment(judge, every pointwise item, full=False)}, from the
    cache while its fingerprint holds; the ratings are read once for all judges that missed it."""
    if not judges:
        return {}
    keys = cache_keys(judges)
    figures = cache.get_many(list(keys.values()))
    missing = [judge for judge in judges if keys[judge.name] not in figures]
    if missing:
        items = alignment.pointwise_items(None)
        fresh = {keys[judge.name]: _figures_only(alignment.judge_alignment(judge, items, full=False))
                 for judge in missing}
        cache.set_many(fresh, CACHE_SECONDS)
        figures.update(fresh)
    return {judge.name: {"judge": judge, **figures[keys[judge.name]]} for judge in judges}


def _figures_only(result: dict) -> dict:
    """The cached part: the judge row itself is always the one just read."""
    return {key: value for key, value in result.items() if key != "judge"}


def cache_keys(judges: list[JudgeVersion]) -> dict[str, str]:
    """{judge name: cache key} from what judge_alignment reads. Counts catch deletions (an undone
    rating), latest ids and times catch additions, a settlement changed in place and a database
    restored to an older state; the good counts and sums catch a verdict rewritten in place."""
    pointwise = pointwise_items_q("item__")
    ratings = Rating.objects.filter(pointwise).aggregate(
        n=Count("id"), last=Max("id"), at=Max("created_at"), good=Count("id", filter=Q(verdict="good")))
    settlements = Settlement.objects.filter(pointwise).aggregate(n=Count("id"), at=Max("settled_at"))
    labels = {row.pop("source_name"): row for row in Label.objects.filter(
        source_kind=Label.SourceKind.JUDGE, source_name__in=[judge.name for judge in judges])
        .values("source_name").annotate(n=Count("id"), last=Max("id"), at=Max("created_at"),
                                        good_ids=Sum("greeting_id", filter=Q(value=Label.Value.GOOD)))}
    shared = (CACHE_VERSION, sorted(ratings.items()), sorted(settlements.items()))
    keys = {}
    for judge in judges:
        own = (judge.pk, judge.name, judge.created_at, sorted(labels.get(judge.name, {}).items()))
        keys[judge.name] = "checkpoints:judge-alignment:" + hashlib.sha256(repr((shared, own)).encode()).hexdigest()
    return keys
