"""BatchNorm recalibration of a frozen encoder (evaluate/bn_recalibration.py)."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from actclr_jax import models
from actclr_jax.evaluate import bn_recalibration


def _setup():
  model = models.ContrastiveNet(hidden_channels=4, out_channels=16, projection_dim=8)
  rng = np.random.default_rng(0)
  # Features far from the init statistics (mean 0, var 1): offset 2, scale 0.3 per channel.
  batches = [(2.0 + 0.3 * rng.normal(size=(6, 3, 12, 25, 1))).astype(np.float32)
             for _ in range(3)]
  variables = jax.jit(functools.partial(model.init, train=False))(
      jax.random.key(0), jnp.asarray(batches[0]))
  return model, variables, batches


def test_input_statistics_are_the_average_batch_statistics():
  model, variables, batches = _setup()
  stats = bn_recalibration.recalibrate(model, variables["params"], variables["batch_stats"],
                                       batches)
  assert jax.tree.structure(stats) == jax.tree.structure(variables["batch_stats"])
  # data_bn normalises each (joint, coordinate) over (N, M, T): channel index v * 3 + c.
  per_batch = [np.transpose(b, (3, 1, 0, 2, 4)).reshape(75, -1) for b in batches]
  np.testing.assert_allclose(stats["encoder"]["data_bn"]["mean"],
                             np.mean([b.mean(1) for b in per_batch], axis=0), rtol=1e-4)
  np.testing.assert_allclose(stats["encoder"]["data_bn"]["var"],
                             np.mean([b.var(1) for b in per_batch], axis=0), rtol=1e-3)


def test_random_encoder_features_stop_being_constant():
  """At init (mean 0 / var 1 statistics) an input far from zero mean saturates every feature
  into nearly the same vector; recalibrated, samples are told apart."""
  model, variables, batches = _setup()
  x = jnp.asarray(np.concatenate(batches))
  apply = jax.jit(functools.partial(model.apply, train=False))

  def spread(batch_stats):
    """Between-sample std of each feature over its mean magnitude, averaged over features."""
    f = np.asarray(apply({"params": variables["params"], "batch_stats": batch_stats}, x)["feature"])
    return float(np.mean(f.std(axis=0) / (np.abs(f).mean(axis=0) + 1e-6)))

  before = spread(variables["batch_stats"])
  after = spread(bn_recalibration.recalibrate(model, variables["params"],
                                              variables["batch_stats"], batches))
  assert after > 2.5 * before, (before, after)  # measured: 0.035 -> 0.116


def test_layer_groups_split_the_statistics_between_data_bn_and_the_blocks():
  model, variables, batches = _setup()
  initial = variables["batch_stats"]
  full = bn_recalibration.recalibrate(model, variables["params"], initial, batches)
  first = bn_recalibration.select_layers(initial, full, "data_bn")
  rest = bn_recalibration.select_layers(initial, full, "blocks")
  assert bn_recalibration.select_layers(initial, full, "all") is full
  for name, layer in full["encoder"].items():
    taken, kept = (first, rest) if name == "data_bn" else (rest, first)
    jax.tree.map(np.testing.assert_array_equal, taken["encoder"][name], layer)
    jax.tree.map(np.testing.assert_array_equal, kept["encoder"][name], initial["encoder"][name])
  assert len(full["encoder"]) > 1 and "data_bn" in full["encoder"]
  with pytest.raises(ValueError, match="bn_recalibration_layers"):
    bn_recalibration.select_layers(initial, full, "first")
