"""Choices and limits of a MARL run, torch-free so forms and commands can list them cheaply."""
ALGOS = ("maddpg", "hrtmaddpg")
ENCODER_KINDS = ("hrt", "rnn", "transformer")
PLACEMENTS = ("actor", "critic", "both")
ACTION_TYPES = ("continuous", "discrete")
ACTOR_LOSSES = ("own", "joint")  # Lowe et al.'s per-agent actor step, or TorchRL/BenchMARL's joint one
ENV_MODULES = {
    "simple_spread": "mpe2.simple_spread_v3",
    "simple_adversary": "mpe2.simple_adversary_v3",
    "simple_tag": "mpe2.simple_tag_v3",
}
# VMAS ports of the same scenarios (vmas.scenarios.mpe), stepped N environments at a time.
VMAS_SCENARIOS = ("simple_spread", "simple_adversary", "simple_tag")
BACKENDS = ("mpe2", "vmas")
SCENARIOS = {"mpe2": tuple(ENV_MODULES), "vmas": VMAS_SCENARIOS}
MIN_STEPS, MAX_STEPS = 50, 2_000_000
MIN_NUM_ENVS, MAX_NUM_ENVS = 1, 4096
