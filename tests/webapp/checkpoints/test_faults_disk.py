"""Disk full while a checkpoint is written: a real ENOSPC from a small tmpfs mounted for the test.

The save fails with a clear error, the folder it would have replaced stays whole and loadable,
no temp folder is left behind, and nothing reaches the registry (the active checkpoint stays).
Where mounting is not permitted (an unprivileged container), the same write failure comes from
RLIMIT_FSIZE instead (EFBIG, "File too large"): a per-file limit, not a full disk, but the same
code path: the write fails half-way through the checkpoint."""
import contextlib
import errno
import os
import resource
import signal
import subprocess
from pathlib import Path

import pytest
import torch

from generation.checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from tests.conftest import GREETINGS

DISK_BYTES = 4 * 1024 * 1024
LEFT_FREE = 8 * 1024  # less than one tiny model.safetensors


class TightDisk:
    def __init__(self, path: Path, mode: str):
        self.path, self.mode = path, mode

    @contextlib.contextmanager
    def full(self):
        """Fill the tmpfs up to LEFT_FREE bytes (or cap file sizes at LEFT_FREE) for the block."""
        if self.mode == "tmpfs":
            filler = self.path / "filler"
            with open(filler, "wb") as f:
                try:
                    while True:
                        f.write(b"\0" * 65536)
                        f.flush()
                except OSError as exc:
                    assert exc.errno == errno.ENOSPC
            os.truncate(filler, max(filler.stat().st_size - LEFT_FREE, 0))
            try:
                yield
            finally:
                filler.unlink()
        else:
            soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
            previous = signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # EFBIG instead of being killed
            resource.setrlimit(resource.RLIMIT_FSIZE, (LEFT_FREE, hard))
            try:
                yield
            finally:
                resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))
                signal.signal(signal.SIGXFSZ, previous)


@pytest.fixture
def tight_disk(tmp_path):
    path = tmp_path / "disk"
    path.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={DISK_BYTES}", "tmpfs", str(path)],
                             capture_output=True).returncode == 0
    try:
        yield TightDisk(path, "tmpfs" if mounted else "rlimit")
    finally:
        if mounted:
            subprocess.run(["umount", "--lazy", str(path)], check=True)  # a loaded model may still map a file


@pytest.fixture
def tiny_model(one_thread):
    from generation.presets import PRESETS
    from generation.tokenizer import build_tokenizer
    from training.steps import build_model

    tokenizer = build_tokenizer([query + text for query, text in GREETINGS])
    return build_model(PRESETS["tiny"], tokenizer, seed=0), tokenizer


def leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if ".tmp-" in p.name or ".old-" in p.name)


def test_disk_full_save_keeps_the_old_checkpoint_whole(tight_disk, tiny_model):
    model, tokenizer = tiny_model
    target = tight_disk.path / "checkpoint"
    save_checkpoint(model, tokenizer, target, {"version": 1})
    saved = {k: v.clone() for k, v in model.state_dict().items()}
    with torch.no_grad():
        for param in model.parameters():
            param.add_(1.0)  # a different model, so a half-replaced folder would show

    with tight_disk.full(), pytest.raises(CheckpointError) as failure:
        save_checkpoint(model, tokenizer, target, {"version": 2})
    message = str(failure.value)
    assert str(target) in message
    assert ("disk is full" in message) if tight_disk.mode == "tmpfs" else ("File too large" in message), message
    assert leftovers(tight_disk.path) == []
    loaded, _ = load_checkpoint(target, fast_moe=False)  # still version 1, whole
    assert (target / "zhufu.json").read_text(encoding="utf-8").count('"version": 1') == 1
    for name, value in loaded.state_dict().items():
        if name in saved:
            assert torch.equal(value, saved[name]), name


def test_disk_full_during_training_registers_nothing(tight_disk, corpus_file, runs_dir, settings, monkeypatch, db,
                                                     one_thread):
    import training.trainer
    from webapp.checkpoints.models import Checkpoint
    from webapp.checkpoints.training import train_and_register

    active = train_and_register(preset="tiny", data_paths=[corpus_file], max_steps=2)
    assert active.status == "active"

    def save_on_a_full_disk(*args, **kwargs):  # the fault, injected exactly at the checkpoint write
        with tight_disk.full():
            return save_checkpoint(*args, **kwargs)

    monkeypatch.setattr(training.trainer, "save_checkpoint", save_on_a_full_disk)
    settings.RUNS_DIR = tight_disk.path
    with pytest.raises(CheckpointError):
        train_and_register(preset="tiny", data_paths=[corpus_file], max_steps=2, run_name="doomed", promote=True)
    assert list(Checkpoint.objects.values_list("name", "status")) == [(active.name, "active")]
    run = tight_disk.path / "doomed"
    assert (run / "state").is_dir() and not (run / "checkpoint").exists() and leftovers(run) == []
    assert not Checkpoint.objects.get().missing_files()
