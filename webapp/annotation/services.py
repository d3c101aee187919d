"""What the annotation views do: build batches, hand out items safely under concurrency, take
ratings, settle disagreements, and move ratings in and out as JSON Lines.

Handing out: the candidate items are locked with SELECT ... FOR UPDATE SKIP LOCKED (PostgreSQL),
then counted again with a fresh statement while the lock is held, because the first query's
snapshot may predate another annotator's commit. Every write to an item's assignments happens
under that item's lock, so no item ever has more than k leased-or-done assignments. SQLite has
no row locks: there each hand-out first takes the database's write lock (a no-op UPDATE) so the
transactions run one at a time."""
from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from datetime import timedelta

from django.contrib.auth import get_user_model
from django.db import connection, transaction
from django.db.models import Count, F, IntegerField, Max, OuterRef, Q, Subquery, Value
from django.db.models.functions import Coalesce
from django.utils import timezone
from django.utils.dateparse import parse_datetime

from training.data.prompts import PromptFileError, read_prompts
from webapp.annotation.metrics import pair_outcome
from webapp.annotation.models import (Assignment, Batch, Choice, Guidelines, HumanPreference, Item, Kind, Rating,
                                      Settlement, Verdict, pairwise_items_q)
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


# --- Batches -----------------------------------------------------------------------------

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


# --- Handing out items -------------------------------------------------------------------

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


# --- Review --------------------------------------------------------------------------------

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


# --- Export and import -------------------------------------------------------------------

def _greeting_source(greeting: Greeting) -> dict:
    return {"greeting_id": greeting.pk, "content_hash": greeting.content_hash, "source": greeting.source,
            "origin": greeting.origin, "checkpoint_name": greeting.checkpoint_name}


def export_rows(batch: Batch):
    """One dict per rating, for JSON Lines."""
    ratings = (Rating.objects.filter(item__batch=batch)
               .select_related("annotator", "assignment", "item__greeting__query", "item__pair__query",
                               "item__pair__chosen", "item__pair__rejected", "item__greeting_b").order_by("item__position", "id"))
    for r in ratings:
        item = r.item
        row = {"batch": batch.name, "kind": batch.kind, "k": batch.k, "position": item.position,
               "query": item.query.text, "annotator": r.annotator.get_username(), "annotator_id": r.annotator_id,
               "leased_at": r.assignment.leased_at.isoformat(), "submitted_at": r.created_at.isoformat(),
               "seconds_spent": r.seconds_spent, "comment": r.comment}
        if item.greeting_b_id:
            a, b = item.sides
            row.update(item_source={"type": "comparison", "content_hash": a.content_hash,
                                    "a": _greeting_source(a), "b": _greeting_source(b)},
                       a=a.text, b=b.text, choice=r.choice, shown_swapped=r.assignment.swapped)
        elif item.greeting_id:
            row.update(item_source={"type": "greeting", **_greeting_source(item.greeting)},
                       greeting=item.greeting.text, verdict=r.verdict, rubric=r.rubric,
                       weighted_score=r.weighted_score)
        else:
            pair = item.pair
            row.update(item_source={"type": "pair", "pair_id": pair.pk, "content_hash": pair.content_hash,
                                    "source": pair.source, "origin": pair.origin,
                                    "a": _greeting_source(pair.chosen), "b": _greeting_source(pair.rejected)},
                       a=pair.chosen.text, b=pair.rejected.text, choice=r.choice, shown_swapped=r.assignment.swapped)
        yield row


def export_jsonl(batch: Batch) -> str:
    return "".join(json.dumps(row, ensure_ascii=False) + "\n" for row in export_rows(batch))


def decided_pairwise_items(batch: Batch | None = None):
    """(item, PairOutcome) for every rated pairwise item, in batch and position order."""
    items = Item.objects.filter(pairwise_items_q()).select_related(
        "batch", "pair__query", "pair__chosen", "pair__rejected", "greeting__query", "greeting_b", "settlement")
    if batch is not None:
        items = items.filter(batch=batch)
    votes: dict[int, list[str]] = {}
    for item_id, choice in Rating.objects.filter(item__in=items).values_list("item_id", "choice"):
        votes.setdefault(item_id, []).append(choice)
    for item in items.filter(pk__in=votes).order_by("batch_id", "position"):
        settlement = getattr(item, "settlement", None)
        yield item, pair_outcome(votes[item.pk], settlement.choice if settlement else "")


