"""What the annotation views do: build batches, hand out items safely under concurrency, take
ratings and settle disagreements (ratings in and out: exchange.py; batches of checkpoint outputs:
checkpoint_batches.py).

Handing out: the candidate items are locked with SELECT ... FOR UPDATE SKIP LOCKED (PostgreSQL),
then counted again with a fresh statement while the lock is held, because the first query's
snapshot may predate another annotator's commit. Every write to an item's assignments happens
under that item's lock, so no item ever has more than k leased-or-done assignments. SQLite has
no row locks: there each hand-out first takes the database's write lock (a no-op UPDATE) so the
transactions run one at a time."""
from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from datetime import timedelta

from django.db import connection, transaction
from django.db.models import Count, F, IntegerField, OuterRef, Q, Subquery, Value
from django.db.models.functions import Coalesce
from django.utils import timezone

from webapp.annotation.models import Assignment, Batch, Choice, Guidelines, Item, Kind, Rating, Settlement, Verdict
from webapp.annotation.rubric import RUBRIC_KEYS, weighted_score
from webapp.corpus.models import Greeting, Label, PreferencePair


DEFAULT_GUIDELINES = (
    "判断这条祝福语是否切合请求的场合、对象与关系；用词是否准确、自然；情感是否真挚；"
    "是否有创意而不落俗套；内容是否具体。\n"
    "Good：各方面都好；Bad：有任何明显缺点（错别字、套话、答非所问、施压或讽刺）。\n"
    "长短本身不是优点。你看不到模型名称、评审结果或其他人的评分，这是有意为之。"
)

SOURCE_TYPES = {
    "corpus": "corpus greetings",
    "checkpoint": "a checkpoint's outputs",
    "generations": "user generations (human / model)",
    "pairs": "preference pairs",
}


class AnnotationError(Exception):
    """A request the annotation services refuse; `status` is the HTTP status to answer with."""

    def __init__(self, message: str, status: int = 400, field: str | None = None):
        super().__init__(message)
        self.message, self.status, self.field = message, status, field


def candidate_items(*, source_type: str, origin: str = "", checkpoint_name: str = "", generation_source: str = "",
                    pair_source: str = ""):
    """The greetings or pairs a batch would take from a source, in id order."""
    if source_type == "pairs":
        pairs = PreferencePair.objects.all()
        if pair_source:
            pairs = pairs.filter(source=pair_source)
        if origin:
            pairs = pairs.filter(origin__icontains=origin)
        return pairs.order_by("id")
    greetings = Greeting.objects.all()
    if source_type == "corpus":
        greetings = greetings.filter(source=Greeting.Source.CORPUS)
    elif source_type == "checkpoint":
        if not checkpoint_name:
            raise AnnotationError("Name the checkpoint whose outputs to annotate.", field="checkpoint_name")
        greetings = greetings.filter(source=Greeting.Source.MODEL, checkpoint_name=checkpoint_name)
    elif source_type == "generations":
        wanted = [generation_source] if generation_source else [Greeting.Source.HUMAN, Greeting.Source.MODEL]
        greetings = greetings.filter(source__in=wanted)
    else:
        raise AnnotationError(f"Unknown source {source_type!r}.", field="source_type")
    if origin:
        greetings = greetings.filter(origin__icontains=origin)
    return greetings.order_by("id")


@transaction.atomic
def create_batch(*, name: str, kind: str, k: int, source_type: str, limit: int, created_by=None,
                 lease_seconds: int = 900, **filters) -> Batch:
    if (kind == Kind.PAIRWISE) != (source_type == "pairs"):
        raise AnnotationError("Pairwise batches take preference pairs; pointwise batches take greetings.",
                              field="source_type")
    if Batch.objects.filter(name=name).exists():
        raise AnnotationError(f"A batch named {name!r} exists already.", field="name")
    chosen = list(candidate_items(source_type=source_type, **filters)[:limit])
    if not chosen:
        raise AnnotationError("No items match that source and filter.", field="source_type")
    batch = Batch.objects.create(
        name=name, kind=kind, k=k, lease_seconds=lease_seconds, created_by=created_by,
        source={"type": source_type, "limit": limit, **{key: value for key, value in filters.items() if value}},
    )
    key = "pair" if kind == Kind.PAIRWISE else "greeting"
    Item.objects.bulk_create([Item(batch=batch, position=i, **{key: obj}) for i, obj in enumerate(chosen)])
    return batch


def guidelines_for(batch: Batch | None) -> Guidelines | None:
    if batch is not None:
        found = Guidelines.objects.filter(batch=batch).first()
        if found:
            return found
    return Guidelines.objects.filter(is_global=True).first()


