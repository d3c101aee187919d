"""Annotation batches, the items in them, who holds which item (assignments with a lease),
the ratings people give, an admin's settlement of a disagreement, and the guidelines.

Invariants the tables keep themselves: one assignment per (item, annotator); one rating per
assignment; rubric parts within 1..3 (all five or none: the rubric is optional); a pointwise item names a greeting; a pairwise item names
either a preference pair (A = its chosen, B = its rejected) or two greetings compared blind
(A = ``greeting``, B = ``greeting_b``, e.g. two checkpoints' outputs: no preference is implied
before people vote)."""
from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import models
from django.db.models import Q
from django.utils import timezone

from webapp.annotation.rubric import RUBRIC, RUBRIC_KEYS, RUBRIC_MAX, RUBRIC_MIN, weighted_score
from webapp.corpus.models import Greeting, PreferencePair


class Kind(models.TextChoices):
    POINTWISE = "pointwise", "pointwise (Good/Bad + rubric)"
    PAIRWISE = "pairwise", "pairwise (A/B/tie/both bad)"


class Verdict(models.TextChoices):
    GOOD = "good", "Good"
    BAD = "bad", "Bad"


class Choice(models.TextChoices):
    """Stored in the pair's own order (A = the pair's `chosen`, B = its `rejected`), whatever
    side the annotator saw it on."""

    A = "a", "A better"
    B = "b", "B better"
    TIE = "tie", "tie"
    BOTH_BAD = "both_bad", "both bad"


class Batch(models.Model):
    name = models.CharField(max_length=200, unique=True)
    kind = models.CharField(max_length=10, choices=Kind.choices)
    k = models.PositiveSmallIntegerField(default=2, help_text="Annotators per item.")
    lease_seconds = models.PositiveIntegerField(default=900, help_text="An unfinished item goes back after this.")
    source = models.JSONField(default=dict, blank=True, help_text="How the items were chosen.")
    is_open = models.BooleanField(default=True)
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        verbose_name_plural = "batches"
        constraints = [
            models.CheckConstraint(condition=Q(k__gte=1) & Q(k__lte=20), name="annotation_batch_k_range"),
            models.CheckConstraint(condition=Q(lease_seconds__gte=30), name="annotation_batch_lease_min"),
        ]

    def __str__(self):
        return self.name


def pairwise_items_q(prefix: str = "") -> Q:
    """Items (or rows reaching them through `prefix`, e.g. "item__") of a pairwise kind."""
    return Q(**{f"{prefix}pair__isnull": False}) | Q(**{f"{prefix}greeting_b__isnull": False})


def pointwise_items_q(prefix: str = "") -> Q:
    return Q(**{f"{prefix}greeting__isnull": False, f"{prefix}greeting_b__isnull": True})


class Item(models.Model):
    batch = models.ForeignKey(Batch, on_delete=models.CASCADE, related_name="items")
    position = models.PositiveIntegerField()
    greeting = models.ForeignKey(Greeting, null=True, blank=True, on_delete=models.CASCADE, related_name="+")
    pair = models.ForeignKey(PreferencePair, null=True, blank=True, on_delete=models.CASCADE, related_name="+")
    greeting_b = models.ForeignKey(Greeting, null=True, blank=True, on_delete=models.CASCADE, related_name="+",
                                   help_text="Side B of a blind comparison (side A is `greeting`).")

    class Meta:
        ordering = ["batch", "position"]
        constraints = [
            models.CheckConstraint(
                condition=(Q(greeting__isnull=False) & Q(pair__isnull=True))
                | (Q(greeting__isnull=True) & Q(pair__isnull=False) & Q(greeting_b__isnull=True)),
                name="annotation_item_greeting_xor_pair",
            ),
            models.CheckConstraint(condition=Q(greeting_b__isnull=True) | ~Q(greeting_b=models.F("greeting")),
                                   name="annotation_item_sides_differ"),
            models.UniqueConstraint(fields=["batch", "position"], name="annotation_item_unique_position"),
            models.UniqueConstraint(fields=["batch", "greeting"], condition=Q(greeting_b__isnull=True),
                                    name="annotation_item_unique_greeting"),
            models.UniqueConstraint(fields=["batch", "pair"], name="annotation_item_unique_pair"),
            models.UniqueConstraint(fields=["batch", "greeting", "greeting_b"], name="annotation_item_unique_sides"),
        ]

    def __str__(self):
        return f"{self.batch} #{self.position}"

    @property
    def query(self):
        return (self.greeting or self.pair).query

    @property
    def is_pairwise(self) -> bool:
        return self.pair_id is not None or self.greeting_b_id is not None

    @property
    def sides(self) -> tuple[Greeting, Greeting]:
        """(A, B) in the item's own order; a rating's choice refers to this order."""
        if self.pair_id is not None:
            return self.pair.chosen, self.pair.rejected
        return self.greeting, self.greeting_b


