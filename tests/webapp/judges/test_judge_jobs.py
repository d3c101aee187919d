"""The judges app's job kinds (curate_pairs, adversarial_judge, reward_model) run end to end through their
run functions with a small JobHandle, against real HTTP servers and the test database."""
import json
import socket

import pytest
from django.core.management import CommandError, call_command

from tests.webapp.judges.test_adversarial import REPETITION_RULE, LLMStandIn, labelled_items
from tests.training.test_curation import World
from tests.webapp.judges.test_judge_commands import WARM, HOLLOW, write_pairs
from tests.training.test_llm_judge import ScriptedServer
from training.judges.data import load_pairs
from webapp.corpus.models import PreferencePair
from webapp.jobs.kinds import get_kind
from webapp.judges import curation, jobs, services
from webapp.judges.models import JudgeVersion, PrincipleSet

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def _private_dirs(one_thread, settings, tmp_path):
    settings.JUDGES_DIR = tmp_path / "judges"
    settings.VAR_DIR = tmp_path / "var"
    settings.TRAINING_DATA_DIRS = [tmp_path]  # the test's files are its data folder (jobs read only data folders)


class TinyJob:
    """A JobHandle: records what the run reports; asks to stop after `stop_after` steps."""

    def __init__(self, workdir, stop_after=None):
        self.id, self.params, self.workdir, self.resumed = 7, {}, workdir, False
        self.stop_after, self.events, self.lines, self.steps = stop_after, [], [], 0
        workdir.mkdir(parents=True, exist_ok=True)

    def on_progress(self, payload):
        self.events.append(payload)
        self.steps += payload.get("event") == "step"
        return self.stop_after is None or self.steps < self.stop_after

    def log(self, message):
        self.lines.append(message)


def as_stored(form_class, params):
    """What the job system hands to run(): the form's cleaned data, as JSON."""
    return json.loads(json.dumps(jobs.clean_params(form_class, params), default=str))


def free_port():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_the_kinds_are_registered():
    assert get_kind("curate_pairs").run is jobs.run_curate_pairs and get_kind("curate_pairs").resumable
    assert get_kind("adversarial_judge").run is jobs.run_adversarial_judge
    assert get_kind("reward_model").run is jobs.run_reward_model


def test_curate_pairs_job_end_to_end(tmp_path):
    services.train_tfidf_judge_version(pair_files=[write_pairs(tmp_path / "train.json", n_queries=60)],
                                       name="tf-jobs", activate=True)
    queries = [f"戊{i}号请求" for i in range(5)]
    candidates = {}
    for i, query in enumerate(queries):
        candidates[(query, 0.7)] = [WARM[i % 4], HOLLOW[i % 4]]
        candidates[(query, 1.1)] = [WARM[(i + 1) % 4], HOLLOW[(i + 1) % 4]]
    prompts = tmp_path / "queries.txt"
    prompts.write_text("\n".join(queries) + "\n", encoding="utf-8")
    evaluation = tmp_path / "eval.jsonl"
    evaluation.write_text(json.dumps({"query": queries[-1], "response": WARM[0], "label": 1}, ensure_ascii=False) + "\n",
                          encoding="utf-8")
    world = World(candidates, {})
    job = TinyJob(tmp_path / "job")
    with ScriptedServer(world) as server:
        params = as_stored(jobs.CuratePairsParams, {
            "prompts_file": str(prompts), "remote_url": server.base_url.removesuffix("/v1"), "remote_model": "m",
            "temperatures": "0.7, 1.1", "candidates_per_agent": 2, "min_margin": 0.3, "max_longer_share": 1.0,
            "exclude_files": str(evaluation), "name": "job-pairs", "import_to_corpus": True})
        assert params["temperatures"] == [0.7, 1.1] and params["exclude_files"] == [str(evaluation)]
        result = jobs.run_curate_pairs(params, job)
    stats = result["stats"]
    assert result["judges"] == ["tf-jobs"]
    assert stats["prompts_excluded_leakage"] == 1 and queries[-1] not in world.asked_queries
    assert stats["pairs"] == 4 and stats["candidates_judged"] == 16
    pairs = load_pairs(result["pairs_file"])
    assert all(p.chosen in WARM and p.rejected in HOLLOW for p in pairs)
    assert PreferencePair.objects.count() == 4
    steps = [e for e in job.events if e["event"] == "step"]
    assert [e["step"] for e in steps] == [1, 2, 3, 4] and steps[-1]["max_steps"] == 4
    assert any(e["event"] == "stage" for e in job.events)
    assert (job.workdir / "candidates.jsonl").is_file()  # what a resumed job starts from


def test_adversarial_job_saves_an_improved_principle_set_and_registers_a_judge(tmp_path):
    labelled = tmp_path / "labelled.jsonl"
    labelled.write_text("\n".join(json.dumps({"query": i.query, "response": i.response, "label": i.label},
                                             ensure_ascii=False) for i in labelled_items()), encoding="utf-8")
    start = PrincipleSet.objects.filter(name="default").order_by("-version").first()
    job = TinyJob(tmp_path / "job")
    with ScriptedServer(LLMStandIn("improve")) as server:
        summary = jobs.run_adversarial_judge(as_stored(jobs.AdversarialJudgeParams, {
            "labelled_file": str(labelled), "rounds": 1, "attacks_per_round": 18, "base_url": server.base_url,
            "model": "stand-in", "max_retries": 0, "strategies": "repetition,pressure,injection",
            "register_llm_judge": True}), job)
    assert summary["rounds"][0]["accepted"]
    saved = PrincipleSet.objects.get(pk=summary["saved"]["id"])
    assert (saved.name, saved.version, saved.parent_id) == (start.name, start.version + 1, start.pk)
    assert saved.rules == start.rules + [REPETITION_RULE] and "adversarial" in saved.note
    judge = JudgeVersion.objects.get(name=summary["judge"])
    assert judge.kind == "llm" and judge.principle_set_id == saved.pk and "api_key" not in judge.config
    assert [e["step"] for e in job.events if e["event"] == "step"] == [1]