def save_guidelines(*, batch: Batch | None, text: str, user) -> Guidelines:
    text = text.strip()
    if not text:
        raise AnnotationError("Guidelines cannot be empty.", field="text")
    guidelines, _ = Guidelines.objects.update_or_create(
        batch=batch, is_global=batch is None, defaults={"text": text, "updated_by": user})
    return guidelines


def _serialise_on_sqlite(batch_id: int) -> None:
    if connection.vendor == "sqlite":
        Batch.objects.filter(pk=batch_id).update(k=F("k"))  # takes SQLite's write lock now, not later


def _live(now) -> Q:
    return Q(status=Assignment.Status.DONE) | Q(status=Assignment.Status.LEASED, expires_at__gt=now)


def sides_swapped(batch_id: int, item_id: int, user_id: int) -> bool:
    """Pairwise sides per annotator: random-looking but reproducible, and stored with the lease."""
    digest = hashlib.sha256(f"zhufu-sides:{batch_id}:{item_id}:{user_id}".encode()).digest()
    return bool(digest[0] & 1)


def current_assignment(batch: Batch, user, now=None) -> Assignment | None:
    now = now or timezone.now()
    return (Assignment.objects.filter(item__batch=batch, annotator=user, status=Assignment.Status.LEASED,
                                      expires_at__gt=now)
            .select_related("item__greeting__query", "item__pair__query", "item__pair__chosen",
                            "item__pair__rejected", "item__greeting_b")
            .order_by("-leased_at", "-id").first())


def has_work(batch: Batch, user, now=None) -> bool:
    """Would next_assignment give `user` an item here? Read only: the batch list leases nothing."""
    now = now or timezone.now()
    if not batch.is_open:
        return False
    if current_assignment(batch, user, now) is not None:
        return True
    taken = (Assignment.objects.filter(item=OuterRef("pk")).filter(_live(now)).order_by()
             .values("item").annotate(n=Count("pk")).values("n"))
    return (Item.objects.filter(batch=batch).exclude(assignments__annotator=user)
            .annotate(taken=Coalesce(Subquery(taken, output_field=IntegerField()), Value(0)))
            .filter(taken__lt=batch.k).exists())


def next_assignment(batch: Batch, user, now=None) -> Assignment | None:
    """The annotator's live lease in this batch, else a new lease on an item that has room."""
    now = now or timezone.now()
    if not batch.is_open:
        return None
    with transaction.atomic():
        _serialise_on_sqlite(batch.pk)
        current = current_assignment(batch, user, now)
        if current is not None:
            return current
        taken = (Assignment.objects.filter(item=OuterRef("pk")).filter(_live(now)).order_by()
                 .values("item").annotate(n=Count("pk")).values("n"))
        open_items = (Item.objects.filter(batch=batch).exclude(assignments__annotator=user)
                      .annotate(taken=Coalesce(Subquery(taken, output_field=IntegerField()), Value(0)))
                      .filter(taken__lt=batch.k)
                      .order_by("-taken", "position"))  # finish items others started, so overlap builds up
        # Locks on items that turn out full are dropped at once (savepoint rollback releases row
        # locks), so a transaction never waits while holding another item: no deadlocks.
        try:
            with transaction.atomic():
                for item in open_items.select_for_update(skip_locked=True, of=("self",))[:8]:
                    assignment = _lease_if_room(batch, item, user, now)
                    if assignment is not None:
                        return assignment
                raise _Released
        except _Released:
            pass
        # Every open item was locked by someone else's hand-out just now: wait for them one by
        # one instead of reporting "nothing left" while items still have room.
        while (item_id := open_items.values_list("pk", flat=True).first()) is not None:
            try:
                with transaction.atomic():
                    item = Item.objects.select_for_update().get(pk=item_id)
                    assignment = _lease_if_room(batch, item, user, now)
                    if assignment is not None:
                        return assignment
                    raise _Released
            except _Released:
                open_items = open_items.exclude(pk=item_id)
    return None


class _Released(Exception):
    """Rolls a savepoint back, letting go of the item locks taken inside it."""


