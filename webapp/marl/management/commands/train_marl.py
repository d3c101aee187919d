from django.core.management.base import BaseCommand, CommandError

from training.marl.options import (ACTION_TYPES, ALGOS, BACKENDS, ENCODER_KINDS, ENV_MODULES, MAX_NUM_ENVS, MAX_STEPS,
                                  MIN_STEPS, PLACEMENTS)
from webapp.checkpoints.services import RegistryError
from webapp.marl.services import config_from_params, train_and_register_marl


class Command(BaseCommand):
    help = ("Train MADDPG or HRTMADDPG on an mpe2 or VMAS scenario and register the policy as a MARL checkpoint "
            "(never the active generator).")

    def add_arguments(self, parser):
        parser.add_argument("--algo", default="hrtmaddpg", help=" | ".join(ALGOS))
        parser.add_argument("--env", default="simple_spread", help=" | ".join(ENV_MODULES))
        parser.add_argument("--backend", default="mpe2", help=" | ".join(BACKENDS))
        parser.add_argument("--num-envs", type=int, default=1, help=f"vmas only: environments per step, 1..{MAX_NUM_ENVS}")
        parser.add_argument("--steps", type=int, default=10_000, help=f"environment steps, {MIN_STEPS}..{MAX_STEPS}")
        parser.add_argument("--seed", type=int, default=0)
        parser.add_argument("--action-type", default="continuous", help=" | ".join(ACTION_TYPES))
        parser.add_argument("--encoder", default="hrt", help="hrtmaddpg only: " + " | ".join(ENCODER_KINDS))
        parser.add_argument("--placement", default="actor", help="hrtmaddpg only: " + " | ".join(PLACEMENTS))
        parser.add_argument("--window", type=int, default=4, help="steps per window (w)")
        parser.add_argument("--windows", type=int, default=4, help="windows the transformer relates (m)")
        parser.add_argument("--eval-episodes", type=int, default=20)
        parser.add_argument("--init-from", metavar="CHECKPOINT",
                            help="start from a registered MARL checkpoint (id or name) trained on the same env")
        parser.add_argument("--no-progress", action="store_true", help="no tqdm bar")

    def handle(self, *args, **options):
        from training.marl.envs import EnvError
        from training.marl.train import MARLCheckpointError, MARLConfigError

        params = {k: options[k] for k in ("algo", "env", "backend", "num_envs", "steps", "seed", "action_type", "encoder", "placement",
                                          "window", "windows", "eval_episodes", "init_from")}
        try:
            config = config_from_params(params)
            config.progress_bar = not options["no_progress"]
            checkpoint = train_and_register_marl(config)
        except (MARLConfigError, MARLCheckpointError, EnvError, RegistryError) as exc:
            raise CommandError(str(exc)) from exc
        if checkpoint is None:
            raise CommandError("training was cancelled; nothing was registered")
        m = checkpoint.metrics
        self.stdout.write(self.style.SUCCESS(
            f"checkpoint {checkpoint.name} [family {checkpoint.family}, {checkpoint.status}] at {checkpoint.path}"))
        self.stdout.write(f"  eval_reward={m['eval_reward']:.3f} over {m['eval_episodes']} episodes, "
                          f"steps={m['steps']}, updates={m['updates']}, train_seconds={m['train_seconds']}")
