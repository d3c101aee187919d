"""webapp/rlaif: the evaluate_generation command, the job kinds' run functions end to end on a tiny
checkpoint, gathering the round's data, and promotion only through the gate."""
import json
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from django.contrib.auth import get_user_model
from django.core.management import CommandError, call_command

from tests.conftest import GREETINGS
from training.rl.gate import GateDecision
from training.trainer import TrainConfig, train_model
from webapp.checkpoints.models import Checkpoint
from webapp.checkpoints.services import promote_checkpoint, register_checkpoint
from webapp.corpus.models import Greeting, Label, Query
from webapp.jobs.kinds import get_kind
from webapp.judges.services import activate_judge, register_judge
from webapp.rlaif import jobs, services
from webapp.rlaif.models import RlaifRound
from webapp.rlaif.services import RlaifError
from webapp.studio.models import GenerationRequest

QUERIES = [q for q, _ in GREETINGS] + ["元宵节祝福语", "端午安康祝福 给长辈", "中秋节给朋友的祝福", "教师节祝福 简短"]


@dataclass
class Handle:
    """What webapp.jobs gives a run function (the JobHandle protocol), recording events."""

    workdir: Path
    id: int = 7
    params: dict = field(default_factory=dict)
    resumed: bool = False
    cancel_at_step: int | None = None
    events: list = field(default_factory=list)

    def on_progress(self, payload: dict) -> bool:
        self.events.append(payload)
        return not (self.cancel_at_step and payload.get("event") == "step" and payload["step"] >= self.cancel_at_step)

    def log(self, message: str) -> None:
        self.events.append({"event": "log", "message": message})


@pytest.fixture(scope="module")
def tiny_sft(tmp_path_factory):
    """One tiny SFT checkpoint for the module (training it per test would cost seconds each)."""
    folder = tmp_path_factory.mktemp("rlaif")
    data = folder / "sft.json"
    data.write_text(json.dumps([{"instruction": q, "input": "", "output": r} for q, r in GREETINGS * 3],
                               ensure_ascii=False), encoding="utf-8")
    return train_model(TrainConfig(preset="tiny", data_paths=[data], out_dir=folder / "sft", progress_bar=False))


@pytest.fixture
def setup(db, one_thread, runs_dir, tiny_sft, tmp_path, settings):
    """The tiny SFT checkpoint registered and active, an active length judge, and prompt files."""
    settings.JUDGES_DIR = tmp_path / "judges"
    settings.VAR_DIR = tmp_path / "var"
    settings.TRAINING_DATA_DIRS = [tmp_path]  # the prompt files below are the test's data folder
    folder = Path(tiny_sft.checkpoint_dir)
    active = promote_checkpoint(register_checkpoint(
        name="tiny-sft", run_name="tiny-sft", path=str(folder), preset="tiny",
        model_config=json.loads((folder / "config.json").read_text()), data=tiny_sft.data, metrics={}))
    judge = activate_judge(register_judge(kind="length", name="len10", config={"threshold": 10}))
    prompts = tmp_path / "prompts.txt"
    prompts.write_text("\n".join(QUERIES[:7]) + "\n", encoding="utf-8")
    heldout = tmp_path / "heldout.txt"
    heldout.write_text("\n".join(QUERIES[7:]) + "\n", encoding="utf-8")
    return {"active": active, "judge": judge, "prompts": prompts, "heldout": heldout, "tmp": tmp_path}


def run_command(*args) -> dict:
    from io import StringIO

    out = StringIO()
    call_command("evaluate_generation", *args, stdout=out)
    return json.loads(out.getvalue())


def test_evaluate_generation_json_on_the_active_checkpoint(setup):
    report = run_command("--prompts", str(setup["prompts"]), "--samples", "2", "--max-new-tokens", "24", "--json")
    assert report["checkpoint_name"] == setup["active"].name and report["judge_name"] == "len10"
    assert report["prompts"] == 7 and report["greetings"] == 14
    lo, hi = report["pass_rate_ci95"]
    assert 0 <= lo <= report["pass_rate"] <= hi <= 1
    assert report["kl_to_reference"]["kl_per_token"] == pytest.approx(0.0, abs=1e-6)  # an SFT model is its own anchor
    assert 0 <= report["novelty"] <= 1  # against the checkpoint's own SFT data
    for key in ("mean_reward", "distinct_1", "distinct_2", "lengths", "truncated"):
        assert key in report
    by_id = run_command("--prompts", str(setup["prompts"]), "--checkpoint", str(setup["active"].pk), "--judge", "len10",
                        "--samples", "2", "--max-new-tokens", "24", "--json")
    assert by_id["per_prompt_pass"] == report["per_prompt_pass"]  # seeded: same greetings, same verdicts