def llamafactory_pairs(batch: Batch | None = None) -> list[dict]:
    """Human preferences for reward-model training, in LlamaFactory's pairwise format: per
    pairwise item, the settlement or else the majority vote, when it is A or B (ties left out)."""
    out = []
    for item, outcome in decided_pairwise_items(batch):
        if outcome.choice not in (Choice.A, Choice.B):
            continue
        a, b = item.sides
        better, worse = (a, b) if outcome.choice == Choice.A else (b, a)
        out.append({"conversations": [{"from": "human", "value": item.query.text}],
                    "chosen": {"from": "gpt", "value": better.text},
                    "rejected": {"from": "gpt", "value": worse.text}})
    return out


@dataclass
class HumanPairsSummary:
    created: int = 0  # new corpus pairs
    linked: int = 0  # items whose preference was in the corpus already (e.g. a corpus pair people agree with)
    updated: int = 0  # items whose decided pair changed (e.g. after a settlement or more votes)
    unchanged: int = 0
    left_out: dict = field(default_factory=dict)  # why -> count: tie, both_bad, split, same_text


HUMAN_PAIR_ORIGIN = "annotation:"


@transaction.atomic
def record_human_preferences(batch: Batch | None = None) -> HumanPairsSummary:
    """Turn decided pairwise items into corpus PreferencePair(source=human) for reward-model training.

    The decision is the admin's settlement when there is one, else the strict majority of the
    votes (annotation.metrics.pair_outcome). Only A-better or B-better make a pair; ties and
    "both bad" say neither is preferred, and a split vote (no majority, not settled: send it to
    the review queue) says nothing yet: those are counted in `left_out`, never guessed.
    Provenance: the pair's origin is "annotation:<batch name>"; `HumanPreference` keeps the
    item, the votes, the agreement (share of votes for the decided side) and how it was decided.
    Idempotent: run again after more votes or a settlement, an item's pair follows the decision
    (an earlier pair this item made is dropped when no other item uses it)."""
    summary = HumanPairsSummary()
    for item, outcome in decided_pairwise_items(batch):
        existing = HumanPreference.objects.filter(item=item).select_related("pair").first()
        reason = outcome.how if outcome.choice is None else (
            outcome.choice if outcome.choice not in (Choice.A, Choice.B) else "")
        a, b = item.sides
        if not reason and a.content_hash == b.content_hash:
            reason = "same_text"
        if reason:
            summary.left_out[reason] = summary.left_out.get(reason, 0) + 1
            if existing:
                _drop_human_pair(existing)
            continue
        better, worse = (a, b) if outcome.choice == Choice.A else (b, a)
        pair = PreferencePair.objects.filter(
            content_hash=PreferencePair.hash_for(item.query.content_hash, better.text, worse.text)).first()
        if pair is None:
            pair = PreferencePair.objects.create(query=item.query, chosen=better, rejected=worse,
                                                 source=PreferencePair.Source.HUMAN,
                                                 origin=f"{HUMAN_PAIR_ORIGIN}{item.batch.name}"[:300])
            summary.created += 1
        elif existing is None:
            summary.linked += 1
        elif existing.pair_id != pair.pk:
            summary.updated += 1
        else:
            summary.unchanged += 1
        provenance = {"pair": pair, "votes": outcome.votes, "agreement": round(outcome.agreement, 4),
                      "decision": outcome.how}
        if existing and existing.pair_id != pair.pk:
            _drop_human_pair(existing)
            existing = None
        HumanPreference.objects.update_or_create(item=item, defaults=provenance)
    return summary


