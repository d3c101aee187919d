"""The checkpoint registry: one active checkpoint, atomic promotion, clear lookups."""
import pytest
from django.db import IntegrityError, transaction

from webapp.checkpoints.models import Checkpoint
from webapp.checkpoints.services import (
    RegistryError,
    active_checkpoint,
    promote_checkpoint,
    register_checkpoint,
    resolve_checkpoint,
)


def complete_folder(tmp_path, name):
    folder = tmp_path / name
    folder.mkdir()
    (folder / "config.json").write_text("{}")
    (folder / "model.safetensors").write_bytes(b"x")
    return folder


def register(tmp_path, name, complete=True):
    folder = complete_folder(tmp_path, name) if complete else tmp_path / name
    return register_checkpoint(name=name, run_name=name, path=str(folder), preset="tiny", model_config={},
                               data={}, metrics={"loss": 1.0})


@pytest.mark.django_db
def test_promotion_retires_the_previous_active(tmp_path):
    first, second = register(tmp_path, "a"), register(tmp_path, "b")
    assert active_checkpoint() is None
    promote_checkpoint(first)
    assert active_checkpoint().name == "a"
    promote_checkpoint(second)
    assert active_checkpoint().name == "b"
    first.refresh_from_db()
    assert first.status == Checkpoint.Status.RETIRED
    assert Checkpoint.objects.filter(status="active").count() == 1


@pytest.mark.django_db
def test_database_refuses_two_active_checkpoints(tmp_path):
    first, second = register(tmp_path, "a"), register(tmp_path, "b")
    promote_checkpoint(first)
    second.status = Checkpoint.Status.ACTIVE
    with pytest.raises(IntegrityError), transaction.atomic():
        second.save()


@pytest.mark.django_db
def test_incomplete_checkpoint_is_not_promoted_and_nothing_changes(tmp_path):
    good = register(tmp_path, "good")
    promote_checkpoint(good)
    broken = register(tmp_path, "broken", complete=False)
    with pytest.raises(RegistryError, match="folder .* is missing"):
        promote_checkpoint(broken)
    assert active_checkpoint().name == "good"
    broken.refresh_from_db()
    assert broken.status == Checkpoint.Status.CANDIDATE


@pytest.mark.django_db
def test_resolve_by_name_id_or_active(tmp_path):
    checkpoint = register(tmp_path, "named")
    with pytest.raises(RegistryError, match="no active checkpoint"):
        resolve_checkpoint(None)
    assert resolve_checkpoint("named") == checkpoint
    assert resolve_checkpoint(str(checkpoint.pk)) == checkpoint
    with pytest.raises(RegistryError, match="no checkpoint with id or name 'nope'"):
        resolve_checkpoint("nope")
    with pytest.raises(RegistryError, match="already registered"):
        register_checkpoint(name="named", run_name="x", path="/", preset="tiny", model_config={}, data={},
                            metrics={})
