"""The run-folder helper the training loops share (training/runs.py): a fresh start, the resume
check with the loop's own error, the metrics file kept to the saved history, the ETA."""
import json

import pytest
import torch

from training.runs import Progress, RunFolder, jsonable, notify


class LoopError(Exception):
    pass


def test_start_writes_the_spec_and_drops_old_metrics(tmp_path):
    run = RunFolder(tmp_path / "run", LoopError, what="demo")
    run.path.mkdir()
    run.metrics_file.write_text('{"step": 99}\n', encoding="utf-8")
    run.start({"seed": 1, "path": tmp_path})
    assert json.loads(run.run_file.read_text(encoding="utf-8")) == {"seed": 1, "path": str(tmp_path)}
    assert not run.metrics_file.exists()
    run.log({"step": 1, "loss": torch.tensor(0.5)})
    run.log({"step": 2, "loss": 0.25})
    lines = [json.loads(line) for line in run.metrics_file.read_text(encoding="utf-8").splitlines()]
    assert lines == [{"step": 1, "loss": 0.5}, {"step": 2, "loss": 0.25}]
    run.keep_metrics([{"step": 1}])
    assert run.metrics_file.read_text(encoding="utf-8") == '{"step": 1}\n'


def test_resume_check_raises_the_loops_error_naming_what_differs(tmp_path):
    run = RunFolder(tmp_path, LoopError, what="demo")
    with pytest.raises(LoopError, match="nothing to resume .*no saved demo state"):
        run.check_resumable({"seed": 1})
    run.start({"seed": 1, "preset": {"lr": 0.1, "layers": 2}})
    (run.state_dir).mkdir()
    (run.state_dir / "state.json").write_text("{}", encoding="utf-8")
    run.check_resumable({"seed": 1, "preset": {"lr": 0.1, "layers": 2}})  # the same spec resumes
    with pytest.raises(LoopError, match=r"started with a different preset\.lr, seed$"):
        run.check_resumable({"seed": 2, "preset": {"lr": 0.2, "layers": 2}})


def test_progress_gives_elapsed_and_an_eta_proportional_to_the_steps_left():
    bar = Progress(10, initial=2, desc="t", enabled=False)
    bar.started -= 4.0  # as if 4 s had passed
    elapsed, eta = bar.advance(6)  # 4 steps done since the start: 1 s each, 4 left
    assert elapsed >= 4.0 and eta == pytest.approx(elapsed / 4 * 4)
    bar.close()


def test_notify_and_jsonable():
    assert notify(None, {}) is True
    assert notify(lambda payload: False, {}) is False
    assert notify(lambda payload: None, {}) is True
    assert jsonable({"t": torch.tensor([1, 2]), "nested": [(1, torch.tensor(3.0))]}) == {"t": [1, 2], "nested": [[1, 3.0]]}