def human_pair_records(batch: Batch | None = None) -> list[dict]:
    """The recorded human pairs (record_human_preferences) in LlamaFactory's pairwise format, the
    reward-model trainer's input (train_reward_model --pairs, the reward_model job's pair files),
    each with its provenance under an extra "provenance" key that readers ignore."""
    preferences = HumanPreference.objects.select_related(
        "item__batch", "pair__query", "pair__chosen", "pair__rejected").order_by("item__batch_id", "item__position")
    if batch is not None:
        preferences = preferences.filter(item__batch=batch)
    return [{"conversations": [{"from": "human", "value": h.pair.query.text}],
             "chosen": {"from": "gpt", "value": h.pair.chosen.text},
             "rejected": {"from": "gpt", "value": h.pair.rejected.text},
             "provenance": {"batch": h.item.batch.name, "position": h.item.position, "votes": h.votes,
                            "agreement": h.agreement, "decision": h.decision, "pair_id": h.pair_id,
                            "chosen_checkpoint": h.pair.chosen.checkpoint_name,
                            "rejected_checkpoint": h.pair.rejected.checkpoint_name}}
            for h in preferences]


def _drop_human_pair(preference: HumanPreference) -> None:
    pair = preference.pair
    preference.delete()
    if pair.source == PreferencePair.Source.HUMAN and not HumanPreference.objects.filter(pair=pair).exists():
        pair.delete()


@dataclass
class ImportSummary:
    batches: set = field(default_factory=set)
    created: int = 0
    already_present: int = 0


def _parse_line(number: int, line: str, users: dict) -> dict:
    def bad(message):
        return AnnotationError(f"line {number}: {message}", field="file")

    try:
        row = json.loads(line)
    except json.JSONDecodeError as error:
        raise bad(f"not valid JSON ({error.msg})") from None
    if not isinstance(row, dict):
        raise bad("expected a JSON object")
    for key in ("batch", "kind", "annotator", "item_source"):
        if not row.get(key):
            raise bad(f"missing {key!r}")
    if row["kind"] not in Kind.values:
        raise bad(f"kind must be pointwise or pairwise, not {row['kind']!r}")
    username = str(row["annotator"])
    if username not in users:
        users[username] = get_user_model().objects.filter(username=username).first()
    if users[username] is None:
        raise bad(f"no user named {username!r}")
    source = row["item_source"]
    if not isinstance(source, dict) or not source.get("content_hash"):
        raise bad("item_source needs a content_hash")
    if row["kind"] == Kind.POINTWISE:
        target = Greeting.objects.filter(content_hash=source["content_hash"]).first()
        if target is None:
            raise bad("its greeting is not in the corpus (import the corpus first)")
        if row.get("verdict") not in Verdict.values:
            raise bad("verdict must be good or bad")
        rubric = row.get("rubric")
        if rubric is None:
            rubric = {}
        if not isinstance(rubric, dict):
            raise bad("rubric must be an object")
        try:
            fields = {"verdict": row["verdict"], **checked_rubric(rubric)}
        except (AnnotationError, TypeError) as error:
            raise bad(f"rubric: {error}") from None
    elif source.get("type") == "comparison":
        sides = [Greeting.objects.filter(content_hash=(source.get(side) or {}).get("content_hash") or "").first()
                 for side in ("a", "b")]
        if None in sides:
            raise bad("a compared greeting is not in the corpus (import the corpus first)")
        target = {"greeting": sides[0], "greeting_b": sides[1]}
        if row.get("choice") not in Choice.values:
            raise bad("choice must be a, b, tie or both_bad")
        fields = {"choice": row["choice"]}
    else:
        target = PreferencePair.objects.filter(content_hash=source["content_hash"]).first()
        if target is None:
            raise bad("its preference pair is not in the corpus (import the corpus first)")
        if row.get("choice") not in Choice.values:
            raise bad("choice must be a, b, tie or both_bad")
        fields = {"choice": row["choice"]}
    times = {}
    for key in ("leased_at", "submitted_at"):
        value = parse_datetime(str(row.get(key) or "")) if row.get(key) else None
        if row.get(key) and value is None:
            raise bad(f"{key} is not an ISO date-time")
        times[key] = value or timezone.now()
    seconds = row.get("seconds_spent", 0)
    if not isinstance(seconds, (int, float)) or seconds < 0:
        raise bad("seconds_spent must be a non-negative number")
    return {"batch": str(row["batch"]), "kind": row["kind"], "k": row.get("k"), "user": users[username],
            "target": target, "fields": fields, "times": times, "seconds": float(seconds),
            "comment": str(row.get("comment") or ""), "swapped": bool(row.get("shown_swapped", False))}


