import pytest
from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction

from webapp.judges.models import MAX_RULES, JudgeVersion, PrincipleSet


@pytest.mark.django_db
def test_default_principles_are_seeded():
    default = PrincipleSet.objects.get(name="default", version=1)
    assert len(default.strengths) == 9 and len(default.weaknesses) == 9
    assert 0 < len(default.rules) <= MAX_RULES


@pytest.mark.django_db
def test_more_than_ten_rules_are_refused_and_nothing_is_saved():
    with pytest.raises(ValidationError, match="at most 10 rules, got 11"):
        PrincipleSet.objects.create(name="x", version=1, strengths=["a"], weaknesses=["b"],
                                    rules=[f"rule {i}" for i in range(11)])
    with pytest.raises(ValidationError, match="non-empty texts"):
        PrincipleSet.objects.create(name="x", version=1, strengths=["a", ""], weaknesses=["b"], rules=[])
    assert not PrincipleSet.objects.filter(name="x").exists()


@pytest.mark.django_db
def test_one_active_judge():
    JudgeVersion.objects.create(name="a", kind="tfidf", is_active=True)
    with pytest.raises(IntegrityError), transaction.atomic():
        JudgeVersion.objects.create(name="b", kind="tfidf", is_active=True)