class Assignment(models.Model):
    class Status(models.TextChoices):
        LEASED = "leased"
        DONE = "done"
        SKIPPED = "skipped"
        EXPIRED = "expired"  # the lease ran out and the slot went to someone else

    item = models.ForeignKey(Item, on_delete=models.CASCADE, related_name="assignments")
    annotator = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="assignments")
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.LEASED)
    swapped = models.BooleanField(default=False, help_text="Pairwise: the pair's B is shown on the left.")
    leased_at = models.DateTimeField(default=timezone.now)
    expires_at = models.DateTimeField()
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["id"]
        constraints = [
            models.UniqueConstraint(fields=["item", "annotator"], name="annotation_assignment_once_per_annotator"),
        ]
        indexes = [models.Index(fields=["annotator", "status"], name="annot_asg_user_status")]

    def __str__(self):
        return f"{self.item} → {self.annotator} ({self.status})"

    def lease_expired(self, now=None) -> bool:
        return self.expires_at <= (now or timezone.now())


class Rating(models.Model):
    assignment = models.OneToOneField(Assignment, on_delete=models.CASCADE, related_name="rating")
    item = models.ForeignKey(Item, on_delete=models.CASCADE, related_name="ratings")
    annotator = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="ratings")
    verdict = models.CharField(max_length=4, choices=Verdict.choices, blank=True, default="")
    language = models.PositiveSmallIntegerField(null=True, blank=True)
    creativity = models.PositiveSmallIntegerField(null=True, blank=True)
    emotion = models.PositiveSmallIntegerField(null=True, blank=True)
    culture = models.PositiveSmallIntegerField(null=True, blank=True)
    richness = models.PositiveSmallIntegerField(null=True, blank=True)
    weighted_score = models.FloatField(null=True, blank=True, editable=False)
    choice = models.CharField(max_length=10, choices=Choice.choices, blank=True, default="")
    comment = models.TextField(blank=True, default="", max_length=2000)
    seconds_spent = models.FloatField(default=0)
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["id"]
        constraints = [
            models.UniqueConstraint(fields=["item", "annotator"], name="annotation_rating_once_per_annotator"),
            # A rating is either pointwise (a verdict, with the full rubric or none of it) or pairwise
            # (a choice), never both. The rubric is optional: Good/Bad stands on its own.
            models.CheckConstraint(
                condition=(
                    ~Q(verdict="") & Q(choice="")
                    & (Q(**{f"{key}__gte": RUBRIC_MIN for key in RUBRIC_KEYS})
                       & Q(**{f"{key}__lte": RUBRIC_MAX for key in RUBRIC_KEYS})
                       | Q(**{f"{key}__isnull": True for key in RUBRIC_KEYS}))
                )
                | (Q(verdict="") & ~Q(choice="") & Q(**{f"{key}__isnull": True for key in RUBRIC_KEYS})),
                name="annotation_rating_pointwise_xor_pairwise",
            ),
            models.CheckConstraint(condition=Q(seconds_spent__gte=0), name="annotation_rating_time_nonnegative"),
        ]

    def __str__(self):
        return f"{self.annotator} on {self.item}: {self.verdict or self.choice}"

    @property
    def rubric(self) -> dict[str, int]:
        return {key: getattr(self, key) for key in RUBRIC_KEYS}

    @property
    def has_rubric(self) -> bool:
        return any(value is not None for value in self.rubric.values())

    def clean(self):
        if self.choice or not self.has_rubric:
            return
        try:
            weighted_score(self.rubric)
        except (KeyError, ValueError) as error:
            raise ValidationError(str(error)) from None

    def save(self, *args, **kwargs):
        self.weighted_score = weighted_score(self.rubric) if not self.choice and self.has_rubric else None
        super().save(*args, **kwargs)