def test_adversarial_command_and_an_unreachable_endpoint(tmp_path, capsys):
    labelled = tmp_path / "labelled.jsonl"
    labelled.write_text("\n".join(json.dumps({"query": i.query, "response": i.response, "label": i.label},
                                             ensure_ascii=False) for i in labelled_items()), encoding="utf-8")
    before = PrincipleSet.objects.count()
    with ScriptedServer(LLMStandIn("overbroad")) as server:
        call_command("adversarial_judge", "--labelled", str(labelled), "--rounds", "1", "--attacks", "12",
                     "--strategies", "repetition,pressure", "--base-url", server.base_url, "--model", "m")
    out = capsys.readouterr().out
    assert "kept old: agreement dropped" in out and "no improvement" in out
    assert PrincipleSet.objects.count() == before
    port = free_port()
    with pytest.raises(CommandError, match=rf"127.0.0.1:{port}.*connection failed"):
        call_command("adversarial_judge", "--labelled", str(labelled), "--rounds", "1",
                     "--base-url", f"http://127.0.0.1:{port}/v1", "--model", "m", "--max-retries", "0")
    assert PrincipleSet.objects.count() == before


def test_reward_model_job_trains_registers_and_stops_cleanly(tmp_path):
    pairs = write_pairs(tmp_path / "pairs.json", n_queries=40)
    result = jobs.run_reward_model(as_stored(jobs.RewardModelParams, {
        "pair_files": str(pairs), "preset": "tiny", "steps": 2, "name": "rm-job"}), TinyJob(tmp_path / "a"))
    version = JudgeVersion.objects.get(name="rm-job")
    assert result["judge"] == "rm-job" and version.kind == "reward_model" and "heldout" in result["metrics"]
    stopping = TinyJob(tmp_path / "b", stop_after=1)
    result = jobs.run_reward_model(as_stored(jobs.RewardModelParams, {
        "pair_files": str(pairs), "preset": "tiny", "steps": 5, "name": "rm-stopped"}), stopping)
    assert result["cancelled"] and "not registered" in result["message"]
    assert not JudgeVersion.objects.filter(name="rm-stopped").exists()
    assert not (services.judges_dir() / "rm-stopped").exists()


def test_bad_parameters_name_the_field(tmp_path):
    with pytest.raises(jobs.JobParamsError, match="^prompts_file: "):
        jobs.run_curate_pairs({}, TinyJob(tmp_path / "j"))
    with pytest.raises(jobs.JobParamsError, match="prompts_file: .*does not exist"):
        jobs.run_curate_pairs({"prompts_file": str(tmp_path / "nope.txt")}, TinyJob(tmp_path / "j"))
    empty = tmp_path / "empty.txt"
    empty.write_text("\n\n", encoding="utf-8")
    with pytest.raises(jobs.JobParamsError, match="remote_model: name the model"):
        jobs.run_curate_pairs({"prompts_file": str(empty), "remote_url": "http://127.0.0.1:9"}, TinyJob(tmp_path / "j"))
    with pytest.raises(jobs.JobParamsError, match="temperatures"):
        jobs.run_curate_pairs({"prompts_file": str(empty), "temperatures": "warm"}, TinyJob(tmp_path / "j"))
    with ScriptedServer(World()) as server:
        with pytest.raises(services.JudgeServiceError, match="prompts_file: cannot read queries: .*empty"):
            jobs.run_curate_pairs({"prompts_file": str(empty), "remote_url": server.base_url, "remote_model": "m"},
                                  TinyJob(tmp_path / "j"))
    with pytest.raises(jobs.JobParamsError, match="strategies: unknown shouting"):
        jobs.run_adversarial_judge({"labelled_file": str(empty), "strategies": "shouting"}, TinyJob(tmp_path / "j"))
    with pytest.raises(services.JudgeServiceError, match="principle_set: no principle set 'default:999'"):
        jobs.run_adversarial_judge({"labelled_file": str(empty), "principle_set": "default:999",
                                    "base_url": "http://127.0.0.1:9/v1", "model": "m"}, TinyJob(tmp_path / "j"))
    with pytest.raises(jobs.JobParamsError, match="pair_files: .*does not exist"):
        jobs.run_reward_model({"pair_files": str(tmp_path / "none.json")}, TinyJob(tmp_path / "j"))
    # a principle set over the limit is refused before anything runs
    oversized = PrincipleSet(name="big", version=1, rules=[f"规则{i}" for i in range(11)])
    with pytest.raises(services.JudgeServiceError, match="at most 10 rules, got 11"):
        curation.optimise_principle_set(principle_set=oversized, labelled_file=empty,
                                        llm_config={"base_url": "http://127.0.0.1:9/v1", "model": "m"})