def import_jsonl(text: str, user) -> ImportSummary:
    """Ratings from JSON Lines (export_jsonl's format). Every line is checked before anything is
    written, and the writes share one transaction: a bad file changes nothing."""
    users: dict = {}
    parsed = [_parse_line(number, line, users) for number, line in enumerate(text.splitlines(), 1) if line.strip()]
    if not parsed:
        raise AnnotationError("The file holds no ratings.", field="file")
    summary = ImportSummary()
    with transaction.atomic():
        batches: dict[str, Batch] = {}
        for number, row in enumerate(parsed, 1):
            batch = batches.get(row["batch"])
            if batch is None:
                batch = Batch.objects.filter(name=row["batch"]).first() or Batch.objects.create(
                    name=row["batch"], kind=row["kind"], created_by=user, is_open=False,
                    k=max(1, min(20, int(row["k"] or 1))), source={"type": "import"})
                batches[row["batch"]] = batch
            if batch.kind != row["kind"]:
                raise AnnotationError(f"batch {batch.name!r} is {batch.kind}, a rating says {row['kind']}",
                                      field="file")
            target = row["target"] if isinstance(row["target"], dict) else {
                "greeting" if batch.kind == Kind.POINTWISE else "pair": row["target"]}
            item = Item.objects.filter(batch=batch, **target).first()
            if item is None:
                last = batch.items.aggregate(m=Max("position"))["m"]
                position = 0 if last is None else last + 1
                item = Item.objects.create(batch=batch, position=position, **target)
            if Assignment.objects.filter(item=item, annotator=row["user"]).exists():
                summary.already_present += 1
                continue
            assignment = Assignment.objects.create(
                item=item, annotator=row["user"], status=Assignment.Status.DONE, swapped=row["swapped"],
                leased_at=row["times"]["leased_at"], expires_at=row["times"]["submitted_at"],
                finished_at=row["times"]["submitted_at"])
            rating = Rating.objects.create(assignment=assignment, item=item, annotator=row["user"],
                                           comment=row["comment"], seconds_spent=row["seconds"],
                                           created_at=row["times"]["submitted_at"], **row["fields"])
            if batch.kind == Kind.POINTWISE:
                _write_human_label(rating, batch)
            summary.created += 1
            summary.batches.add(batch.name)
        for batch in batches.values():  # keep "at most k per item" true for what was imported
            most = max(Assignment.objects.filter(item__batch=batch).exclude(status=Assignment.Status.SKIPPED)
                       .values("item").annotate(n=Count("pk")).values_list("n", flat=True), default=0)
            if most > batch.k:
                if most > 20:
                    raise AnnotationError(f"batch {batch.name!r} would have {most} ratings on one item (at most 20)",
                                          field="file")
                batch.k = most
                batch.save(update_fields=["k"])
    return summary


# --- Batches generated by checkpoints ------------------------------------------------------

MAX_BUILD_PROMPTS = 1000
MAX_PER_PROMPT = 20


def clean_prompts(prompts) -> list[str]:
    """The prompt set as distinct normalised queries, in order; refusals name the field `prompts`."""
    from webapp.corpus.models import QUERY_MAX_LENGTH, normalise_text
    from generation.greeting import control_characters

    if isinstance(prompts, str) or not hasattr(prompts, "__iter__"):
        raise AnnotationError("prompts must be a list of queries.", field="prompts")
    out, seen = [], set()
    for number, prompt in enumerate(prompts, 1):
        if not isinstance(prompt, str):
            raise AnnotationError(f"prompt {number} is not text.", field="prompts")
        text = normalise_text(prompt)
        if not text or text in seen:
            continue
        if len(text) > QUERY_MAX_LENGTH:
            raise AnnotationError(f"prompt {number} is longer than {QUERY_MAX_LENGTH} characters.", field="prompts")
        bad = control_characters(text)
        if bad:
            raise AnnotationError(f"prompt {number} has control characters ({', '.join(bad[:3])}).", field="prompts")
        seen.add(text)
        out.append(text)
    if not out:
        raise AnnotationError("Give at least one prompt (one query a line).", field="prompts")
    if len(out) > MAX_BUILD_PROMPTS:
        raise AnnotationError(f"At most {MAX_BUILD_PROMPTS} prompts per batch; got {len(out)}.", field="prompts")
    return out


