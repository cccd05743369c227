"""BatchNorm recalibration of a frozen encoder: running statistics re-estimated on clean data.

A frozen encoder is evaluated in inference mode, with the running BatchNorm statistics it was
trained with. Two cases make those statistics a poor description of clean data:
  * a randomly initialised encoder has mean 0 / var 1 everywhere, so its features are almost
    constant (per-dimension std ~0.006, pairwise cosine ~0.999) and KNN or a linear probe on them
    measures nothing;
  * a pretrained encoder's statistics were accumulated on augmented views.
Recalibration ("precise BN") replaces every running mean and variance by the average, over
batches of clean training data, of the batch statistics that train-mode BatchNorm computes
(dropout off). It is applied the same way to every encoder a comparison evaluates.
"""

from __future__ import annotations

import functools
from typing import Iterable

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from actclr_jax.models import stgcn


def _batch_statistics(model: nn.Module, params, batch_stats, x):
  """The per-layer batch statistics (same tree as batch_stats) of one train-mode forward."""
  zeros = jax.tree.map(jnp.zeros_like, batch_stats)
  _, updates = model.apply({"params": params, "batch_stats": zeros}, x, train=True,
                           mutable=["batch_stats"])
  # From zero running statistics one update leaves (1 - momentum) * batch statistic.
  return jax.tree.map(lambda a: a / (1.0 - stgcn.BATCH_NORM_MOMENTUM), updates["batch_stats"])


# Cached per model, so that repeated recalibrations (the monitor's, the protocols') compile once.
@functools.lru_cache(maxsize=8)
def _statistics_fn(model: nn.Module):
  quiet = model.clone(dropout=0.0)
  return jax.jit(lambda p, b, x: _batch_statistics(quiet, p, b, x))


def recalibrate(model: nn.Module, params, batch_stats, batches: Iterable[np.ndarray]):
  """Running statistics re-estimated on `batches` of clean inputs (N, C, T, V, M).

  Args:
    model: the module whose variables these are, with dropout in it (it is switched off).
    params, batch_stats: its variables.
    batches: full batches of equal size (a smaller last batch would weigh differently).

  Returns:
    batch_stats of the same structure: the mean over batches of each layer's batch mean and
    (biased) batch variance.
  """
  stats_fn = _statistics_fn(model)
  total, count = None, 0
  for x in batches:
    stats = stats_fn(params, batch_stats, jnp.asarray(x))
    total = stats if total is None else jax.tree.map(jnp.add, total, stats)
    count += 1
  if count == 0:
    raise ValueError("BatchNorm recalibration needs at least one batch of training data")
  return jax.tree.map(lambda a: np.asarray(a / count), total)


LAYER_GROUPS = ("all", "data_bn", "blocks")


def check_layers(layers: str) -> None:
  """Raises a ValueError naming the config key unless layers is one of LAYER_GROUPS."""
  if layers not in LAYER_GROUPS:
    raise ValueError(f"config key eval.features.bn_recalibration_layers={layers!r}: expected "
                     f"one of {LAYER_GROUPS}")


def select_layers(initial, recalibrated, layers: str = "all"):
  """`recalibrated` statistics for one group of layers, `initial` ones elsewhere (a diagnostic):
  'all', 'data_bn' (the input's BatchNorm only) or 'blocks' (every BatchNorm but data_bn). The
  trees have batch_stats' structure."""
  check_layers(layers)
  if layers == "all":
    return recalibrated

  def pick(path, old, new):
    is_input = any(getattr(p, "key", None) == "data_bn" for p in path)
    return new if is_input == (layers == "data_bn") else old
  return jax.tree_util.tree_map_with_path(pick, initial, recalibrated)
