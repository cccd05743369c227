"""The pretraining state: one pytree holding everything a step reads and writes."""

from __future__ import annotations

from typing import Any

import flax
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax

from actclr_jax import losses, schedules
from actclr_jax.models import builder, stgcn


@flax.struct.dataclass
class TrainState:
  """Pretraining state.

  Attributes:
    step: number of optimizer updates done.
    params: online encoder + projector params.
    batch_stats: online BatchNorm statistics.
    opt_state: optax state of the online params.
    ema_state: optax.EmaState whose `ema` holds the offline (momentum) params.
    ema_batch_stats: offline BatchNorm statistics (updated by the offline forward passes).
    bank: (K, D) memory bank of normalised keys, a ring buffer.
    bank_index: (K,) int32 training-sample index of each bank row's key; -1 for the random
      rows the bank starts with.
    bank_pointer: next row of the bank to write.
    rng: raw key data (uint32) of the next step's PRNG key, of implementation
      config.rng_impl; `step_key` wraps it.
    anchor: (C, T, V, M) static anchor (Eq. 2).
  """
  step: jax.Array
  params: Any
  batch_stats: Any
  opt_state: Any
  ema_state: optax.EmaState
  ema_batch_stats: Any
  bank: jax.Array
  bank_index: jax.Array
  bank_pointer: jax.Array
  rng: jax.Array
  anchor: jax.Array

  @property
  def ema_params(self):
    return self.ema_state.ema


def new_key(config: ml_collections.ConfigDict, seed: int) -> jax.Array:
  """A typed PRNG key of implementation config.rng_impl."""
  return jax.random.key(seed, impl=config.rng_impl)


def step_key(config: ml_collections.ConfigDict, state: "TrainState") -> jax.Array:
  """The state's PRNG key as a typed key. The state stores raw key data, which orbax saves as
  a plain array."""
  return jax.random.wrap_key_data(state.rng, impl=config.rng_impl)


def build_optimizer(config: ml_collections.ConfigDict, steps_per_epoch: int) -> optax.GradientTransformation:
  """SGD with momentum and coupled weight decay (the published runs), or Adam."""
  schedule = schedules.pretraining(config, steps_per_epoch)
  if config.optimizer == "sgd":
    return optax.chain(optax.add_decayed_weights(config.weight_decay),
                       optax.sgd(schedule, momentum=config.momentum))
  if config.optimizer == "adam":
    return optax.chain(optax.add_decayed_weights(config.weight_decay), optax.adam(schedule))
  raise ValueError(f"Unknown optimizer {config.optimizer!r} (config key optimizer): sgd or adam")


def ema_transform(config: ml_collections.ConfigDict,
                  actclr_step: bool = False) -> optax.GradientTransformation:
  """offline <- m * offline + (1 - m) * online, as an optax EMA of the online params: m is
  moco.momentum, or in the ActCLR step actionlet.momentum where that is set."""
  momentum = config.moco.momentum
  if actclr_step and config.actionlet.momentum is not None:
    momentum = config.actionlet.momentum
  return optax.ema(momentum, debias=False)


def initial_bank(config: ml_collections.ConfigDict, seed: int) -> dict:
  """The memory bank a run starts with: {'bank': (K, D) random unit vectors, 'bank_index': (K,)
  -1 (no sample's key), 'bank_pointer': 0}, K = moco.bank_size, D = model.projection_dim."""
  _, bank_rng, _ = jax.random.split(new_key(config, seed), 3)
  bank = losses.l2_normalize(
      jax.random.normal(bank_rng, (config.moco.bank_size, config.model.projection_dim)))
  return {"bank": bank, "bank_index": jnp.full((config.moco.bank_size,), -1, jnp.int32),
          "bank_pointer": jnp.zeros([], jnp.int32)}


def create_train_state(config: ml_collections.ConfigDict, model: stgcn.ContrastiveNet,
                       tx: optax.GradientTransformation, anchor: np.ndarray,
                       seed: int) -> TrainState:
  """Initialises the online and offline networks identically, and a random unit-norm bank."""
  init_rng, _, step_rng = jax.random.split(new_key(config, seed), 3)
  variables = builder.init_variables(model, init_rng, jnp.asarray(anchor)[None])
  params, batch_stats = variables["params"], variables["batch_stats"]
  return TrainState(
      step=jnp.zeros([], jnp.int32), params=params, batch_stats=batch_stats,
      opt_state=tx.init(params),
      # Copies: the step donates the state, and donated buffers must not alias.
      ema_state=optax.EmaState(count=jnp.zeros([], jnp.int32), ema=jax.tree.map(jnp.copy, params)),
      ema_batch_stats=jax.tree.map(jnp.copy, batch_stats), **initial_bank(config, seed),
      rng=jax.random.key_data(step_rng), anchor=jnp.asarray(anchor, jnp.float32))