def prompts_from_file(path, name: str) -> list[str]:
    """Queries from a file: a verl parquet (its prompts) or anything else as one query a line."""
    fmt = "verl" if str(name).lower().endswith(".parquet") else "queries"
    try:
        return read_prompts(path, field="prompts_file", fmt=fmt, name=name, require=False)
    except PromptFileError as error:
        raise AnnotationError(error.message, field=error.field) from None


def prompts_from_upload(uploaded) -> list[str]:
    """prompts_from_file for an uploaded file (Django's UploadedFile), via a temporary copy."""
    import tempfile
    from pathlib import Path

    suffix = ".parquet" if uploaded.name.lower().endswith(".parquet") else ".txt"
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / f"prompts{suffix}"
        with open(path, "wb") as out:
            for chunk in uploaded.chunks():
                out.write(chunk)
        return prompts_from_file(path, uploaded.name)


def _checkpoint(value, field_name: str):
    from webapp.checkpoints.models import Checkpoint
    from webapp.checkpoints.services import RegistryError, resolve_checkpoint

    if value is None or value == "":
        raise AnnotationError("Choose a checkpoint.", field=field_name)
    try:
        checkpoint = value if isinstance(value, Checkpoint) else resolve_checkpoint(str(value))
    except RegistryError as error:
        raise AnnotationError(str(error), field=field_name) from None
    problem = checkpoint.missing_files()
    if problem:
        raise AnnotationError(f"{checkpoint.name} cannot be loaded: {problem}", field=field_name)
    return checkpoint


def _start_build(*, checkpoint_a, checkpoint_b, prompts, n_per_prompt, kind, k, name, created_by, lease_seconds,
                 temperature, top_p, max_tokens, seed, default_name):
    from webapp.annotation.models import BatchBuild

    if kind not in Kind.values:
        raise AnnotationError(f"kind must be pointwise or pairwise, not {kind!r}.", field="kind")
    if not isinstance(n_per_prompt, int) or not 1 <= n_per_prompt <= MAX_PER_PROMPT:
        raise AnnotationError(f"n_per_prompt must be 1 to {MAX_PER_PROMPT}.", field="n_per_prompt")
    if kind == Kind.PAIRWISE and checkpoint_b is None and n_per_prompt < 2:
        raise AnnotationError("A pairwise batch from one checkpoint compares its outputs with each other: "
                              "n_per_prompt must be at least 2.", field="n_per_prompt")
    if not isinstance(k, int) or not 1 <= k <= 20:
        raise AnnotationError("k (annotators per item) must be 1 to 20.", field="k")
    if not 0 <= float(temperature) <= 2 or not 0 < float(top_p) <= 1 or not 1 <= int(max_tokens) <= 512:
        raise AnnotationError("temperature must be 0 to 2, top_p in (0, 1], max_tokens 1 to 512.", field="params")
    prompts = clean_prompts(prompts)
    name = (name or "").strip()
    with transaction.atomic():
        if name and Batch.objects.filter(name=name).exists():
            raise AnnotationError(f"A batch named {name!r} exists already.", field="name")
        name = name or _free_name(f"{default_name} {timezone.now():%Y-%m-%d %H:%M}")
        batch = Batch.objects.create(
            name=name[:200], kind=kind, k=k, lease_seconds=lease_seconds, created_by=created_by, is_open=False,
            source={"type": "checkpoint", "checkpoint": checkpoint_a.name,
                    **({"checkpoint_b": checkpoint_b.name} if checkpoint_b else {}),
                    "prompts": len(prompts), "n_per_prompt": n_per_prompt})
        build = BatchBuild.objects.create(
            batch=batch, checkpoint_a=checkpoint_a, checkpoint_b=checkpoint_b, prompts=prompts,
            n_per_prompt=n_per_prompt, total=len(prompts) * (2 if checkpoint_b else 1),
            params={"temperature": float(temperature), "top_p": float(top_p), "max_tokens": int(max_tokens),
                    "seed": int(seed)})
        transaction.on_commit(lambda: enqueue_build(build.pk))
    return batch


