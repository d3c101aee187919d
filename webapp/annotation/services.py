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
                            "item__pair__rejected")
            .order_by("-leased_at", "-id").first())


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
                raise AnnotationError("Choose Good or Bad.", field="verdict")
            rubric = rubric or {}
            for key in RUBRIC_KEYS:
                if rubric.get(key) is None:
                    raise AnnotationError(f"Rate every rubric part; {key} is missing.", field=key)
            try:
                weighted_score(rubric)
            except ValueError as error:
                raise AnnotationError(str(error), field=str(error).split()[0]) from None
            fields = {"verdict": verdict, **{key: rubric[key] for key in RUBRIC_KEYS}}
        else:
            if shown_choice not in Choice.values:
                raise AnnotationError("Choose A better, B better, tie or both bad.", field="choice")
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


def _write_human_label(rating: Rating, batch: Batch) -> None:
    """The rest of the app reads human verdicts as corpus Labels (source_kind=human)."""
    Label.objects.update_or_create(
        greeting_id=rating.item.greeting_id, source_kind=Label.SourceKind.HUMAN,
        source_name=rating.annotator.get_username(),
        defaults={"value": rating.verdict, "score": round((rating.weighted_score - 1.0) / 2.0, 4),
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
                                            "item__pair__query", "item__pair__chosen", "item__pair__rejected")
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
                               "item__pair__chosen", "item__pair__rejected").order_by("item__position", "id"))
    for r in ratings:
        item = r.item
        row = {"batch": batch.name, "kind": batch.kind, "k": batch.k, "position": item.position,
               "query": item.query.text, "annotator": r.annotator.get_username(), "annotator_id": r.annotator_id,
               "leased_at": r.assignment.leased_at.isoformat(), "submitted_at": r.created_at.isoformat(),
               "seconds_spent": r.seconds_spent, "comment": r.comment}
        if item.greeting_id:
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


def llamafactory_pairs(batch: Batch | None = None) -> list[dict]:
    """Human preferences for reward-model training, in LlamaFactory's pairwise format: per
    pairwise item, the settlement or else the majority vote, when it is A or B (ties left out)."""
    from webapp.annotation.metrics import majority

    items = Item.objects.filter(pair__isnull=False).select_related(
        "pair__query", "pair__chosen", "pair__rejected", "settlement")
    if batch is not None:
        items = items.filter(batch=batch)
    votes: dict[int, list[str]] = {}
    for item_id, choice in Rating.objects.filter(item__in=items).values_list("item_id", "choice"):
        votes.setdefault(item_id, []).append(choice)
    out = []
    for item in items.filter(pk__in=votes).order_by("batch_id", "position"):
        settlement = getattr(item, "settlement", None)
        decided = settlement.choice if settlement else majority(votes[item.pk])
        if decided not in (Choice.A, Choice.B):
            continue
        better, worse = (item.pair.chosen, item.pair.rejected) if decided == Choice.A else (
            item.pair.rejected, item.pair.chosen)
        out.append({"conversations": [{"from": "human", "value": item.pair.query.text}],
                    "chosen": {"from": "gpt", "value": better.text},
                    "rejected": {"from": "gpt", "value": worse.text}})
    return out


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
        if not isinstance(rubric, dict):
            raise bad("rubric must be an object")
        try:
            weighted_score({key: rubric.get(key) for key in RUBRIC_KEYS})
        except (ValueError, TypeError) as error:
            raise bad(f"rubric: {error}") from None
        fields = {"verdict": row["verdict"], **{key: rubric[key] for key in RUBRIC_KEYS}}
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
            key = "greeting" if batch.kind == Kind.POINTWISE else "pair"
            item = Item.objects.filter(batch=batch, **{key: row["target"]}).first()
            if item is None:
                last = batch.items.aggregate(m=Max("position"))["m"]
                position = 0 if last is None else last + 1
                item = Item.objects.create(batch=batch, position=position, **{key: row["target"]})
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
