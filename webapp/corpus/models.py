"""Queries, greetings, preference pairs and labels: the data the generator learns from.

Each row carries a ``content_hash`` of its normalised content, unique in the table, so an
import can tell new rows from rows already present and re-importing a file adds nothing.
``save()`` fills the hash; bulk paths (services.py) compute it with the same class methods.
"""
import hashlib

from django.core.exceptions import ValidationError
from django.db import models
from django.db.models import F, Q

from generation.greeting import normalise_text  # the same form as a model's final text

QUERY_MAX_LENGTH = 500


def sha256_hex(*parts: str) -> str:
    digest = hashlib.sha256()
    for part in parts:
        digest.update(part.encode("utf-8"))
        digest.update(b"\x00")  # parts cannot run into each other
    return digest.hexdigest()


class Query(models.Model):
    """What a user asks for, e.g. "七十生日祝福语". Stored normalised; unique."""

    text = models.CharField(max_length=QUERY_MAX_LENGTH, unique=True)
    content_hash = models.CharField(max_length=64, unique=True, editable=False)
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)

    class Meta:
        ordering = ["id"]
        verbose_name_plural = "queries"

    def __str__(self):
        return self.text if len(self.text) <= 60 else self.text[:59] + "…"

    @staticmethod
    def hash_for(text: str) -> str:
        return sha256_hex("query", normalise_text(text))

    def save(self, *args, **kwargs):
        self.text = normalise_text(self.text)
        if not self.text:
            raise ValidationError({"text": "A query cannot be empty."})
        self.content_hash = self.hash_for(self.text)
        super().save(*args, **kwargs)


class Greeting(models.Model):
    """One greeting (祝福语) written for a query, by the corpus, a person or a model checkpoint."""

    class Source(models.TextChoices):
        CORPUS = "corpus", "corpus"
        HUMAN = "human", "human"
        MODEL = "model", "model"

    query = models.ForeignKey(Query, on_delete=models.CASCADE, related_name="greetings")
    text = models.TextField()
    source = models.CharField(max_length=10, choices=Source.choices, default=Source.CORPUS)
    checkpoint_name = models.CharField(
        max_length=100, blank=True, default="", help_text="The checkpoint that wrote it (source=model only)."
    )
    origin = models.CharField(max_length=300, blank=True, default="", help_text="File or dataset it came from.")
    meta = models.JSONField(default=dict, blank=True, help_text="occasion, recipient, tone, flaw…")
    content_hash = models.CharField(max_length=64, unique=True, editable=False)
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)

    class Meta:
        ordering = ["id"]
        indexes = [
            models.Index(fields=["source", "checkpoint_name"], name="corpus_greeting_source_ckpt"),
            models.Index(fields=["origin"], name="corpus_greeting_origin"),
        ]
        constraints = [
            models.CheckConstraint(
                condition=(Q(source="model") & ~Q(checkpoint_name="")) | (~Q(source="model") & Q(checkpoint_name="")),
                name="corpus_greeting_checkpoint_iff_model",
                violation_error_message="A checkpoint name is required for, and only for, model greetings.",
            ),
        ]

    def __str__(self):
        text = self.text if len(self.text) <= 60 else self.text[:59] + "…"
        return f"{text} [{self.checkpoint_name or self.source}]"

    @staticmethod
    def hash_for(query_hash: str, text: str) -> str:
        return sha256_hex("greeting", query_hash, normalise_text(text))

    def save(self, *args, **kwargs):
        self.text = normalise_text(self.text)
        if not self.text:
            raise ValidationError({"text": "A greeting cannot be empty."})
        self.content_hash = self.hash_for(self.query.content_hash, self.text)
        super().save(*args, **kwargs)