def _free_name(base: str) -> str:
    name, number = base, 1
    while Batch.objects.filter(name=name).exists():
        number += 1
        name = f"{base} ({number})"
    return name


def enqueue_build(build_id: int) -> None:
    from webapp.annotation.tasks import build_batch

    build_batch.delay(build_id)


def create_batch_from_checkpoint(checkpoint, prompts, n_per_prompt: int = 2, kind: str = Kind.POINTWISE, k: int = 2,
                                 *, name: str = "", created_by=None, lease_seconds: int = 900,
                                 temperature: float = 0.8, top_p: float = 0.95, max_tokens: int = 96,
                                 seed: int = 0) -> Batch:
    """An annotation batch of `checkpoint`'s outputs on `prompts`, generated in the background.

    checkpoint: a checkpoints.Checkpoint, or its id or name. prompts: an iterable of query
    strings (normalised; blanks and repeats dropped; at most MAX_BUILD_PROMPTS). n_per_prompt:
    samples per prompt (1-20). kind: "pointwise" (each distinct output is an item) or "pairwise"
    (outputs of one prompt compared two by two, so n_per_prompt >= 2). k: annotators per item.
    name: the batch's name (annotators see it: keep model names out of it; default
    "checkpoint outputs <time>"). temperature, top_p, max_tokens, seed: sampling (prompt i
    uses seed + i, so a batch can be made again).

    Returns the Batch at once, closed and empty; ``batch.build`` (BatchBuild) shows status and
    done/total. A Celery task on the generate queue (webapp.generate.build_annotation_batch)
    generates through the serving engine, stores the outputs as corpus Greetings
    (source=model, checkpoint_name, origin "annotation-build:<id>"), adds the items and opens
    the batch. Raises AnnotationError (with .field) on bad input."""
    return _start_build(checkpoint_a=_checkpoint(checkpoint, "checkpoint"), checkpoint_b=None, prompts=prompts,
                        n_per_prompt=n_per_prompt, kind=kind, k=k, name=name, created_by=created_by,
                        lease_seconds=lease_seconds, temperature=temperature, top_p=top_p, max_tokens=max_tokens,
                        seed=seed, default_name="checkpoint outputs")


def create_pairwise_batch_from_checkpoints(checkpoint_a, checkpoint_b, prompts, n_per_prompt: int = 1, k: int = 2,
                                           *, name: str = "", created_by=None, lease_seconds: int = 900,
                                           temperature: float = 0.8, top_p: float = 0.95, max_tokens: int = 96,
                                           seed: int = 0) -> Batch:
    """A blind side-by-side batch: per prompt, n_per_prompt outputs of each checkpoint, paired
    in order (A's i-th with B's i-th). Annotators see neither name and each gets the sides in
    their own random order; ratings are stored in the item's order (A = checkpoint_a).

    Same arguments and behaviour as create_batch_from_checkpoint (kind is pairwise; default
    name "blind comparison <time>"); checkpoint_a and checkpoint_b must differ. Pairs whose two
    outputs are the same text are left out (build.summary counts them)."""
    a = _checkpoint(checkpoint_a, "checkpoint_a")
    b = _checkpoint(checkpoint_b, "checkpoint_b")
    if a.pk == b.pk:
        raise AnnotationError("Compare two different checkpoints.", field="checkpoint_b")
    return _start_build(checkpoint_a=a, checkpoint_b=b, prompts=prompts, n_per_prompt=n_per_prompt,
                        kind=Kind.PAIRWISE, k=k, name=name, created_by=created_by, lease_seconds=lease_seconds,
                        temperature=temperature, top_p=top_p, max_tokens=max_tokens, seed=seed,
                        default_name="blind comparison")
