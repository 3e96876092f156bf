"""Training: t5x's Adafactor and schedules, the jitted train step, checkpoints, the run's
options, and the loop's edges.

Depends on `flan.model` only. `optimizer` and `train_step` are pure; `checkpoints`,
`preemption` and `progress` are the edges (files, signals, logs) around the loop in
`flan.train`; `flops` counts a step's work for MFU.
"""
