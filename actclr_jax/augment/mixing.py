"""Skeleton mixing, the mixing half of T_non: mixup, cutmix, resizemix and skeleton_mix, which
picks one of them per sample. Each mixes x (N, C, T, V, M) with x[partner], partner (N,) int.
"""

from __future__ import annotations

from typing import Sequence

import jax
import jax.numpy as jnp
import numpy as np

from actclr_jax.augment.helpers import _partner_bodies, _per_sample, _presence, _uniform

Array = jax.Array


def mixup(key: Array, x: Array, partner: Array) -> Array:
  """x' = lambda x + (1 - lambda) x[partner], lambda ~ U(0, 1) per sample. x: (N, C, T, V, M)."""
  lam = _per_sample(jax.random.uniform(key, (x.shape[0],), x.dtype), 5)
  return (lam * x + (1 - lam) * _partner_bodies(x, partner)) * _presence(x)


def _part_membership(parts: Sequence[Sequence[int]], num_joints: int) -> np.ndarray:
  """(P, V) bool, True where joint v belongs to part p."""
  member = np.zeros((len(parts), num_joints), dtype=bool)
  for p, joints in enumerate(parts):
    member[p, list(joints)] = True
  return member


def _random_window(key: Array, n: int, t: int, length: Array) -> Array:
  """(n, t) bool: a window of `length` (n,) frames at a uniform start per sample."""
  start = jnp.floor(jax.random.uniform(key, (n,)) * (t - length + 1)).astype(jnp.int32)
  start = jnp.clip(start, 0, t - length)
  frames = jnp.arange(t)[None]
  return (frames >= start[:, None]) & (frames < (start + length)[:, None])


def cutmix(key: Array, x: Array, partner: Array, parts: Sequence[Sequence[int]],
           num_parts: tuple[int, int] = (2, 3), frames: tuple[int, int] = (12, 20)) -> Array:
  """Replaces num_parts U{lo..hi} random body parts over a window of U{lo..hi} frames (capped
  at T) with the partner's.

  Args:
    key: PRNG key.
    x: (N, C, T, V, M).
    partner: (N,) int.
    parts: body parts, each a sequence of joints (layout.parts).
    num_parts: inclusive range of the number of parts replaced.
    frames: inclusive range of the window length.

  Returns:
    (N, C, T, V, M).
  """
  n, t, v = x.shape[0], x.shape[2], x.shape[3]
  member = _part_membership(parts, v)
  if not 1 <= num_parts[0] <= num_parts[1] <= len(parts):
    raise ValueError(f"cutmix num_parts {num_parts} must lie within 1..{len(parts)}")
  k_rank, k_count, k_len, k_start = jax.random.split(key, 4)
  scores = _uniform(k_rank, (n, len(parts)), jnp.float32, 0.0, 1.0)
  rank = jnp.argsort(jnp.argsort(scores, axis=1), axis=1)
  count = jax.random.randint(k_count, (n,), num_parts[0], num_parts[1] + 1)
  chosen = rank < count[:, None]
  joints = jnp.any(chosen[:, :, None] & member[None], axis=1)
  length = jax.random.randint(k_len, (n,), min(frames[0], t), min(frames[1], t) + 1)
  window = _random_window(k_start, n, t, length)
  region = window[:, None, :, None, None] & joints[:, None, None, :, None]
  return jnp.where(region, _partner_bodies(x, partner), x) * _presence(x)


def resizemix(key: Array, x: Array, partner: Array,
              scale: tuple[float, float] = (0.1, 0.5)) -> Array:
  """Pastes the whole partner sequence, linearly resized in time, into a random window.

  The window holds L = clip(round(U(scale) * T), 1, T) frames at a uniform start; its frame k
  shows the partner at time k (T - 1) / (L - 1) (linear interpolation between frames), so it runs
  from the partner's first frame to its last (a 1-frame window shows the first frame).
  x: (N, C, T, V, M), partner: (N,) int.
  """
  n, t = x.shape[0], x.shape[2]
  k_len, k_start = jax.random.split(key)
  length = jnp.round(jax.random.uniform(k_len, (n,), minval=scale[0], maxval=scale[1]) * t)
  length = jnp.clip(length.astype(jnp.int32), 1, t)
  window = _random_window(k_start, n, t, length)
  start = jnp.argmax(window, axis=1)
  frames = jnp.arange(t)[None]
  pos = ((frames - start[:, None]) * (t - 1)).astype(x.dtype)
  pos = jnp.clip(pos / jnp.maximum(length - 1, 1)[:, None].astype(x.dtype), 0, t - 1)
  lo = jnp.floor(pos).astype(jnp.int32)
  hi = jnp.minimum(lo + 1, t - 1)
  frac = (pos - lo.astype(x.dtype))[:, None, :, None, None]
  xp = _partner_bodies(x, partner)
  take = lambda idx: jnp.take_along_axis(xp, idx[:, None, :, None, None], axis=2)
  resized = (1 - frac) * take(lo) + frac * take(hi)
  return jnp.where(window[:, None, :, None, None], resized, x) * _presence(x)


def skeleton_mix(key: Array, x: Array, partner: Array, parts: Sequence[Sequence[int]],
                 num_parts: tuple[int, int] = (2, 3), frames: tuple[int, int] = (12, 20),
                 scale: tuple[float, float] = (0.1, 0.5)) -> Array:
  """Per sample, one of mixup, cutmix and resizemix (uniformly) with x[partner].
  x: (N, C, T, V, M), partner: (N,) int."""
  k_pick, k_mixup, k_cutmix, k_resize = jax.random.split(key, 4)
  pick = _per_sample(jax.random.randint(k_pick, (x.shape[0],), 0, 3), 5)
  out = jnp.where(pick == 0, mixup(k_mixup, x, partner),
                  cutmix(k_cutmix, x, partner, parts, num_parts, frames))
  return jnp.where(pick == 2, resizemix(k_resize, x, partner, scale), out)

