"""MARL in the web app: the train_marl command, the "marl" job kind, and the registry's
promise that a MARL policy is never the active generator."""
import pytest
from django.core.management import CommandError, call_command
from django.db import IntegrityError, transaction
from django.utils import timezone

from webapp.checkpoints.models import Checkpoint
from webapp.checkpoints.services import RegistryError, active_checkpoint, promote_checkpoint, resolve_checkpoint

pytestmark = pytest.mark.django_db

TINY = ["--steps", "60", "--eval-episodes", "1", "--no-progress"]


def train(*args) -> Checkpoint:
    before = set(Checkpoint.objects.values_list("pk", flat=True))
    call_command("train_marl", *args, *TINY)
    (checkpoint,) = Checkpoint.objects.exclude(pk__in=before)
    return checkpoint


def test_train_marl_registers_a_marl_checkpoint_that_never_becomes_the_active_generator(runs_dir):
    checkpoint = train("--algo", "hrtmaddpg", "--env", "simple_spread", "--seed", "1", "--placement", "both")
    assert checkpoint.family == "marl" and checkpoint.status == "candidate"
    assert checkpoint.model_config["env"] == "simple_spread" and checkpoint.model_config["algo"] == "hrtmaddpg"
    assert checkpoint.model_config["net"]["placement"] == "both"
    assert checkpoint.metrics["steps"] == 60 and checkpoint.metrics["curve"]
    assert checkpoint.missing_files() == ""  # model.safetensors + config.json, like a generator folder
    assert checkpoint.path.startswith(str(runs_dir))

    assert active_checkpoint() is None  # the only checkpoint there is, and still nothing is active
    with pytest.raises(RegistryError, match="marl checkpoint, not a generator"):
        promote_checkpoint(checkpoint)
    with pytest.raises(RegistryError, match="not a generator"):
        resolve_checkpoint(checkpoint.name)  # generation never picks it up by name either
    assert resolve_checkpoint(str(checkpoint.pk), family="marl") == checkpoint
    with pytest.raises(IntegrityError), transaction.atomic():  # the database refuses it too
        Checkpoint.objects.filter(pk=checkpoint.pk).update(status="active", promoted_at=timezone.now())


@pytest.mark.parametrize("args,field", [
    (["--env", "simple_world"], "env"), (["--algo", "ppo"], "algo"), (["--steps", "3"], "steps"),
    (["--steps", "999999999"], "steps"), (["--encoder", "lstm"], "encoder"), (["--placement", "x"], "placement"),
    (["--init-from", "no-such-checkpoint"], "init_from"),
])
def test_bad_input_is_a_clear_error_naming_the_field(args, field, runs_dir):
    with pytest.raises(CommandError, match=f"^{field}: "):
        call_command("train_marl", *TINY, *args)
    assert not Checkpoint.objects.exists()


def test_starting_from_a_checkpoint_of_another_env_is_refused(runs_dir):
    spread = train("--algo", "maddpg", "--env", "simple_spread")
    with pytest.raises(CommandError, match="^env: the checkpoint was trained on 'simple_spread', not 'simple_adversary'"):
        call_command("train_marl", *TINY, "--algo", "maddpg", "--env", "simple_adversary", "--init-from", spread.name)
    continued = train("--algo", "maddpg", "--env", "simple_spread", "--init-from", str(spread.pk))
    assert continued.family == "marl"


def test_marl_job_runs_on_the_job_platform_with_reward_curves(runs_dir):
    from webapp.jobs import services
    from webapp.jobs.kinds import get_kind
    from webapp.jobs.models import TRAIN_SLOT, MetricPoint, TrainingJob

    kind = get_kind("marl")
    with pytest.raises(services.JobError) as caught:
        services.validate_params(kind, {"algo": "hrtmaddpg", "env": "simple_spread", "steps": 10, "seed": 0})
    assert caught.value.field == "steps"
    with pytest.raises(services.JobError) as caught:
        services.validate_params(kind, {"algo": "hrtmaddpg", "env": "nowhere", "steps": 100, "seed": 0})
    assert caught.value.field == "env"

    params = services.validate_params(kind, {"algo": "maddpg", "env": "simple_adversary", "steps": 100, "seed": 2,
                                             "action_type": "discrete"})
    job = TrainingJob.objects.create(kind="marl", params=params, status="running", slot=TRAIN_SLOT, worker="test:1",
                                     attempts=1, started_at=timezone.now(), heartbeat_at=timezone.now())
    assert services.execute(job, resumed=False) == "succeeded"
    job.refresh_from_db()
    checkpoint = Checkpoint.objects.get(pk=job.result["checkpoint_id"])
    assert checkpoint.family == "marl" and checkpoint.model_config["env"] == "simple_adversary"
    assert checkpoint.model_config["spaces"]["agent_0"]["action"] == {"type": "discrete", "n": 5}
    rewards = MetricPoint.objects.filter(job=job, name="episode_reward").order_by("step")
    assert [p.step for p in rewards] == [100]  # report_every is 4 episodes; the run ends after 4
    assert MetricPoint.objects.filter(job=job, name="reward_adversary").exists()
    assert job.progress == 1.0 and active_checkpoint() is None


def test_train_marl_on_vmas_registers_its_backend_and_refuses_bad_num_envs(runs_dir):
    checkpoint = train("--algo", "maddpg", "--env", "simple_adversary", "--backend", "vmas", "--num-envs", "2")
    assert checkpoint.model_config["backend"] == "vmas" and checkpoint.metrics["num_envs"] == 2
    with pytest.raises(CommandError, match="^steps: 60 do not finish one episode in each of 4"):
        call_command("train_marl", *TINY, "--backend", "vmas", "--num-envs", "4")
    with pytest.raises(CommandError, match="^num_envs: "):
        call_command("train_marl", *TINY, "--backend", "vmas", "--num-envs", "0")
    with pytest.raises(CommandError, match="^backend: "):
        call_command("train_marl", *TINY, "--algo", "maddpg", "--env", "simple_adversary", "--init-from",
                     checkpoint.name)


def test_the_marl_job_form_refuses_bad_vmas_input_and_foreign_checkpoints_naming_the_field(runs_dir):
    from webapp.jobs import services
    from webapp.jobs.kinds import get_kind

    kind = get_kind("marl")
    base = {"algo": "maddpg", "env": "simple_adversary", "steps": 100, "seed": 0}
    vmas = train("--algo", "maddpg", "--env", "simple_adversary", "--backend", "vmas", "--num-envs", "2")
    spread = train("--algo", "maddpg", "--env", "simple_spread")
    for changes, field in [({"backend": "isaac"}, "backend"), ({"backend": "vmas", "num_envs": 0}, "num_envs"),
                           ({"backend": "vmas", "num_envs": 5000}, "num_envs"), ({"num_envs": 4}, "num_envs"),
                           ({"backend": "vmas", "num_envs": 8}, "steps"),  # 100 frames do not finish 8 episodes
                           ({"init_from": vmas.name}, "backend"),  # a VMAS checkpoint for an mpe2 run
                           ({"backend": "vmas", "num_envs": 2, "init_from": spread.name}, "backend"),
                           ({"init_from": spread.name}, "env")]:
        with pytest.raises(services.JobError) as caught:
            services.validate_params(kind, {**base, **changes})
        assert caught.value.field == field, (changes, caught.value)
    params = services.validate_params(kind, {**base, "backend": "vmas", "num_envs": 2, "init_from": vmas.name})
    assert params["backend"] == "vmas"  # the matching checkpoint is accepted
