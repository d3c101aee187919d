"""The "marl" job kind: train MADDPG or HRTMADDPG on an mpe2 or VMAS scenario (reward curves on the job page).

The result is registered as a family="marl" checkpoint, which is never the active generator."""
from django import forms

from training.marl.options import (ACTION_TYPES, ALGOS, BACKENDS, ENCODER_KINDS, ENV_MODULES, MAX_NUM_ENVS, MAX_STEPS,
                                  MIN_NUM_ENVS, MIN_STEPS, PLACEMENTS)
from webapp.checkpoints.choices import CheckpointChoiceField
from webapp.jobs.kinds import JobHandle, JobKind, register


def _choices(names) -> list[tuple[str, str]]:
    return [(name, name) for name in names]


class MARLParams(forms.Form):
    algo = forms.ChoiceField(choices=_choices(ALGOS), initial="hrtmaddpg")
    env = forms.ChoiceField(choices=_choices(ENV_MODULES), initial="simple_spread")
    backend = forms.ChoiceField(required=False, choices=_choices(BACKENDS), initial="mpe2",
                                help_text="vmas steps num_envs environments at once")
    num_envs = forms.IntegerField(required=False, initial=1, min_value=MIN_NUM_ENVS, max_value=MAX_NUM_ENVS,
                                  help_text="vmas only: environments per step")
    steps = forms.IntegerField(initial=10_000, min_value=MIN_STEPS, max_value=MAX_STEPS,
                               help_text="Environment steps (25 per episode).")
    seed = forms.IntegerField(initial=0, min_value=0, max_value=2**31 - 1)
    action_type = forms.ChoiceField(required=False, choices=_choices(ACTION_TYPES), initial="continuous",
                                    help_text="discrete actions use Gumbel-softmax")
    encoder = forms.ChoiceField(required=False, choices=_choices(ENCODER_KINDS), initial="hrt",
                                help_text="hrtmaddpg only: hrt (GRU + transformer), rnn only, transformer only")
    placement = forms.ChoiceField(required=False, choices=_choices(PLACEMENTS), initial="actor",
                                  help_text="hrtmaddpg only: which networks see the history encoding")
    window = forms.IntegerField(required=False, initial=4, min_value=1, max_value=32, help_text="steps per window (w)")
    windows = forms.IntegerField(required=False, initial=4, min_value=1, max_value=32, help_text="windows the transformer sees (m)")
    init_from = CheckpointChoiceField(family="marl", blank_means_active=False, label="Start from 初始检查点",
                                      help_text="Optional: start from a MARL checkpoint of the same env.")

    def clean_seed(self):
        return self.cleaned_data["seed"] or 0

    def clean(self):
        from training.marl.train import MARLCheckpointError, MARLConfigError

        from webapp.checkpoints.services import RegistryError
        from webapp.marl.services import config_from_params

        cleaned = super().clean()
        if self.errors:
            return cleaned
        try:
            config_from_params(cleaned).validate()
        except (MARLConfigError, MARLCheckpointError, RegistryError) as exc:
            field, _, message = str(exc).partition(": ")
            self.add_error(field if field in self.fields else None, message or str(exc))
        return cleaned


def run_marl(params: dict, job: JobHandle) -> dict:
    from webapp.marl.services import config_from_params, train_and_register_marl

    config = config_from_params(params)
    config.progress_bar = False
    job.log(f"training {config.algo} on {config.env} for {config.steps} steps (seed {config.seed})")
    checkpoint = train_and_register_marl(config, on_progress=job.on_progress, run_name=None)
    if checkpoint is None:
        return {"cancelled": True}
    job.on_progress({"event": "stage", "stage": "registered"})
    return {"checkpoint": checkpoint.name, "checkpoint_id": checkpoint.pk, "family": checkpoint.family,
            "metrics": {k: v for k, v in checkpoint.metrics.items() if isinstance(v, (int, float))}}


MARL = register(JobKind(
    name="marl", label="MARL: MADDPG / HRTMADDPG (research)", params_form=MARLParams, run=run_marl,
    description="Multi-agent RL on an mpe2 or VMAS scenario (simple_spread, simple_adversary, simple_tag): MADDPG or "
                "HRTMADDPG (GRU over windows + transformer over windows). Registered as a MARL checkpoint, "
                "never the active generator.",
    summary="研究 Research: multi-agent RL (MADDPG / HRTMADDPG) on an mpe2 or VMAS scenario.",
    tags=("research", "marl"),
))
