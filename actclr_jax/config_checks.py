"""Checks of config values that would otherwise fail late, inside compilation or a loader."""

from __future__ import annotations

import jax
import ml_collections

from actclr_jax import augment, graph
from actclr_jax.data import streams
from actclr_jax.models import convolutions
from actclr_jax.models import stgcn


def validate_config(config: ml_collections.ConfigDict) -> None:
  """Checks config values that would otherwise fail late, inside compilation."""
  graph.get_layout(config.data.layout)
  checks = [
      ("data.stream", config.data.stream, streams.STREAMS),
      ("optimizer", config.optimizer, ("sgd", "adam")),
      ("lr_schedule", config.lr_schedule, ("step", "cosine")),
      ("loss.center_projections", config.loss.center_projections,
       ("none", "phase2", "always")),
      ("actionlet.safp_norm", config.actionlet.safp_norm, ("none", "gap")),
      ("actionlet.anchor", config.actionlet.anchor, ("dataset", "batch")),
      ("actionlet.smoothing", config.actionlet.smoothing, ("adjacency", "parts")),
      ("actionlet.grad_activation", config.actionlet.grad_activation, ("relu", "identity")),
      ("actionlet.placement", config.actionlet.placement, ("gradient", "random", "other_sample")),
      ("model.temporal_conv", config.model.temporal_conv, convolutions.TEMPORAL_CONV_METHODS),
      ("model.memory_layout", config.model.memory_layout, stgcn.MEMORY_LAYOUTS),
  ]
  for key, value, allowed in checks:
    if value not in allowed:
      raise ValueError(f"config key {key}={value!r}: expected one of {allowed}")
  if config.batch_size % jax.device_count():
    raise ValueError(f"config key batch_size={config.batch_size} is not divisible by the "
                     f"{jax.device_count()} devices")
  if config.eval_batch_size % jax.device_count():
    raise ValueError(f"config key eval_batch_size={config.eval_batch_size} is not divisible by "
                     f"the {jax.device_count()} devices")
  if config.moco.shuffle_bn_splits < 1 or config.batch_size % config.moco.shuffle_bn_splits:
    raise ValueError(f"config key moco.shuffle_bn_splits={config.moco.shuffle_bn_splits} must "
                     f"be >= 1 and divide batch_size={config.batch_size}")
  augment.validate_config(config.augment)  # before tracing, where its error would be buried
  for key in ("checkpoint_every_steps", "checkpoint_every_epochs", "knn_every_epochs",
              "log_every_steps"):
    minimum = 0 if key in ("checkpoint_every_steps", "knn_every_epochs") else 1
    if config[key] < minimum:
      raise ValueError(f"config key {key}={config[key]} must be >= {minimum}")
  for key, value in (("warmup_epochs", config.warmup_epochs),
                     ("actionlet.warmup_epochs", config.actionlet.warmup_epochs)):
    if value < 0:
      raise ValueError(f"config key {key}={value} must be >= 0")
  for key, value in (("moco.momentum", config.moco.momentum),
                     ("actionlet.momentum", config.actionlet.momentum)):
    if value is not None and not 0.0 <= value <= 1.0:
      raise ValueError(f"config key {key}={value} must lie in [0, 1]")
  if config.moco.bank_size < config.batch_size:
    raise ValueError(f"config key moco.bank_size={config.moco.bank_size} is smaller than "
                     f"batch_size={config.batch_size}")
