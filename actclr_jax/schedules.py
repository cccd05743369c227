"""Every learning-rate schedule of the package: pretraining (two phases) and the protocols.

The base rate is scaled linearly with the batch size (per 128 samples). The published runs use
step decays, `lr(step) = base * factor ** (number of boundaries <= step)`, so the first step of
a decay epoch already uses the decayed rate (PyTorch's MultiStepLR); pretraining can instead
anneal each phase along a half cosine (`lr_schedule=cosine`, MoCo v2's schedule).
"""

from __future__ import annotations

from typing import Sequence

import ml_collections
import optax


def scaled_lr(lr: float, batch_size: int) -> float:
  """The linear scaling rule: `lr` is the rate at batch 128."""
  return lr * batch_size / 128


def step_decay(base_lr: float, decay_epochs: Sequence[int], steps_per_epoch: int,
               factor: float = 0.1) -> optax.Schedule:
  """base_lr, multiplied by `factor` at the first step of each epoch in decay_epochs."""
  boundaries = {}
  for epoch in decay_epochs:
    step = int(epoch) * int(steps_per_epoch)
    boundaries[step] = boundaries.get(step, 1.0) * factor
  return optax.piecewise_constant_schedule(base_lr, boundaries)


def cosine_decay(base_lr: float, epochs: int, steps_per_epoch: int) -> optax.Schedule:
  """base_lr * (1 + cos(pi * step / total)) / 2 over epochs * steps_per_epoch steps: from base_lr
  at step 0 to 0 at the end (MoCo v2's schedule)."""
  return optax.cosine_decay_schedule(base_lr, max(1, int(epochs) * int(steps_per_epoch)))


def with_warmup(schedule: optax.Schedule, warmup_steps: int) -> optax.Schedule:
  """`schedule` scaled by a linear ramp over its first warmup_steps: step s (from 0) runs at
  (s + 1) / warmup_steps of its rate, so the first step already moves and step warmup_steps - 1
  runs at the full rate. warmup_steps <= 0: `schedule` itself."""
  if warmup_steps <= 0:
    return schedule
  ramp = optax.linear_schedule(1.0 / warmup_steps, 1.0, warmup_steps - 1)
  return lambda step: schedule(step) * ramp(step)


def pretraining(config: ml_collections.ConfigDict, steps_per_epoch: int) -> optax.Schedule:
  """The pretraining rate, with a fresh schedule for phase 2.

  Phase 1 (epochs before actionlet.start_epoch) decays by lr_decay_factor at each of
  lr_decay_epochs; phase 2 starts again from the base lr and decays at actionlet.lr_decay_epochs,
  counted from start_epoch (the authors run phase 2 as a new schedule). When start_epoch is at or
  beyond num_epochs there is one phase. With lr_schedule=cosine each phase instead anneals from
  the base lr to 0 over its own epochs (cosine_decay) and the decay epochs are not used. Each
  phase ramps up linearly over its first warmup_epochs (phase 1) / actionlet.warmup_epochs
  (phase 2) epochs (with_warmup).
  """
  base = scaled_lr(config.learning_rate, config.batch_size)
  factor = config.lr_decay_factor
  start = config.actionlet.start_epoch
  one_phase = start >= config.num_epochs
  cosine = config.lr_schedule == "cosine"
  warmup1 = int(round(config.warmup_epochs * steps_per_epoch))
  if cosine:
    phase1 = cosine_decay(base, min(start, config.num_epochs), steps_per_epoch)
  else:
    decays = config.lr_decay_epochs if one_phase else [e for e in config.lr_decay_epochs
                                                       if e < start]
    phase1 = step_decay(base, decays, steps_per_epoch, factor)
  if one_phase:
    return with_warmup(phase1, warmup1)
  if cosine:
    phase2 = cosine_decay(base, config.num_epochs - start, steps_per_epoch)
  else:
    phase2 = step_decay(base, config.actionlet.lr_decay_epochs, steps_per_epoch, factor)
  warmup2 = int(round(config.actionlet.warmup_epochs * steps_per_epoch))
  return optax.join_schedules([with_warmup(phase1, warmup1), with_warmup(phase2, warmup2)],
                              [int(start * steps_per_epoch)])