def _lease_if_room(batch: Batch, item: Item, user, now) -> Assignment | None:
    """Called with the item's row locked; counts again, because this statement sees every
    commit made before the lock was granted."""
    assignments = Assignment.objects.filter(item=item)
    if assignments.filter(annotator=user).exists():
        return None
    live = assignments.filter(_live(now)).count()
    if live >= batch.k:
        return None
    stale = assignments.filter(status=Assignment.Status.LEASED, expires_at__lte=now)
    if live + stale.count() >= batch.k:
        stale.update(status=Assignment.Status.EXPIRED)  # their slot goes to this annotator
    return Assignment.objects.create(
        item=item, annotator=user, leased_at=now, expires_at=now + timedelta(seconds=batch.lease_seconds),
        swapped=batch.kind == Kind.PAIRWISE and sides_swapped(batch.pk, item.pk, user.pk),
    )


def _locked_own_assignment(assignment_id: int, user) -> Assignment:
    assignment = Assignment.objects.filter(pk=assignment_id).select_related("item__batch").first()
    if assignment is None or assignment.annotator_id != user.pk:
        raise AnnotationError("This item is not assigned to you.", status=403)
    _serialise_on_sqlite(assignment.item.batch_id)
    Item.objects.select_for_update().filter(pk=assignment.item_id).first()  # serialise with hand-outs
    assignment.refresh_from_db()
    return assignment


@dataclass
class Submitted:
    rating: Rating
    created: bool  # False: this assignment had been submitted already; nothing was counted twice


def submit_rating(*, assignment_id: int, user, verdict: str = "", rubric: dict | None = None,
                  shown_choice: str = "", comment: str = "", seconds: float | None = None, now=None) -> Submitted:
    now = now or timezone.now()
    with transaction.atomic():
        assignment = _locked_own_assignment(assignment_id, user)
        if assignment.status == Assignment.Status.DONE:
            return Submitted(assignment.rating, created=False)
        if assignment.status == Assignment.Status.EXPIRED:
            raise AnnotationError("Your time on this item ran out and it went to another annotator; "
                                  "this rating was not saved. Take the next item.", status=409)
        if assignment.status == Assignment.Status.SKIPPED:
            raise AnnotationError("You skipped this item; it is no longer yours.", status=409)
        batch = assignment.item.batch
        fields: dict = {}
        if batch.kind == Kind.POINTWISE:
            if verdict not in Verdict.values:
                raise AnnotationError("请选择好或不好。 Choose Good or Bad.", field="verdict")
            fields = {"verdict": verdict, **checked_rubric(rubric)}
        else:
            if shown_choice not in Choice.values:
                raise AnnotationError("请选择左边更好、右边更好、一样或都不好。 Choose left better, right better, tie or both "
                                  "bad.", field="choice")
            flip = {Choice.A: Choice.B, Choice.B: Choice.A}
            fields = {"choice": flip.get(shown_choice, shown_choice) if assignment.swapped else shown_choice}
        elapsed = max((now - assignment.leased_at).total_seconds(), 0.0)
        # The page reports the time it was actually visible; trust it only within the lease's span.
        spent = seconds if seconds is not None and 0 <= seconds <= elapsed + 5 else elapsed
        rating = Rating.objects.create(assignment=assignment, item=assignment.item, annotator=user,
                                       comment=comment.strip()[:2000], seconds_spent=round(spent, 2),
                                       created_at=now, **fields)
        assignment.status, assignment.finished_at = Assignment.Status.DONE, now
        assignment.save(update_fields=["status", "finished_at"])
        if batch.kind == Kind.POINTWISE:
            _write_human_label(rating, batch)
        return Submitted(rating, created=True)


def checked_rubric(rubric: dict | None) -> dict:
    """The rubric's five parts, or none of them: Good/Bad stands without the rubric, but a
    weighted score needs every part, so a rubric begun must be finished (or cleared)."""
    rubric = {key: (rubric or {}).get(key) for key in RUBRIC_KEYS}
    missing = [key for key, value in rubric.items() if value is None]
    if len(missing) == len(RUBRIC_KEYS):
        return {}
    if missing:
        raise AnnotationError(f"评分表只填了一部分：请填完五项，或清空评分表（Delete）只交好/不好。 The rubric is "
                              f"half filled: rate all five parts or clear it (Delete) to give Good/Bad alone ("
                              f"{'; '.join(f'{key}: 未评 not rated' for key in missing)}).", field=missing[0])
    try:
        weighted_score(rubric)
    except ValueError as error:
        raise AnnotationError(str(error), field=str(error).split()[0]) from None
    return rubric


def _write_human_label(rating: Rating, batch: Batch) -> None:
    """The rest of the app reads human verdicts as corpus Labels (source_kind=human); without a
    rubric the label has no score."""
    score = None if rating.weighted_score is None else round((rating.weighted_score - 1.0) / 2.0, 4)
    Label.objects.update_or_create(
        greeting_id=rating.item.greeting_id, source_kind=Label.SourceKind.HUMAN,
        source_name=rating.annotator.get_username(),
        defaults={"value": rating.verdict, "score": score,
                  "detail": {"rubric": rating.rubric, "weighted_score": rating.weighted_score,
                             "comment": rating.comment, "batch_id": batch.pk, "batch": batch.name}},
    )


