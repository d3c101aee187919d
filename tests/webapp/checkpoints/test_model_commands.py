"""`train_model` and `greet`: the trainer and sampler behind thin commands and the registry."""
import json
import re
from io import StringIO

import pytest
from django.core.management import CommandError, call_command

from tests.conftest import GREETINGS  # noqa: F401 - other tests import it from here
from webapp.checkpoints.models import Checkpoint

pytestmark = pytest.mark.usefixtures("one_thread")



def train(corpus_file, **options) -> str:
    out = StringIO()
    call_command("train_model", preset="tiny", data=[str(corpus_file)], max_steps=6, stdout=out, **options)
    return out.getvalue()


@pytest.mark.django_db
def test_first_trained_checkpoint_becomes_active_and_greets(corpus_file, runs_dir):
    output = train(corpus_file)
    checkpoint = Checkpoint.objects.get()
    assert checkpoint.status == Checkpoint.Status.ACTIVE and checkpoint.preset == "tiny"
    assert checkpoint.name in output and "[active]" in output
    assert checkpoint.missing_files() == ""
    assert checkpoint.model_config["n_routed_experts"] > 0 and checkpoint.model_config["zero_expert_num"] > 0
    assert "loss" in json.dumps(checkpoint.metrics)

    out = StringIO()
    call_command("greet", "七十生日祝福语", n=3, seed=7, max_new_tokens=12, stdout=out)
    numbered = re.findall(r"^(\d+)\. ", out.getvalue(), flags=re.MULTILINE)
    assert numbered == ["1", "2", "3"]
    again = StringIO()
    call_command("greet", "七十生日祝福语", n=3, seed=7, max_new_tokens=12, stdout=again)
    assert again.getvalue() == out.getvalue()  # same seed, same greetings


@pytest.mark.django_db
def test_second_run_is_a_candidate_until_promoted(corpus_file, runs_dir):
    train(corpus_file)
    train(corpus_file, seed=1)
    assert Checkpoint.objects.filter(status="active").count() == 1
    assert Checkpoint.objects.filter(status="candidate").count() == 1
    train(corpus_file, seed=2, promote=True)
    assert Checkpoint.objects.order_by("-created_at").first().status == Checkpoint.Status.ACTIVE
    assert Checkpoint.objects.filter(status="retired").count() == 1


@pytest.mark.django_db
@pytest.mark.parametrize(
    "options, message",
    [
        ({"preset": "huge"}, "huge"),
        ({"data": ["/nonexistent/corpus.json"]}, "/nonexistent/corpus.json"),
        ({"resume": "no-such-run"}, "no run named 'no-such-run'"),
    ],
)
def test_bad_training_input_is_a_clear_error_and_the_registry_is_unchanged(corpus_file, runs_dir, options, message):
    arguments = {"preset": "tiny", "data": [str(corpus_file)], "max_steps": 2} | options
    with pytest.raises(CommandError, match=message):
        call_command("train_model", stdout=StringIO(), **arguments)
    assert not Checkpoint.objects.exists()


@pytest.mark.django_db
def test_empty_corpus_is_refused(tmp_path, runs_dir):
    empty = tmp_path / "empty.json"
    empty.write_text("[]")
    with pytest.raises(CommandError):
        call_command("train_model", preset="tiny", data=[str(empty)], stdout=StringIO())
    assert not Checkpoint.objects.exists()


@pytest.mark.django_db
def test_greet_refuses_a_corrupt_or_pickled_checkpoint(corpus_file, runs_dir):
    train(corpus_file)
    checkpoint = Checkpoint.objects.get()
    weights = f"{checkpoint.path}/model.safetensors"
    with open(weights, "r+b") as handle:
        handle.write(b"\xff" * 64)
    with pytest.raises(CommandError, match="safetensors"):
        call_command("greet", "生日祝福", stdout=StringIO())
    with pytest.raises(CommandError, match="no checkpoint with id or name 'missing'"):
        call_command("greet", "生日祝福", checkpoint="missing", stdout=StringIO())
    with pytest.raises(CommandError, match="empty"):
        call_command("greet", "   ", stdout=StringIO())
