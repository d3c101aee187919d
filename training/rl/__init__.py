"""Reinforcement learning from AI feedback (no Django here): rewards, GRPO, evaluation, the gate.

* ``rewards``    judge score minus penalties (repetition, length outside what the request asks)
* ``grpo``       group-relative policy optimisation with engine rollouts and a k3 KL to the SFT model
* ``evaluation`` pass rate with bootstrap intervals, KL to SFT, distinct-n, novelty, lengths
* ``gate``       promote a candidate only when it beats the active checkpoint beyond noise
* ``pipeline``   the stages as plain functions (SFT, judge, GRPO, evaluation, gate)
"""