@pytest.mark.parametrize("args, field", [
    (["--prompts", "{tmp}/missing.txt"], "--prompts"),
    (["--prompts", "{tmp}/empty.txt"], "--prompts"),
    (["--prompts", "{prompts}", "--checkpoint", "no-such-checkpoint"], "--checkpoint"),
    (["--prompts", "{prompts}", "--judge", "no-such-judge"], "--judge"),
    (["--prompts", "{prompts}", "--samples", "0"], "--samples"),
    (["--prompts", "{prompts}", "--max-new-tokens", "5000"], "--max-new-tokens"),
    (["--prompts", "{prompts}", "--max-prompts", "0"], "--max-prompts"),
])
def test_evaluate_generation_bad_input_names_the_field(setup, args, field):
    (setup["tmp"] / "empty.txt").write_text("\n\n", encoding="utf-8")
    args = [a.format(tmp=setup["tmp"], prompts=setup["prompts"]) for a in args]
    with pytest.raises(CommandError) as error:
        call_command("evaluate_generation", *args, "--json")
    assert str(error.value).startswith(field + ":")


def test_the_job_kinds_are_declared():
    for name in ("grpo", "evaluate", "rlaif_round"):
        kind = get_kind(name)
        assert kind.run and kind.params_form
    assert get_kind("rlaif_round").resumable


def round_params(setup, **extra):
    return {"prompts_file": str(setup["prompts"]), "heldout_file": str(setup["heldout"]), "steps": 2,
            "prompts_per_step": 2, "max_new_tokens": 16, "eval_samples": 2, **extra}


def test_rlaif_round_refused_by_the_gate_keeps_the_active_checkpoint(setup):
    # a judge that fails everything: no gain is possible, so the gate must refuse
    activate_judge(register_judge(kind="length", name="impossible", config={"threshold": 1000}))
    user = get_user_model().objects.create_user("wen", password="pw-wen-12345")
    GenerationRequest.objects.create(user=user, query="给奶奶的八十大寿祝福", status=GenerationRequest.Status.DONE)
    query = Query.objects.create(text="给奶奶的八十大寿祝福")
    good = Greeting.objects.create(query=query, text="福如东海长流水，寿比南山不老松。")
    bad = Greeting.objects.create(query=query, text="生日快乐。")
    Label.objects.create(greeting=good, value="good", source_kind="human", source_name="ann")
    Label.objects.create(greeting=bad, value="bad", source_kind="click", source_name="wen")

    handle = Handle(workdir=setup["tmp"] / "job")
    report = jobs.run_round(round_params(setup), handle)

    active = Checkpoint.objects.get(status=Checkpoint.Status.ACTIVE)
    assert active.pk == setup["active"].pk and report["promoted"] is False
    candidate = Checkpoint.objects.get(name=report["candidate"])
    assert candidate.status == Checkpoint.Status.CANDIDATE and "gate" in candidate.metrics
    assert not report["decision"]["promote"] and "not beyond noise" in report["decision"]["reasons"][0]
    assert report["before"]["pass_rate"] == report["after"]["pass_rate"] == 0.0
    round_ = RlaifRound.objects.get()
    assert round_.status == "done" and not round_.promoted and round_.candidate == candidate.name
    assert round_.prompts_gathered == 1 and round_.labels_gathered == 2
    gathered = report["gathered"]
    assert Path(gathered["prompts_file"]).read_text(encoding="utf-8") == "给奶奶的八十大寿祝福\n"
    pairs = json.loads(Path(gathered["pairs_file"]).read_text(encoding="utf-8"))
    assert pairs[0]["chosen"]["value"] == good.text and pairs[0]["rejected"]["value"] == bad.text
    stages = [e["stage"] for e in handle.events if e["event"] == "stage"]
    assert stages[:2] == ["gather", "grpo"] and stages[-2:] == ["evaluate", "gate"]
    steps = [e for e in handle.events if e["event"] == "step"]
    assert steps and all(k in steps[-1] for k in ("reward", "kl", "loss", "pass_rate", "real_experts_per_token"))
    # the next round only gathers what came after this one
    assert services.gather_round_data(services.last_round_time(), setup["tmp"] / "next")["labels"] == 0


def test_a_cancelled_round_changes_nothing_in_the_registry(setup):
    before = set(Checkpoint.objects.values_list("name", "status"))
    handle = Handle(workdir=setup["tmp"] / "job", cancel_at_step=1)
    report = jobs.run_round(round_params(setup), handle)
    assert report["cancelled"] and not report["promoted"]
    assert set(Checkpoint.objects.values_list("name", "status")) == before
    assert RlaifRound.objects.get().status == "cancelled"


def test_a_resumed_round_continues_grpo_from_its_saved_state(setup):
    jobs.run_round(round_params(setup), Handle(workdir=setup["tmp"] / "job", cancel_at_step=1))  # state at step 1
    died = RlaifRound.objects.create(job_id=7)  # as if a worker died in the middle of the next attempt
    handle = Handle(workdir=setup["tmp"] / "job", resumed=True)
    report = jobs.run_round(round_params(setup), handle)
    assert [e["step"] for e in handle.events if e["event"] == "step"] == [2]  # step 1 was not redone
    assert report["grpo"]["steps"] == 2 and "decision" in report
    died.refresh_from_db()
    assert died.status == "failed" and "resumed" in died.reason