def skip(*, assignment_id: int, user, now=None) -> None:
    now = now or timezone.now()
    with transaction.atomic():
        assignment = _locked_own_assignment(assignment_id, user)
        if assignment.status != Assignment.Status.LEASED:
            raise AnnotationError("Only an item you are working on can be skipped.", status=409)
        assignment.status, assignment.finished_at = Assignment.Status.SKIPPED, now
        assignment.save(update_fields=["status", "finished_at"])


def undo_last(*, batch: Batch, user, now=None) -> Assignment:
    """Take back the annotator's last rating in this batch and lease the item to them again."""
    now = now or timezone.now()
    with transaction.atomic():
        _serialise_on_sqlite(batch.pk)
        last = (Assignment.objects.filter(item__batch=batch, annotator=user, status=Assignment.Status.DONE)
                .order_by("-finished_at", "-id").first())
        if last is None:
            raise AnnotationError("There is no rating of yours to undo in this batch.", status=409)
        Item.objects.select_for_update().filter(pk=last.item_id).first()
        if Settlement.objects.filter(item_id=last.item_id).exists():
            raise AnnotationError("An admin has settled this item already; it cannot be undone.", status=409)
        Rating.objects.filter(assignment=last).delete()
        Label.objects.filter(greeting_id=last.item.greeting_id, source_kind=Label.SourceKind.HUMAN,
                             source_name=user.get_username(), detail__batch_id=batch.pk).delete()
        last.status, last.finished_at = Assignment.Status.LEASED, None
        last.leased_at, last.expires_at = now, now + timedelta(seconds=batch.lease_seconds)
        last.save(update_fields=["status", "finished_at", "leased_at", "expires_at"])
        return last


@dataclass
class Progress:
    mine: int
    items: int
    slots_done: int
    slots: int

    @property
    def percent(self) -> int:
        return round(100 * self.slots_done / self.slots) if self.slots else 0


def progress(batch: Batch, user) -> Progress:
    items = batch.items.count()
    done = Assignment.objects.filter(item__batch=batch, status=Assignment.Status.DONE)
    return Progress(mine=done.filter(annotator=user).count(), items=items, slots_done=done.count(),
                    slots=items * batch.k)


def answer(rating: Rating) -> str:
    return rating.verdict or rating.choice


def disagreements(batch: Batch | None = None, include_settled: bool = True) -> list[dict]:
    """Items with two or more ratings that do not all give the same answer."""
    ratings = Rating.objects.select_related("annotator", "item__batch", "item__greeting__query",
                                            "item__pair__query", "item__pair__chosen", "item__pair__rejected", "item__greeting_b")
    if batch is not None:
        ratings = ratings.filter(item__batch=batch)
    by_item: dict[int, list[Rating]] = {}
    for rating in ratings.order_by("item_id", "id"):
        by_item.setdefault(rating.item_id, []).append(rating)
    settled = {s.item_id: s for s in Settlement.objects.filter(item_id__in=by_item)}
    out = []
    for item_id, item_ratings in by_item.items():
        if len(item_ratings) < 2 or len({answer(r) for r in item_ratings}) < 2:
            continue
        if not include_settled and item_id in settled:
            continue
        out.append({"item": item_ratings[0].item, "ratings": item_ratings, "settlement": settled.get(item_id)})
    return out


def settle(*, item_id: int, user, answer_value: str, note: str = "") -> Settlement:
    item = Item.objects.select_related("batch").filter(pk=item_id).first()
    if item is None:
        raise AnnotationError("No such item.", status=404)
    if not any(d["item"].pk == item.pk for d in disagreements(item.batch)):
        raise AnnotationError("Only items whose annotators disagree are settled here.", status=409)
    if item.batch.kind == Kind.POINTWISE:
        if answer_value not in Verdict.values:
            raise AnnotationError("Settle a pointwise item as good or bad.", field="answer")
        values = {"verdict": answer_value, "choice": ""}
    else:
        if answer_value not in Choice.values:
            raise AnnotationError("Settle a pairwise item as a, b, tie or both_bad.", field="answer")
        values = {"verdict": "", "choice": answer_value}
    settlement, _ = Settlement.objects.update_or_create(
        item=item, defaults={**values, "note": note.strip(), "settled_by": user})
    return settlement
