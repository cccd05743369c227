"""The configured networks: the pretraining ContrastiveNet and its compute dtype."""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import ml_collections

from actclr_jax.models import stgcn


def build_model(config: ml_collections.ConfigDict, in_channels: int = 3) -> stgcn.ContrastiveNet:
  return stgcn.ContrastiveNet(
      layout=config.data.layout, in_channels=in_channels,
      hidden_channels=config.model.hidden_channels, out_channels=config.model.out_channels,
      dropout=config.model.dropout, edge_importance=config.model.edge_importance,
      projection_dim=config.model.projection_dim, dtype=compute_dtype(config),
      temporal_conv=config.model.temporal_conv, memory_layout=config.model.memory_layout)


@functools.partial(jax.jit, static_argnums=0)
def init_variables(model, key: jax.Array, x: jax.Array) -> dict:
  """model's initial variables ({'params', 'batch_stats'}) for inputs shaped like x, with key
  for both the parameters and dropout. One compiled program per model and input shape: an eager
  init runs hundreds of small operations, each traced, lowered and compiled on first use in
  every new process and for every new shape."""
  return model.init({"params": key, "dropout": key}, x, train=False)


def compute_dtype(config: ml_collections.ConfigDict):
  """The encoder's compute dtype (config key model.compute_dtype: float32 | bfloat16)."""
  dtypes = {"float32": jnp.float32, "bfloat16": jnp.bfloat16}
  if config.model.compute_dtype not in dtypes:
    raise ValueError(f"config key model.compute_dtype={config.model.compute_dtype!r}: "
                     f"expected one of {sorted(dtypes)}")
  return dtypes[config.model.compute_dtype]


def encode_features(params, batch_stats, x, *, model: stgcn.ContrastiveNet) -> jax.Array:
  """Pooled encoder features (N, C) of x (N, C, T, V, M) in inference mode."""
  out = model.apply({"params": params, "batch_stats": batch_stats}, x, train=False)
  return out["feature"]
