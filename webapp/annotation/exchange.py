"""Ratings in and out: a batch's ratings exported as JSON Lines and imported back (each line checked, the
bad ones named), and decided pairwise votes as corpus preference pairs (source human) in LlamaFactory
JSON with their provenance."""
from __future__ import annotations

import json
from dataclasses import dataclass, field

from django.contrib.auth import get_user_model
from django.db import transaction
from django.db.models import Count, Max
from django.utils import timezone
from django.utils.dateparse import parse_datetime

from webapp.annotation.metrics import pair_outcome
from webapp.annotation.models import (Assignment, Batch, Choice, HumanPreference, Item, Kind, Rating, Verdict,
                                      pairwise_items_q)
from webapp.annotation.services import AnnotationError, checked_rubric, _write_human_label
from webapp.corpus.models import Greeting, PreferencePair


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