class PreferencePair(models.Model):
    """For one query, ``chosen`` is preferred to ``rejected``: reward-model training data."""

    class Source(models.TextChoices):
        CORPUS = "corpus", "corpus"
        HUMAN = "human", "human"
        JUDGE = "judge", "judge"

    query = models.ForeignKey(Query, on_delete=models.CASCADE, related_name="pairs")
    chosen = models.ForeignKey(Greeting, on_delete=models.CASCADE, related_name="chosen_in")
    rejected = models.ForeignKey(Greeting, on_delete=models.CASCADE, related_name="rejected_in")
    source = models.CharField(max_length=10, choices=Source.choices, default=Source.CORPUS)
    origin = models.CharField(max_length=300, blank=True, default="", help_text="File, dataset or judge version.")
    content_hash = models.CharField(max_length=64, unique=True, editable=False)
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)

    class Meta:
        ordering = ["id"]
        indexes = [models.Index(fields=["source", "origin"], name="corpus_pair_source_origin")]
        constraints = [
            models.CheckConstraint(
                condition=~Q(chosen=F("rejected")),
                name="corpus_pair_chosen_differs_from_rejected",
                violation_error_message="The chosen and the rejected greeting must differ.",
            ),
        ]

    def __str__(self):
        return f"{self.query}: #{self.chosen_id} > #{self.rejected_id}"

    @staticmethod
    def hash_for(query_hash: str, chosen_text: str, rejected_text: str) -> str:
        return sha256_hex("pair", query_hash, normalise_text(chosen_text), normalise_text(rejected_text))

    def clean(self):
        if self.chosen_id is not None and self.chosen_id == self.rejected_id:
            raise ValidationError("The chosen and the rejected greeting must differ.")
        for role in ("chosen", "rejected"):
            greeting = getattr(self, role)
            if greeting.query_id != self.query_id:
                raise ValidationError({role: f"The {role} greeting answers another query."})

    def save(self, *args, **kwargs):
        self.clean()
        self.content_hash = self.hash_for(self.query.content_hash, self.chosen.text, self.rejected.text)
        super().save(*args, **kwargs)


class Label(models.Model):
    """A good/bad verdict on one greeting from one source: a click, a person, a judge, a corpus.

    One label per (greeting, source kind, source name): a source states its verdict once, so
    re-importing a labelled file adds nothing."""

    class Value(models.TextChoices):
        GOOD = "good", "good"
        BAD = "bad", "bad"

    class SourceKind(models.TextChoices):
        CLICK = "click", "click"
        HUMAN = "human", "human"
        JUDGE = "judge", "judge"
        CORPUS = "corpus", "corpus"

    greeting = models.ForeignKey(Greeting, on_delete=models.CASCADE, related_name="labels")
    value = models.CharField(max_length=4, choices=Value.choices)
    source_kind = models.CharField(max_length=10, choices=SourceKind.choices)
    source_name = models.CharField(max_length=300, help_text="A username, a judge version, a dataset name.")
    score = models.FloatField(null=True, blank=True, help_text="A judge's score in [0, 1], when it gives one.")
    detail = models.JSONField(default=dict, blank=True, help_text="A judge's reason and rubric scores.")
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)

    class Meta:
        ordering = ["id"]
        indexes = [models.Index(fields=["source_kind", "value"], name="corpus_label_kind_value")]
        constraints = [
            models.UniqueConstraint(
                fields=["greeting", "source_kind", "source_name"], name="corpus_label_one_per_source"
            ),
            models.CheckConstraint(condition=Q(value__in=["good", "bad"]), name="corpus_label_value_valid"),
            models.CheckConstraint(
                condition=Q(score__isnull=True) | (Q(score__gte=0) & Q(score__lte=1)), name="corpus_label_score_range"
            ),
        ]

    def __str__(self):
        return f"{self.value} by {self.source_kind}:{self.source_name} on #{self.greeting_id}"

    @classmethod
    def value_for(cls, label: int) -> str:
        """The stored value for a 1 (good) / 0 (bad) label."""
        return cls.Value.GOOD if label else cls.Value.BAD
