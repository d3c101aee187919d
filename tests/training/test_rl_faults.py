"""GRPO when its judge's endpoint goes down mid-run: the run stops with the judge's error, writes
no checkpoint, keeps its last saved state, and resumes from it once a judge answers again."""
import pytest

from tests.conftest import GREETINGS
from tests.training.test_llm_judge import RULES, ScriptedServer, length_grader
from tests.training.test_rl import tiny_checkpoint  # noqa: F401  (module-scoped fixture)
from training.judges.llm import JudgeUnavailable, LLMJudge, LLMJudgeConfig
from training.rl.grpo import GRPOConfig, train_grpo


def llm_judge(server) -> LLMJudge:
    config = LLMJudgeConfig(base_url=server.base_url, model="judge", timeout=2.0, max_retries=1, backoff=0.01)
    return LLMJudge(config, rules=RULES)


def test_judge_endpoint_down_mid_run_stops_cleanly_and_resumes(tiny_checkpoint, tmp_path, one_thread):  # noqa: F811
    cfg = GRPOConfig(init_checkpoint=tiny_checkpoint, out_dir=tmp_path / "grpo", prompts=[q for q, _ in GREETINGS],
                     max_steps=3, prompts_per_step=1, max_new_tokens=12, progress_bar=False, save_every=1)
    server = ScriptedServer(length_grader).__enter__()
    steps = []

    def take_the_judge_down(event):
        if event["event"] == "step":
            steps.append(event["step"])
            server.__exit__(None, None, None)  # the endpoint is gone before step 2 asks it
        return True

    with pytest.raises(JudgeUnavailable, match="connection failed"):
        train_grpo(cfg, llm_judge(server), on_progress=take_the_judge_down)
    assert steps == [1] and len(server.requests) >= 1
    assert not (cfg.out_dir / "checkpoint").exists()  # no checkpoint, not even a half-written one
    assert not list(cfg.out_dir.glob(".checkpoint.tmp-*"))
    assert (cfg.out_dir / "state" / "state.json").is_file()  # step 1 was saved

    with ScriptedServer(length_grader) as back_up:
        result = train_grpo(cfg, llm_judge(back_up), resume=True)
    assert result.completed and result.steps == 3 and len(result.history) == 3
    assert (result.checkpoint_dir / "model.safetensors").is_file()
