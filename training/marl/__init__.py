"""Multi-agent RL: MADDPG and HRTMADDPG on the Multi Particle Environments (mpe2).

HRTMADDPG (after arXiv:2105.04888) is MADDPG whose actors and/or critics also see an
encoding of the recent observation history: a GRU encodes each window of `window`
consecutive steps, and a causal transformer encoder (sinusoidal positional encoding) relates
the last `windows` window encodings; the output at the newest window is the encoding.
The paper leaves the window sizes and the placement unpublished; our defaults, chosen to
fit a 2-core CPU budget and ablated in `python -m bench.marl`:

- window w = 4 steps, windows m = 4 (the encoder sees the last 16 steps; MPE episodes are 25),
- encoder width 32 (GRU hidden and transformer model size), 1 pre-norm transformer layer, 2 heads,
  no dropout; the transformer is masked causally, so window t never sees later steps,
- placement "actor" (default): each actor encodes its own observation history. MPE's joint
  observation is close to the full state, so the centralised critic gains least from history,
  and critic encoders over the joint history made each update several times slower here;
  "critic" and "both" (each critic encodes the joint observation history) are options,
- ablations (`encoder`): "hrt" (GRU per window + transformer over windows), "rnn" (one GRU
  over all m*w steps, no transformer), "transformer" (per-step embedding + causal
  transformer over all m*w steps, no RNN). Padding before an episode began is zeros plus a
  validity flag in the input.
- what the encoder sees: the agent's own raw observations of the last m*w steps (the same rows
  its actor sees one at a time); in simple_adversary nobody observes velocities and the adversary
  does not observe which landmark is the goal, so history carries information a single
  observation lacks (motion, and where the good agents are heading).

Evaluation of mixed games (`crossplay`): both teams of simple_adversary train with the same
algorithm, so a self-play reward cannot separate a better adversary from worse good agents; a
`Lineup` takes each team's actors from a different checkpoint, so one team's policies can be
compared against the same opponents.

MADDPG itself: deterministic actors (sigmoid outputs for mpe2's continuous actions in [0, 1],
Gumbel-softmax for discrete ones), centralised critics on all observations and actions,
target networks with soft updates (tau 0.01), gamma 0.95, Adam 1e-3, gradient clip 0.5,
batch 64, one update every 8 environment steps after 1,000 uniformly random warm-up steps,
64-unit two-layer MLPs. Runs are seeded and deterministic on CPU (one thread, deterministic
kernels, seeded env resets).

Plain PyTorch; never imports Django. Entry point: `training.marl.train.train_marl(MARLConfig)`.
"""