class Settlement(models.Model):
    """An admin's final answer on an item whose annotators disagreed."""

    item = models.OneToOneField(Item, on_delete=models.CASCADE, related_name="settlement")
    verdict = models.CharField(max_length=4, choices=Verdict.choices, blank=True, default="")
    choice = models.CharField(max_length=10, choices=Choice.choices, blank=True, default="")
    note = models.TextField(blank=True, default="")
    settled_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, on_delete=models.SET_NULL)
    settled_at = models.DateTimeField(auto_now=True)

    class Meta:
        constraints = [
            models.CheckConstraint(
                condition=(~Q(verdict="") & Q(choice="")) | (Q(verdict="") & ~Q(choice="")),
                name="annotation_settlement_verdict_xor_choice",
            ),
        ]


class Guidelines(models.Model):
    """What annotators read beside each item: one text per batch, or the global one (batch empty)."""

    batch = models.OneToOneField(Batch, null=True, blank=True, on_delete=models.CASCADE, related_name="guidelines")
    is_global = models.BooleanField(default=False, editable=False)
    text = models.TextField(max_length=20000)
    updated_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, on_delete=models.SET_NULL)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        verbose_name_plural = "guidelines"
        constraints = [
            # NULLs are distinct in a unique index, so "one global text" needs its own flag.
            models.UniqueConstraint(fields=["is_global"], condition=Q(is_global=True), name="annotation_one_global_guidelines"),
            models.CheckConstraint(
                condition=Q(is_global=True, batch__isnull=True) | Q(is_global=False, batch__isnull=False),
                name="annotation_guidelines_global_iff_no_batch",
            ),
        ]

    def save(self, *args, **kwargs):
        self.is_global = self.batch_id is None
        super().save(*args, **kwargs)


RUBRIC_TITLES = {part.key: part.title for part in RUBRIC}


class BatchBuild(models.Model):
    """Generating a batch's items with one checkpoint (or two, compared blind) on a prompt set.

    The batch exists (closed, empty) from the start so callers can link to it; the Celery task
    (tasks.build_batch, generate queue) fills it and opens it. ``done``/``total`` count prompts."""

    class Status(models.TextChoices):
        QUEUED = "queued"
        RUNNING = "running"
        DONE = "done"
        FAILED = "failed"

    batch = models.OneToOneField(Batch, on_delete=models.CASCADE, related_name="build")
    checkpoint_a = models.ForeignKey("checkpoints.Checkpoint", on_delete=models.PROTECT, related_name="+")
    checkpoint_b = models.ForeignKey("checkpoints.Checkpoint", null=True, blank=True, on_delete=models.PROTECT,
                                     related_name="+")
    prompts = models.JSONField(default=list)
    n_per_prompt = models.PositiveSmallIntegerField(default=1)
    params = models.JSONField(default=dict, blank=True, help_text="Sampling: temperature, top_p, max_tokens, seed.")
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.QUEUED)
    done = models.PositiveIntegerField(default=0)
    total = models.PositiveIntegerField(default=0)
    reason = models.TextField(blank=True, default="")
    summary = models.JSONField(default=dict, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        constraints = [
            models.CheckConstraint(condition=Q(n_per_prompt__gte=1) & Q(n_per_prompt__lte=20),
                                   name="annotation_build_n_range"),
            models.CheckConstraint(condition=~Q(status="failed") | ~Q(reason=""), name="annotation_build_failed_reason"),
        ]

    @property
    def percent(self) -> int:
        return round(100 * self.done / self.total) if self.total else 0

    @property
    def is_finished(self) -> bool:
        return self.status in (self.Status.DONE, self.Status.FAILED)


class HumanPreference(models.Model):
    """Provenance of a corpus PreferencePair(source=human) made from a pairwise item's votes:
    which item and batch, the votes, how far the annotators agreed, and how it was decided."""

    class Decision(models.TextChoices):
        UNANIMOUS = "unanimous"
        MAJORITY = "majority"
        SETTLED = "settled"  # an admin's settlement of a disagreement

    item = models.OneToOneField(Item, on_delete=models.CASCADE, related_name="human_preference")
    pair = models.ForeignKey(PreferencePair, on_delete=models.CASCADE, related_name="human_preferences")
    votes = models.JSONField(default=dict, help_text="{'a': n, 'b': n, 'tie': n, 'both_bad': n} in the item's order.")
    agreement = models.FloatField(help_text="Share of votes for the decided side (1.0 when unanimous).")
    decision = models.CharField(max_length=10, choices=Decision.choices)
    created_at = models.DateTimeField(auto_now=True)
