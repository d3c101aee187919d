"""Multi-agent RL: MADDPG and HRTMADDPG (after arXiv:2105.04888) on mpe2 and VMAS.

HRTMADDPG is MADDPG whose actors and/or critics also see an encoding of the recent observation
history: a GRU over each window of `window` steps, and a causal transformer over the last
`windows` window encodings (ablations: `encoder` "rnn" or "transformer" alone; `placement`
"actor", "critic" or "both"). `Lineup` takes each team's actors from a different checkpoint, so
a mixed game's team can be compared against the same opponents (`crossplay`).
Runs are seeded and deterministic on CPU. Our defaults and why: README, "HRTMADDPG (research)".

Plain PyTorch; never imports Django. Entry point: `training.marl.train.train_marl(MARLConfig)`.
"""
