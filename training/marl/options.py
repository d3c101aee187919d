"""Choices and limits of a MARL run, torch-free so forms and commands can list them cheaply."""
ALGOS = ("maddpg", "hrtmaddpg")
ENCODER_KINDS = ("hrt", "rnn", "transformer")
PLACEMENTS = ("actor", "critic", "both")
ACTION_TYPES = ("continuous", "discrete")
ENV_MODULES = {
    "simple_spread": "mpe2.simple_spread_v3",
    "simple_adversary": "mpe2.simple_adversary_v3",
    "simple_tag": "mpe2.simple_tag_v3",
}
MIN_STEPS, MAX_STEPS = 50, 2_000_000
