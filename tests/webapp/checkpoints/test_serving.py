"""The process-wide backend follows the registry's active checkpoint."""
from io import StringIO

import pytest
from django.core.management import call_command

from generation.greeting import write_greetings
from webapp.checkpoints import serving
from webapp.checkpoints.models import Checkpoint

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(autouse=True)
def fresh_backend():
    serving.reset_backend()
    yield
    serving.reset_backend()


@pytest.mark.django_db
def test_no_checkpoint_means_model_not_ready():
    with pytest.raises(serving.ModelNotReady, match="not ready"):
        serving.get_backend()


@pytest.mark.django_db
def test_backend_serves_the_active_checkpoint_and_swaps_on_promotion(corpus_file, runs_dir, monkeypatch):
    call_command("train_model", preset="tiny", data=[str(corpus_file)], max_steps=3, stdout=StringIO())
    first = serving.get_backend()
    assert serving.get_backend() is first
    assert len(write_greetings(first, "生日祝福", 2, max_tokens=8, seed=1)) == 2
    assert serving.active_checkpoint_name() == Checkpoint.objects.get().name

    call_command("train_model", preset="tiny", data=[str(corpus_file)], max_steps=3, seed=1, promote=True,
                 stdout=StringIO())
    monkeypatch.setattr(serving, "RECHECK_SECONDS", 0.0)
    second = serving.get_backend()
    assert second is not first
    assert serving.active_checkpoint_name() == Checkpoint.objects.get(status="active").name
