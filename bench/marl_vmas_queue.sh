#!/usr/bin/env bash
# Issue #19's second VMAS round, in the order fixed in the README (HRTMADDPG on VMAS, "Second round"):
# one run at a time on one thread, each stage skipping the runs already done, so the script can be
# killed at any point and started again; every finished run is already in its results file.
# Usage: OMP_NUM_THREADS=1 nohup nice -n 15 bash bench/marl_vmas_queue.sh > var/marl_vmas/queue.log 2>&1 &
# then: .venv/bin/python -m bench.marl --backend vmas summary   (rebuilds every summary.json and study.svg)
set -euo pipefail
cd "$(dirname "$0")/.."
export OMP_NUM_THREADS=1
vmas() { .venv/bin/python -m bench.marl --backend vmas "$@"; }

# 1. peer anchor: BenchMARL's MADDPG with our hyperparameters, target actor and time-limit bootstrapping
vmas benchmarl --envs simple_spread --seeds 3 --benchmarl-config matched
# 1b. which change closes the gap: one at a time on `ours`, seed 0
vmas benchmarl --envs simple_spread --seeds 1 --benchmarl-config ours+target_actor
vmas benchmarl --envs simple_spread --seeds 1 --benchmarl-config ours+bootstrap
# 1c. what is left: our MADDPG with BenchMARL's joint actor step (every actor through every critic)
vmas ours-variant --envs simple_spread --seeds 3 --actor-loss joint
vmas summary > /dev/null
# 2. the ablations to 10 seeds on simple_adversary at 100,000 frames (seed by seed: RNN only, transformer only)
vmas study --study 100k --envs simple_adversary --variants rnn_only,transformer_only
# 3. the primary figure at 200,000 frames (seed by seed: MADDPG, then HRTMADDPG)
vmas study --study 200k
# 4. the peer anchor to 5 seeds
vmas benchmarl --envs simple_spread --seeds 5 --benchmarl-config matched
vmas summary > /dev/null
# 5. the simple_spread ablations to 10 seeds
vmas study --study 100k --envs simple_spread --variants rnn_only,transformer_only
vmas summary > /dev/null
echo "queue: all stages done"