def test_round_params_out_of_range_name_the_field(setup):
    handle = Handle(workdir=setup["tmp"] / "job")
    with pytest.raises(RlaifError) as error:
        jobs.run_round(round_params(setup, steps=0), handle)
    assert error.value.field == "steps"
    with pytest.raises(RlaifError) as error:
        jobs.run_round(round_params(setup, prompts_file=str(setup["tmp"] / "nope.txt")), handle)
    assert error.value.field == "prompts_file"
    with pytest.raises(RlaifError) as error:
        jobs.run_grpo({"steps": 1, "judge": "nobody"}, handle)
    assert error.value.field == "judge"
    assert not RlaifRound.objects.exists() and Checkpoint.objects.count() == 1


def test_grpo_and_evaluate_jobs_register_a_candidate_only(setup):
    handle = Handle(workdir=setup["tmp"] / "job", id=11)
    result = jobs.run_grpo({"prompts_file": str(setup["prompts"]), "steps": 1, "prompts_per_step": 2,
                            "max_new_tokens": 16}, handle)
    candidate = Checkpoint.objects.get(name=result["checkpoint"])
    assert candidate.status == "candidate" and candidate.data["parent"] == setup["active"].name
    # the anti-collapse reward terms are on by default in the job (bench.rlaif: without them it collapsed)
    steps = [e for e in handle.events if e.get("event") == "step"]
    assert steps and all("diversity_penalty" in e and "copy_penalty" in e for e in steps)
    assert sum(e["diversity_penalty"] for e in steps) > 0
    assert Checkpoint.objects.get(status="active").pk == setup["active"].pk
    report = jobs.run_evaluate({"prompts_file": str(setup["heldout"]), "checkpoint": candidate.name, "samples": 1}, handle)
    assert report["checkpoint_name"] == candidate.name and report["kl_to_reference"]["kl_per_token"] >= 0
    # promotion goes through the gate decision only
    assert not services.promote_through_gate(candidate, GateDecision(False, ["no"], 0.0, (0.0, 0.0)))
    assert Checkpoint.objects.get(pk=candidate.pk).status == "candidate"
    assert services.promote_through_gate(candidate, GateDecision(True, ["yes"], 0.1, (0.05, 0.15)))
    assert Checkpoint.objects.get(status="active").pk == candidate.pk


def test_grpo_job_reward_terms_default_on_and_refuse_out_of_range(setup):
    reward = services.grpo_fields(jobs.cleaned(jobs.GRPOParams, {}))["reward"]
    assert (reward.diversity_coef, reward.diversity_ngram, reward.copy_coef) == (4.0, 2, 0.5)
    off = services.grpo_fields(jobs.cleaned(jobs.GRPOParams, {"diversity_coef": "0", "copy_coef": "0"}))["reward"]
    assert off.diversity_coef == 0 and off.copy_coef == 0
    with pytest.raises(RlaifError) as error:
        jobs.cleaned(jobs.GRPOParams, {"diversity_coef": "-1"})
    assert error.value.field == "diversity_coef"


def test_evaluate_generation_defaults_to_the_demos_principled_judge(setup, principled_judge_folder, settings):
    """With no judge active (a fresh install), make demo's registration makes the principled judge the
    one evaluate_generation (and the gate and GRPO, which take the same judge_for) scores with."""
    from tests.conftest import link_default_judge
    from webapp.judges.default import ensure_default_judge
    from webapp.judges.models import JudgeVersion

    JudgeVersion.objects.update(is_active=False)
    link_default_judge(principled_judge_folder, settings.JUDGES_DIR)
    version = ensure_default_judge().version
    report = run_command("--prompts", str(setup["prompts"]), "--samples", "2", "--max-new-tokens", "24", "--json")
    assert report["judge_name"] == version.name and report["judge"] == version.name  # the object that scored
    assert 0 <= report["pass_rate"] <= 1 and 0 <= report["mean_judge_score"] <= 1


class _EchoJudge:
    version = "echo"

    def __init__(self):
        self.seen = []

    def scores(self, queries, responses):
        self.seen.append(list(queries))
        return [0.5] * len(queries)


def test_grpo_and_evaluation_prompt_a_slots_checkpoint_as_the_studio_does_and_judge_the_request(tmp_path):
    from generation.checkpoint import META_FILE
    from generation.conditioning import model_query
    from webapp.rlaif.services import as_served

    (tmp_path / META_FILE).write_text(json.dumps({"prompt_format": "slots"}), encoding="utf-8")
    checkpoint = Checkpoint(name="slots-model", path=str(tmp_path))
    requests = ["给我的猫写一句中秋祝福", "祝爷爷八十大寿"]
    prompts, judge = as_served(checkpoint, requests, _EchoJudge())
    assert prompts == [model_query(r, "slots") for r in requests] and prompts[0].startswith("场合：中秋")
    judge.scores(prompts, ["喵，中秋快乐。", "爷爷，八十大寿快乐！"])
    assert judge.judge.seen == [requests]  # the judge reads what the writer asked, not the prefix
    (tmp_path / META_FILE).write_text(json.dumps({}), encoding="utf-8")
    assert as_served(checkpoint, requests, _EchoJudge())[0] == requests  # an older checkpoint: the typed request
