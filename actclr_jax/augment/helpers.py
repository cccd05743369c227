"""Shared batch helpers of the augmentations: body presence, per-sample broadcasting, flat PRNG
draws, exact 3x3 products and the pairing of samples with partners.

Batches are (N, C, T, V, M); masks are (N, T, V, M).
"""

from __future__ import annotations

import math
from typing import Any

import jax
import jax.numpy as jnp

Array = jax.Array


def body_presence(x: Array) -> Array:
  """(N, C, T, V, M) -> (N, M) bool: True where a body has any non-zero value (absent bodies
  are zero-padded)."""
  return jnp.any(x != 0, axis=(1, 2, 3))


def _presence(x: Array) -> Array:
  """(N, 1, 1, 1, M) 1.0 where a body has any non-zero value, else 0.0."""
  return body_presence(x)[:, None, None, None, :].astype(x.dtype)


def _per_sample(v: Array, ndim: int) -> Array:
  """Reshapes a (N,) array to broadcast against an ndim-dimensional batch."""
  return v.reshape(v.shape[:1] + (1,) * (ndim - 1))


def _normal(key: Array, shape: tuple[int, ...], dtype) -> Array:
  # Drawn flat and reshaped: XLA:CPU compiles multi-dimensional threefry draws an order of
  # magnitude more slowly (seconds per call site) than the same number of flat draws.
  return jax.random.normal(key, (math.prod(shape),), dtype).reshape(shape)


def _uniform(key: Array, shape: tuple[int, ...], dtype, minval, maxval) -> Array:
  return jax.random.uniform(key, (math.prod(shape),), dtype, minval, maxval).reshape(shape)


def _is_static_zero(v: Any) -> bool:
  return isinstance(v, (int, float)) and v <= 0


def _apply_matrix(mat: Array, x: Array) -> Array:
  """x'[n, i] = sum_j mat[n, i, j] x[n, j]; (N, 3, 3), (N, 3, T, V, M).

  Written as an elementwise sum rather than a matmul so that it is exact in float32 on every
  backend (no TF32): an identity matrix gives back x bit for bit.
  """
  return jnp.sum(mat[:, :, :, None, None, None] * x[:, None], axis=2)


def _matmul3(a: Array, b: Array) -> Array:
  """Batched (N, 3, 3) @ (N, 3, 3) in full float32 precision (no TF32)."""
  return jnp.sum(a[:, :, :, None] * b[:, None, :, :], axis=2)


def _partner_bodies(x: Array, partner: Array) -> Array:
  """x[partner], with each body the partner lacks replaced by the sample's own body."""
  xp = x[partner]
  return jnp.where(_presence(xp) > 0, xp, x)


def _with_mask(x: Array, mask: Array | None):
  return x if mask is None else (x, mask)


def random_partner(key: Array, n: int) -> Array:
  """(n,) int32 partner index for each sample: a permutation without fixed points (n > 1).

  Samples are visited in a random order and each is paired with the one a random non-zero
  offset further along that order, so no sample is its own partner. For n == 1 it returns [0].
  """
  if n == 1:
    return jnp.zeros((1,), jnp.int32)
  k_perm, k_shift = jax.random.split(key)
  order = jax.random.permutation(k_perm, n).astype(jnp.int32)
  shift = jax.random.randint(k_shift, (), 1, n)
  follower = order[(jnp.arange(n) + shift) % n]
  return jnp.zeros((n,), jnp.int32).at[order].set(follower)

